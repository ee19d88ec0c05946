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


def user_cache_dir() -> Path:
    """The platform's per-user cache folder (under SWITCHBOARD_DATA when that is set)."""
    if os.environ.get("SWITCHBOARD_DATA"):
        return Path(os.environ["SWITCHBOARD_DATA"]) / "cache"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / APP_NAME / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lora-switchboard"


def use_compile_cache() -> Path:
    """Keep Inductor's compiled kernels in the app's cache folder (its default, a temporary folder, may be
    emptied at reboot), so a second start of a model skips most of its compile. A TORCHINDUCTOR_CACHE_DIR the
    user set wins."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir() / "inductor"))
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def default_library_dir() -> Path:
    return user_data_dir() / "library"


def log_file() -> Path:
    """The app's log: failures with their tracebacks, kept for a bug report."""
    return user_data_dir() / "logs" / "switchboard.log"
