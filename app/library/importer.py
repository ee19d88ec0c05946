"""Finding the adapters in what the user dropped (folders, folders of adapter folders, .zip archives) and
copying one into a staging folder of the library, refusing what must not be copied.

Only known file names are copied (adapter_config.json, adapter_model.safetensors, router examples), and only
as regular files inside the adapter folder: a symbolic link (to /etc/passwd, to a 3 GB file elsewhere) or a
FIFO is refused by name before anything is read. Copies keep the source's permission bits, so a private file
stays private. Reading errors blame the source, writing errors the library (ENOSPC says the disk is full).
"""
from __future__ import annotations

import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.adapter_io import CONFIG, KEY, PICKLES, SAFETENSORS, check_members, printable, weights_name
from engine.errors import AdapterError, ExamplesError
from engine.examples import read_examples_file

from .storage import EXAMPLES, LibraryError, jsonl

SOURCE_EXAMPLES = (EXAMPLES, "examples.txt")  # examples an imported folder brings (e.g. from another library)
COPIED = (CONFIG, SAFETENSORS, *SOURCE_EXAMPLES)
_BAD_CHARS = set('<>:"/\\|?*') | {chr(c) for c in range(32)}   # not allowed in file names on some platform
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
# what zipfile and zlib raise on corrupt, truncated, encrypted or exotic archives (as engine/adapter_io.py)
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, NotImplementedError,
              ValueError, zlib.error)
CHUNK = 1 << 20


@dataclass
class ImportResult:
    path: str           # the dropped item, or `<archive>.zip/<folder>` / `<folder>/<sub>` for one adapter in it
    name: str | None    # the adapter's name in the library; None when refused
    ok: bool
    message: str        # "added math: rank 8, ..." or the precise reason for the refusal


@dataclass
class Item:
    """One adapter to import: a PEFT folder, or a folder (`prefix`, "" for the root) inside a zip."""
    label: str          # printable: bytes of a file name that are not UTF-8 show as U+FFFD
    name: str
    folder: Path | None = None
    zpath: Path | None = None
    prefix: str = ""


def refused(label: str, message: str) -> ImportResult:
    return ImportResult(label, None, False, message)


def expand(path: Path) -> list:
    """A dropped path -> the adapters in it (Item), or an ImportResult refusing it."""
    label = printable(path)
    try:
        if path.is_dir():
            if os.path.lexists(path / CONFIG):  # a link or a FIFO too: copying refuses it by name
                return [Item(label, path.resolve().name, folder=path)]
            peft_files = (CONFIG, SAFETENSORS, *PICKLES)
            items = []
            for p in sorted(path.iterdir()):
                if p.is_dir() and any(os.path.lexists(p / f) for f in peft_files) or \
                        p.is_file() and p.suffix.lower() == ".zip":
                    if p.is_symlink():
                        items.append(refused(printable(p), f"{printable(p)}: a symbolic link (to "
                                             f"{printable(os.readlink(p))}); drop what it points to instead"))
                    else:
                        items += expand_zip(p) if p.is_file() else [Item(printable(p), p.name, folder=p)]
            if not items:
                return [refused(label, f"{label}: no {CONFIG} in this folder or its subfolders (not a PEFT adapter)")]
            return items
        if path.is_file() and path.suffix.lower() == ".zip":
            return expand_zip(path)
    except OSError as e:
        return [refused(label, f"{label}: cannot read ({e})")]
    if path.exists():
        return [refused(label, f"{label}: not a PEFT adapter folder or .zip archive")]
    return [refused(label, f"{label}: no such file or folder")]


def expand_zip(zpath: Path) -> list:
    """The adapter folders in an archive: each folder holding an adapter_config.json (any depth). One adapter is
    named after the archive (as Engine.add_adapter names a zip), several after their folders."""
    label = printable(zpath)
    try:
        with zipfile.ZipFile(zpath) as zf:
            infos = zf.infolist()
            check_members(zpath, infos)  # zip-slip names, duplicates, zip bombs: refuses the whole archive
    except AdapterError as e:
        return [refused(label, printable(str(e)))]
    except ZIP_ERRORS as e:
        return [refused(label, f"{label}: cannot read the zip archive ({e})")]
    prefixes = sorted({i.filename[:-len(CONFIG)] for i in infos
                       if not i.is_dir() and PurePosixPath(i.filename).name == CONFIG})
    if not prefixes:
        return [refused(label, f"{label}: no {CONFIG} in the archive (not a PEFT adapter)")]
    if len(prefixes) == 1:
        return [Item(label, zpath.stem, zpath=zpath, prefix=prefixes[0])]
    return [Item(f"{label}/{p}".rstrip("/"), PurePosixPath(p).name or zpath.stem, zpath=zpath, prefix=p)
            for p in prefixes]


def copy_item(item: Item, stage: Path):
    """Copy the adapter's known files into `stage`, fsynced. AdapterError blames the source; an OSError is the
    library's own (disk full, read-only)."""
    (_copy_zip if item.zpath is not None else _copy_folder)(item, stage)


