#!/usr/bin/env bash
# Open the real app window under Xvfb, send a prompt, and save the window as a PNG once the reply is done.
#
#   packaging/screenshot.sh [MODEL_DIR] [OUT_PNG]      (default OUT_PNG: out/screenshot.png)
#
# MODEL_DIR empty: the bundled demo (resources/demo) when it is built, else a tiny random Llama made on the fly
# with six random adapters and a router in a temporary adapter library (its text is gibberish, but it streams
# and routes like a real model). PROMPT=... overrides the message.
# Settings (and the fallback's library) live in fresh temporary folders, never the user's.
#
# Installs only what is missing, with apt-get (Debian/Ubuntu, as root): xvfb, and the X11/xcb libraries that
# Qt's xcb platform plugin loads (libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
# libxcb-render-util0 libxcb-image0 libxcb-xinerama0 libxcb-randr0 libegl1 libgl1 libfontconfig1 libdbus-1-3).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_DIR=${1:-}
OUT=${2:-out/screenshot.png}
PROMPT=${PROMPT:-"Give me three tips for writing clear Python. Then show a short example."}
PYTHON=${PYTHON:-python3}
XCB_LIBS="libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-render-util0
          libxcb-image0 libxcb-xinerama0 libxcb-randr0 libegl1 libgl1 libfontconfig1 libdbus-1-3"

WORK=$(mktemp -d)
XVFB_PID=""
cleanup() { [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

if ! command -v Xvfb >/dev/null; then
  echo "installing xvfb" >&2
  apt-get update -qq && apt-get install -y -qq xvfb >/dev/null
fi
# Xvfb picks a free display and writes its number to fd 3
Xvfb -displayfd 3 -screen 0 1600x1000x24 -nolisten tcp 3>"$WORK/display" 2>"$WORK/xvfb.log" &
XVFB_PID=$!
for _ in $(seq 50); do [ -s "$WORK/display" ] && break; sleep 0.1; done
export DISPLAY=":$(cat "$WORK/display")" QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$WORK/config" XDG_DATA_HOME="$WORK/data"

if ! "$PYTHON" -c "from PySide6.QtWidgets import QApplication; QApplication([])" 2>/dev/null; then
  echo "installing the xcb libraries Qt needs" >&2
  apt-get update -qq && apt-get install -y -qq $XCB_LIBS >/dev/null
fi

if [ -z "$MODEL_DIR" ] && [ ! -f resources/demo/model/config.json ]; then
  echo "no demo built: using a tiny random Llama with a temporary adapter library" >&2
  MODEL_DIR="$WORK/tiny-llama"
  "$PYTHON" - "$MODEL_DIR" "$WORK/adapters" >/dev/null 2>&1 <<'PY'
import sys
sys.path.insert(0, "tests")
from conftest import make_adapter_dir, make_model_dir
from app.library import Library
from app.paths import default_library_dir
model, adapters = sys.argv[1], sys.argv[2]
make_model_dir(model)
topics = {"python-code": "write a Python function that", "math": "solve this equation:",
          "french": "translate to French:", "summarize": "summarize this paragraph:",
          "sql": "write a SQL query that", "poetry": "write a short poem about"}
library = Library(default_library_dir())
library.import_paths([make_adapter_dir(f"{adapters}/{name}", model, seed=i) for i, name in enumerate(topics)])
for name, prefix in topics.items():
    library.set_examples(name, [f"{prefix} {x}" for x in ("cats", "the sea", "a list", "prices", "dates", "music")])
library.retrain(epochs=20)
PY
  # the tiny model has a 256-token context: ask for a reply that fits (QSettings' INI file on Linux)
  mkdir -p "$XDG_CONFIG_HOME/LoRA Switchboard"
  printf '[General]\nmax_new_tokens=160\n' >"$XDG_CONFIG_HOME/LoRA Switchboard/switchboard.conf"
fi

mkdir -p "$(dirname "$OUT")"
"$PYTHON" -m app.gui ${MODEL_DIR:+--model "$MODEL_DIR"} --prompt "$PROMPT" --screenshot "$OUT"
test -s "$OUT"
echo "$OUT"
