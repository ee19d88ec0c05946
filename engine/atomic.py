"""Crash-safe writes: after a SIGKILL or a power cut at any instant, a reader finds the old contents or the
complete new ones, never a mix.

Files: write a temp file in the same folder, fsync it, os.replace it over the target, fsync the folder (so
the rename itself is on disk). Folders: fill a staging folder on the same file system, fsync its files and
itself, then `publish_dir` renames it into place in one step and fsyncs both parents.
"""
import json
import os
import threading
from pathlib import Path


def fsync_dir(path):
    """Make the entries of folder `path` (new names, renames) durable. Windows cannot open a folder for fsync;
    NTFS journals renames itself."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_bytes(path, data: bytes):
    """Replace `path` with `data` atomically and durably."""
    path = Path(path)
    # pid and thread id: two writers never share a temp file (the hidden name keeps it out of listings)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json(path, obj):
    write_bytes(path, json_bytes(obj))


def json_bytes(obj) -> bytes:
    try:
        return json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate read from a hand-edited record: kept, as a \ud800 escape
        return json.dumps(obj, indent=1).encode("ascii")


def write_new(path, data: bytes):
    """Write a file no reader sees yet (in a folder `publish_dir` will publish): write and fsync; publishing
    fsyncs the folder, which makes the name durable."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def publish_dir(staged, target):
    """Rename the complete folder `staged` to `target` in one step. `target` must not exist (os.rename would
    replace an empty folder on POSIX and fail on Windows, so the caller checks). Every file in `staged`
    must already be fsynced; this fsyncs `staged` itself (its entries) before the rename."""
    staged, target = Path(staged), Path(target)
    fsync_dir(staged)
    os.rename(staged, target)
    fsync_dir(target.parent)
    if staged.parent != target.parent:
        fsync_dir(staged.parent)  # the old name must not come back after a power cut (the GC would delete it)