def _copy_folder(item: Item, stage: Path):
    present = {}
    try:
        for name in (*COPIED, *PICKLES):
            try:
                present[name] = os.lstat(item.folder / name)
            except FileNotFoundError:
                pass
    except OSError as e:
        raise AdapterError(f"{item.label}: cannot read ({e})") from None
    for name, st in present.items():
        where = f"{item.label}/{name}"
        if stat.S_ISLNK(st.st_mode):
            raise AdapterError(f"{where}: a symbolic link (to {printable(os.readlink(item.folder / name))}); the "
                               "library copies only regular files of the adapter folder, copy the file itself there")
        if not stat.S_ISREG(st.st_mode):
            raise AdapterError(f"{where}: not a regular file")
    if SAFETENSORS not in present:
        weights_name(set(present), item.label, allow_pickle=False)  # raises: pickle-only or no weights
    for name in COPIED:
        if name in present:
            _copy_file(item.folder / name, f"{item.label}/{name}", stage / name)


def _copy_file(src: Path, label: str, dst: Path):
    """Copy a regular file, never through a link, keeping its permission bits."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(src, flags)
        st = os.fstat(fd)
    except OSError as e:
        raise AdapterError(f"{label}: cannot read ({e})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(st.st_mode):  # swapped for something else since it was checked
            raise AdapterError(f"{label}: not a regular file")
        _write_stream(f, label, dst, stat.S_IMODE(st.st_mode))


def _write_stream(src, label: str, dst: Path, mode: int = 0o666):
    """src (a binary file object) -> the new file `dst`, fsynced, created with `mode` less the umask."""
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(src, label):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except OSError as e:  # the library's side: a full disk is not the source's fault
        raise LibraryError(printable(str(e))) from None


def _chunks(src, label: str):
    while True:
        try:
            chunk = src.read(CHUNK)
        except ZIP_ERRORS as e:
            raise AdapterError(f"{label}: cannot read ({e})") from None
        if not chunk:
            return
        yield chunk


def _copy_zip(item: Item, stage: Path):
    """The files written are named by us, never by the archive, so nothing lands outside `stage` whatever the
    member names say."""
    try:
        with zipfile.ZipFile(item.zpath) as zf:
            infos = zf.infolist()
            check_members(item.zpath, infos)  # again: the archive may have changed since expand_zip
            n = len(item.prefix)
            present = {i.filename[n:] for i in infos
                       if i.filename.startswith(item.prefix) and not i.is_dir() and "/" not in i.filename[n:]}
            if SAFETENSORS not in present:
                weights_name(present, item.label, allow_pickle=False)  # raises: pickle-only or no weights
            for f in COPIED:
                if f in present:
                    with zf.open(item.prefix + f) as src:
                        _write_stream(src, f"{item.label}/{f}", stage / f)
    except AdapterError as e:
        raise AdapterError(printable(str(e))) from None
    except ZIP_ERRORS as e:
        raise AdapterError(f"{printable(item.zpath)}: cannot read the zip archive ({e})") from None


def staged_examples(stage: Path):
    """Examples the adapter brought along, rewritten as examples.jsonl. -> (prompts, note about a bad file)."""
    found = [stage / f for f in SOURCE_EXAMPLES if (stage / f).is_file()]
    prompts, note = [], None
    if found:
        try:
            prompts = read_examples_file(found[0])
        except ExamplesError as e:
            note = f"its {found[0].name} was not imported ({str(e).replace(str(stage) + os.sep, '')})"
    mode = stat.S_IMODE(found[0].stat().st_mode) if found else 0o666
    for f in found:
        f.unlink()
    if prompts:
        with open(stage / EXAMPLES, "xb") as f:
            f.write(jsonl(prompts))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(stage / EXAMPLES, mode)  # as private as the file it came from
    return prompts, note


def own_shapes(folder: Path) -> dict:
    """module -> (in, out) read off the adapter's own lora_A / lora_B headers, for read_adapter to check
    everything except the fit to a model. {} when the file does not parse: read_adapter then says why."""
    from safetensors import safe_open

    try:
        with safe_open(folder / SAFETENSORS, "pt") as f:
            heads = {k: f.get_slice(k).get_shape() for k in f.keys()}
    except Exception:  # the parser's error types are open-ended on corrupt input
        return {}
    shapes = {}
    for key, shape in heads.items():
        m = KEY.fullmatch(key)
        if m and len(shape) == 2:
            in_out = shapes.setdefault(m["module"], [0, 0])  # 0: the other half is missing, read_adapter says so
            if m["ab"] == "A":
                in_out[0] = shape[1]
            else:
                in_out[1] = shape[0]
    return {m: tuple(s) for m, s in shapes.items()}


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an adapter (and folder) name on every platform, or None."""
    if not name or not name.strip():
        return "the adapter name is empty"
    if printable(name) != name:
        return f"the name {printable(name)!r} holds bytes that are not UTF-8 text"
    if _BAD_CHARS & set(name):
        return f"the name {name!r} holds a character not allowed in file names (<>:\"/\\|?* or control)"
    if name.startswith(".") or name.endswith((" ", ".")):
        return f"the name {name!r} starts with '.' or ends with a space or '.'"
    if name.split(".")[0].lower() in _RESERVED:
        return f"the name {name!r} is reserved on Windows"
    if len(name) > 100:
        return f"the name is {len(name)} characters long (at most 100)"
    if len(name.encode("utf-8")) > 200:
        return f"the name is {len(name.encode('utf-8'))} bytes long in UTF-8 (at most 200)"
    return None
