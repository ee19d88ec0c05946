"""Where things live: the bundled demo, the user's library and data folders (no Qt needed)."""
import json
import os
import sys
from pathlib import Path

import resources

APP_NAME = "LoRA Switchboard"
DEMO_DIR = Path(resources.__file__).parent / "demo"


def demo_available() -> bool:
    return (DEMO_DIR / "model" / "config.json").is_file()


def demo_examples(n: int = 3) -> list[str]:
    """The first held-out prompt of the first n demo tasks: what the demo model can answer (it knows only these
    tasks, in their phrasings and number ranges)."""
    tasks = sorted((DEMO_DIR / "tasks").glob("*.jsonl"))[:n]
    return [json.loads(t.read_text(encoding="utf-8").splitlines()[0])["prompt"] for t in tasks]


def user_data_dir() -> Path:
    """The platform's per-user data folder (overridable with SWITCHBOARD_DATA)."""
    if os.environ.get("SWITCHBOARD_DATA"):
        return Path(os.environ["SWITCHBOARD_DATA"])
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "lora-switchboard"


def default_library_dir() -> Path:
    return user_data_dir() / "library"


def log_file() -> Path:
    """The app's log: failures with their tracebacks, kept for a bug report."""
    return user_data_dir() / "logs" / "switchboard.log"
