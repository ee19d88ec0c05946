#!/usr/bin/env bash
# Build the one-folder app bundle dist/switchboard/ and smoke-test it. One command, from any folder:
#
#   packaging/build_bundle.sh
#
# 1. a build venv (build/bundle-venv, reused when it exists) with torch, PyInstaller and the project's wheel,
#    built from the files a clean clone would have (git ls-files), so nothing stale from build/ gets in;
# 2. PyInstaller with packaging/switchboard.spec;
# 3. the frozen `switchboard chat` answers a held-out demo prompt exactly (TASK, default reverse), the frozen
#    `switchboard eval` runs one prompt per task, and the frozen window opens the demo and runs 10 s under Xvfb
#    without a Python error (out/bundle-window.png), then answers the same prompt in the window
#    (out/bundle-reply.png).
# Prints the build time and the bundle size.
#
# Environment: PYTHON (default python3: the bundle gets its version); TORCH_INDEX_URL for a CUDA build of torch,
# e.g. https://download.pytorch.org/whl/cu128; TORCH (default: the torch build PYTHON has, or with
# TORCH_INDEX_URL the newest there); VENV (default build/bundle-venv; delete it to change torch builds).
# Needs Xvfb and the X11/xcb libraries Qt loads (installed with apt-get when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=${VENV:-build/bundle-venv}
TASK=${TASK:-reverse}
if [ -z "${TORCH:-}" ]; then  # the torch build PYTHON has; with TORCH_INDEX_URL, that index's newest
  TORCH=torch
  [ -n "${TORCH_INDEX_URL:-}" ] || TORCH=$("$PYTHON" -c 'import torch; print("torch==" + torch.__version__)' \
                                          2>/dev/null || echo torch)
fi
XCB_LIBS="xvfb libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-render-util0
          libxcb-image0 libxcb-xinerama0 libxcb-randr0 libegl1 libgl1 libfontconfig1 libdbus-1-3"

if [ ! -f resources/demo/model/config.json ]; then
  echo "build_bundle: resources/demo is not built (python packaging/build_demo.py); the bundle ships it" >&2
  exit 1
fi
WORK=$(mktemp -d)
XVFB_PID="" APP_PID=""
cleanup() {
  [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null
  [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. build environment -----------------------------------------------------------------------------------
start=$(date +%s)
[ -d "$VENV" ] || "$PYTHON" -m venv "$VENV"
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$VENV/Scripts/python.exe"  # Windows (Git Bash)
"$PY" -m pip install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH"
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
"$PY" -m pip install -q pyinstaller
"$PY" -m pip wheel -q --no-deps "$WORK/src" -w "$WORK/wheel"
"$PY" -m pip install -q --force-reinstall --no-deps "$WORK"/wheel/*.whl
"$PY" -m pip install -q "$WORK"/wheel/*.whl  # its dependencies, where still missing
env_done=$(date +%s)

# --- 2. PyInstaller ------------------------------------------------------------------------------------------
# from $WORK: the spec imports app/engine/resources, which must come from the venv, not this source tree
(cd "$WORK" && "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
   --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" "$ROOT/packaging/switchboard.spec")
built=$(date +%s)
APP="$ROOT/dist/switchboard/switchboard"
[ -x "$APP" ] || APP="$APP.exe"

# --- 3. smoke tests ------------------------------------------------------------------------------------------
cd "$WORK"  # outside the source tree: the bundle must not need it
"$APP" --version
first() { "$PY" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' \
           "$ROOT/resources/demo/tasks/$TASK.jsonl" "$1"; }
PROMPT=$(first prompt) EXPECT=$(first response)
ANSWER=$("$APP" chat --device cpu "$PROMPT")
echo "chat: $PROMPT -> $ANSWER"
if [ "$ANSWER" != "$EXPECT" ]; then
  echo "build_bundle: the frozen chat answered '$ANSWER', expected '$EXPECT'" >&2
  exit 1
fi

# the CLI's heaviest imports (eval: sacrebleu, rouge-score) survived the trimming
"$APP" eval --device cpu --limit 1 --max-new-tokens 16 >/dev/null
echo "eval: ran"

if [ "$(uname)" = Linux ]; then
  if ! command -v Xvfb >/dev/null || ! ldconfig -p | grep -q libxcb-cursor.so.0; then
    echo "installing Xvfb and the xcb libraries Qt needs" >&2
    apt-get update -qq && apt-get install -y -qq $XCB_LIBS >/dev/null
  fi
  Xvfb -displayfd 3 -screen 0 1600x1000x24 -nolisten tcp 3>"$WORK/display" 2>"$WORK/xvfb.log" &
  XVFB_PID=$!
  for _ in $(seq 50); do [ -s "$WORK/display" ] && break; sleep 0.1; done
  export DISPLAY=":$(cat "$WORK/display")" QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$WORK/config"  # fresh settings
  "$APP" 2>"$WORK/gui.log" &
  APP_PID=$!
  sleep 10
  if ! kill -0 "$APP_PID" 2>/dev/null; then
    cat "$WORK/gui.log" >&2
    echo "build_bundle: the frozen window exited within 10 s" >&2
    exit 1
  fi
  mkdir -p "$ROOT/out"
  command -v import >/dev/null && import -window root "$ROOT/out/bundle-window.png"
  kill "$APP_PID"
  wait "$APP_PID" 2>/dev/null || true
  APP_PID=""
  if grep -B5 Traceback "$WORK/gui.log" >&2; then
    echo "build_bundle: the frozen window raised a Python error (above)" >&2
    exit 1
  fi
  echo "window: ran 10 s under Xvfb (screenshot: out/bundle-window.png when ImageMagick is installed)"
  # a whole turn in the frozen window: app.gui sends the prompt, saves the window after the reply and quits
  rm -f "$ROOT/out/bundle-reply.png"
  timeout 300 "$APP" --prompt "$PROMPT" --screenshot "$ROOT/out/bundle-reply.png" >/dev/null 2>"$WORK/gui.log"
  if [ ! -s "$ROOT/out/bundle-reply.png" ] || grep -B5 Traceback "$WORK/gui.log" >&2; then
    echo "build_bundle: the frozen window did not finish a reply" >&2
    exit 1
  fi
  echo "window: answered '$PROMPT' (out/bundle-reply.png)"
fi

echo "build time: environment $((env_done - start)) s, PyInstaller $((built - env_done)) s"
echo "bundle: $ROOT/dist/switchboard, $(du -sh "$ROOT/dist/switchboard" | cut -f1), $(find "$ROOT/dist/switchboard" -type f | wc -l) files"
du -sh "$ROOT"/dist/switchboard/_internal/* | sort -h | tail -8
