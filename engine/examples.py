"""Read a router examples folder: one `<adapter>.jsonl` or `<adapter>.txt` file per adapter.

`.jsonl`: one JSON object per line with a string "prompt" field (other fields ignored).
`.txt`: one prompt per line. Blank lines are skipped in both. Files with other suffixes are ignored.
"""
import json
from pathlib import Path

from engine.errors import ExamplesError

SUFFIXES = (".jsonl", ".txt")


def load_examples(folder):
    """Returns {adapter name: [prompt, ...]} in sorted name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExamplesError(f"{folder}: examples folder not found")
    files = sorted(f for f in folder.iterdir() if f.suffix in SUFFIXES and f.is_file())
    if not files:
        raise ExamplesError(f"{folder}: no <adapter>.jsonl or <adapter>.txt example files")
    examples = {}
    for f in files:
        if f.stem in examples:
            raise ExamplesError(f"{f}: adapter '{f.stem}' has both a .jsonl and a .txt examples file")
        examples[f.stem] = read_examples_file(f)
    return examples


def read_examples_file(path):
    """The prompts in one `.jsonl` or `.txt` file; ExamplesError names the file and line of any problem."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ExamplesError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    prompts = []
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON may hold a raw U+2028
        if not line.strip():
            continue
        if path.suffix == ".txt":
            prompts.append(line.strip())
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ExamplesError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict) or "prompt" not in obj:
            raise ExamplesError(f"{path}:{n}: missing \"prompt\" field")
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise ExamplesError(f"{path}:{n}: \"prompt\" must be a non-empty string")
        prompts.append(obj["prompt"])
    if not prompts:
        raise ExamplesError(f"{path}: no examples (the file is empty)")
    return prompts
