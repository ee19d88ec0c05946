"""The library's records on disk: index.json, each adapter's meta.json, model.json, the writers' lock and the
clean-up of what interrupted writers left. The layout and the crash-safety rules are in app/library/__init__.py.

Records may be damaged by hand edits or broken disks. A damaged record never causes a deletion: the index is
rebuilt from what is on disk (the adapter folders, the newest complete router pair) and each repair is reported
by `Storage.index().problems`; a meta.json field of the wrong type is reported and its default used.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import atomic
from engine.adapter_io import printable
from engine.errors import SwitchboardError

FORMAT, VERSION = "lora-switchboard-library", 1
MIN_EXAMPLES = 20                       # fewer router examples than this and an adapter is flagged
INDEX, MODEL, META, EXAMPLES = "index.json", "model.json", "meta.json", "examples.jsonl"
ROUTER_FILE = re.compile(r"router-(\d+)\.safetensors")
_ROUTER_ANY = re.compile(r"router-\d+\.(safetensors|json)")   # either file of a pair
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
LOCK_TIMEOUT_S = 600                    # another program holding the lock longer than this is reported
# what engine.atomic leaves behind when a write of a library record is cut short
_ATOMIC_TMP = re.compile(r"\.(index\.json|model\.json|router-\d+\.(safetensors|json))\.\d+\.\d+\.tmp")


class LibraryError(SwitchboardError):
    """The library folder cannot be used: read-only, full, locked by a hung program, or not a library."""


@dataclass
class AdapterInfo:
    name: str
    path: Path                  # its folder: adapters/<name>
    color: str | None           # "#rrggbb", or None for the automatic colour (ui/colors.py)
    enabled: bool               # disabled adapters are not loaded, so never routed
    imported: str | None        # ISO date
    source: str | None          # where it was imported from
    rank: int | None
    targets: list[str]
    size_bytes: int | None
    n_examples: int
    accuracy: float | None      # held-out router accuracy of this adapter at the last retrain
    problem: str | None = None  # meta.json unreadable or its "enabled" not a boolean: listed, refused at load
    warning: str | None = None  # other meta.json fields of the wrong type: their defaults are shown

    @property
    def too_few_examples(self) -> bool:
        return self.n_examples < MIN_EXAMPLES

    @property
    def loadable(self) -> bool:
        """Enabled and its record readable: the adapters the engine loads and the router is trained for."""
        return self.enabled and self.problem is None


@dataclass
class Index:
    adapters: list[str]                 # the order; only names with a complete folder
    router: dict | None                 # {"file", "examples"} of the current router pair, or None
    dirty: bool = False                 # differs from index.json: the next writer rewrites it
    trusted: bool = True                # the router record names a pair on disk as we wrote it: others are leftovers
    problems: list[str] = field(default_factory=list)  # repairs and skipped folders, for the user


# meta.json field -> (check, default) for the fields other than "enabled"
def _is_int(v, low=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_str(v):
    return isinstance(v, str)


META_FIELDS = {
    "color": (lambda v: v is None or (isinstance(v, str) and COLOR.fullmatch(v)), None),
    "imported": (lambda v: v is None or _is_str(v), None),
    "source": (lambda v: v is None or _is_str(v), None),
    "rank": (lambda v: v is None or _is_int(v, 1), None),
    "targets": (lambda v: isinstance(v, list) and all(map(_is_str, v)), []),
    "size_bytes": (lambda v: v is None or _is_int(v), None),
    "n_examples": (_is_int, 0),
    "accuracy": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1),
                 None),
}


class Storage:
    def __init__(self, root: Path):
        self.root = root
        self.adapters_dir = root / "adapters"

    # ---- index -----------------------------------------------------------------------------------------
    def index(self) -> Index:
        """index.json reconciled with the adapter folders and the router files. Raises LibraryError only for a
        folder that is not a library of this version (nothing there is touched then)."""
        path = self.root / INDEX
        problems = []
        missing = False
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            raw, missing = None, True
        except OSError as e:
            raise LibraryError(f"{printable(path)}: cannot read the library index ({e})") from None
        except (ValueError, RecursionError) as e:
            raw, problems = None, [f"{printable(path)} was damaged ({e}); rebuilt from the adapter folders"]
        if not missing and not problems:
            if isinstance(raw, dict) and raw.get("format") == FORMAT and _is_int(raw.get("version")) \
                    and raw["version"] != VERSION:
                raise LibraryError(f"{printable(path)}: library format version {raw['version']}, this app reads "
                                   f"{VERSION} (written by another version of LoRA Switchboard)")
            if not (isinstance(raw, dict) and raw.get("format") == FORMAT and raw.get("version") == VERSION):
                if not self.adapters_dir.is_dir():
                    raise LibraryError(f"{printable(path)}: not a LoRA Switchboard library index; refusing to "
                                       "use this folder as a library")
                problems.append(f"{printable(path)} was not a valid library index; rebuilt from the adapter folders")
                raw = None
        folders = self._folders(problems)
        listed = raw.get("adapters") if raw is not None else []
        if raw is not None and not isinstance(listed, list):
            problems.append(f"{printable(path)}: \"adapters\" was not a list; the order was rebuilt")
            listed = []
        names = [n for n in dict.fromkeys(n for n in listed if isinstance(n, str)) if n in folders]
        names += sorted(set(folders) - set(names))
        router, trusted = self._router(raw, missing, problems)
        written = raw if isinstance(raw, dict) else {}
        dirty = bool(not missing or names or router) and (names, router) != (written.get("adapters"),
                                                                             written.get("router"))
        return Index(names, router, dirty, trusted, problems)

    def _folders(self, problems) -> set[str]:
        """Names of the complete adapter folders (those holding meta.json)."""
        try:
            entries = list(self.adapters_dir.iterdir())
        except FileNotFoundError:
            return set()
        except OSError as e:
            raise LibraryError(f"{printable(self.adapters_dir)}: cannot read ({e})") from None
        folders = set()
        for d in entries:
            if not (d / META).is_file():
                continue
            if printable(d.name) != d.name:  # bytes that are not UTF-8: no record can name it
                problems.append(f"{printable(d)}: the folder name is not UTF-8 text; rename it to use the adapter")
            else:
                folders.add(d.name)
        return folders

    def _router(self, raw, missing, problems) -> tuple[dict | None, bool]:
        """-> (router record, trusted). A record is kept when it names a router file on disk (a damaged
        "examples" is reset: the next retrain is then a full one). Otherwise the newest complete pair is adopted,
        else the newest pair at all (loading then says what is wrong with it): never none while a pair is there
        (also when the record is null: a first retrain cut short before its commit left a complete pair). So a
        pair is only ever deleted beside a complete one that the index names, or, under a null record, when its
        weights are there without the sidecar that Router.save writes after them."""
        rec = raw.get("router") if raw is not None else None
        pairs = sorted(self._router_pairs(), key=lambda p: -int(ROUTER_FILE.fullmatch(p.name)[1]))
        if raw is not None and rec is None:
            pairs = [p for p in pairs if sidecar(p).exists()]  # weights alone: a save cut short, a leftover
            if not pairs:
                return None, True
        if isinstance(rec, dict) and isinstance(rec.get("file"), str) and ROUTER_FILE.fullmatch(rec["file"]) \
                and (self.root / rec["file"]).is_file():
            examples = rec.get("examples")
            if isinstance(examples, dict) and all(isinstance(v, str) for v in examples.values()):
                return {"file": rec["file"], "examples": examples}, True
            problems.append(f"{printable(self.root / INDEX)}: the router's example digests were damaged; the next "
                            "retrain is a full one")
            return {"file": rec["file"], "examples": {}}, True
        adopted = next((p for p in pairs if router_pair_complete(p)), pairs[0] if pairs else None)
        if not missing or adopted is not None:
            what = "missing" if missing else "null" if raw is not None and rec is None else "damaged"
            problems.append(f"{printable(self.root / INDEX)}: the router record was {what}; "
                            + (f"using {adopted.name}, the newest router on disk" if adopted else
                               "no router is on disk, retrain the router"))
        return ({"file": adopted.name, "examples": {}} if adopted else None), False

    def _router_pairs(self) -> list[Path]:
        return [p for p in self.root.glob("router-*.safetensors") if ROUTER_FILE.fullmatch(p.name)]

    def write_index(self, names, router):
        atomic.write_json(self.root / INDEX, {"format": FORMAT, "version": VERSION, "adapters": names,
                                              "router": router})

    # ---- adapter records -------------------------------------------------------------------------------
    def info(self, name: str) -> AdapterInfo:
        folder = self.adapters_dir / name
        meta, problem, bad = {}, None, []
        try:
            meta = json.loads((folder / META).read_bytes())
            if not isinstance(meta, dict):
                raise ValueError(f"a JSON {type(meta).__name__}, not an object")
        except (OSError, ValueError, RecursionError) as e:
            meta, problem = {}, f"{printable(folder / META)}: unreadable ({e})"
        enabled = meta.get("enabled", True)
        if not isinstance(enabled, bool):
            problem, enabled = f"{printable(folder / META)}: \"enabled\" must be true or false, got {enabled!r}", True
        values = {}
        for key, (ok, default) in META_FIELDS.items():
            values[key] = meta.get(key, default)
            if not ok(values[key]):
                bad.append(f"{key}={values[key]!r}")
                values[key] = default
        warning = f"{printable(folder / META)}: ignored fields of the wrong type: {', '.join(bad)}" if bad else None
        return AdapterInfo(name=name, path=folder, enabled=enabled, problem=problem, warning=warning, **values)

    def update_meta(self, folder: Path, **changes):
        path = folder / META
        try:
            meta = json.loads(path.read_bytes())
        except (ValueError, RecursionError) as e:
            meta = e
        if not isinstance(meta, dict):
            why = meta if isinstance(meta, Exception) else f"not a JSON object: {printable(repr(meta))[:80]}"
            raise LibraryError(f"{printable(path)} is damaged ({why}); fix it by hand or remove the adapter")
        meta.update(changes)
        atomic.write_json(path, meta)

    # ---- model record ----------------------------------------------------------------------------------
    def model(self):
        """(model name, module shapes) from model.json, or None."""
        try:
            rec = json.loads((self.root / MODEL).read_bytes())
            return rec["model"], {m: (int(i), int(o)) for m, (i, o) in rec["module_shapes"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None

    def set_model(self, name, shapes):
        if self.model() != (name, shapes):
            atomic.write_json(self.root / MODEL, {"model": name,
                                                  "module_shapes": {m: list(s) for m, s in shapes.items()}})

    # ---- writing ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self):
        """Hold the writers' lock, clear what interrupted writers left, and yield the Index. An OSError of the
        library's own writes (read-only, disk full) comes out as a LibraryError naming the folder."""
        try:
            for d in (self.adapters_dir, self.root / ".tmp", self.root / ".trash"):
                d.mkdir(parents=True, exist_ok=True)
            with locked(self.root / ".lock"):
                idx = self.index()
                self._collect_garbage(idx)
                yield idx
        except OSError as e:
            raise LibraryError(f"cannot write the library {printable(self.root)} ({printable(str(e))})") from None

    def _collect_garbage(self, idx: Index):
        for d in (self.root / ".tmp", self.root / ".trash"):
            for p in d.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        current = idx.router["file"] if idx.router else None
        stale = [p for p in self.root.glob("router-*") if _ROUTER_ANY.fullmatch(p.name)
                 and p.with_suffix(".safetensors").name != current]
        # a router file is a leftover only beside a complete current pair named by an index we wrote
        if stale and idx.trusted and (current is None or router_pair_complete(self.root / current)):
            for p in stale:
                p.unlink()
        for p in self.root.glob(".*.tmp"):  # atomic writes (ours and Router.save's) cut short
            if _ATOMIC_TMP.fullmatch(p.name):
                p.unlink()
        if idx.dirty:
            with contextlib.suppress(OSError):  # a full disk: the caller's own write says so, or is not needed
                self.write_index(idx.adapters, idx.router)
                idx.dirty = False


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")  # as engine.router.sidecar_path, without importing torch


def router_pair_complete(path: Path) -> bool:
    """Both files of the router pair are there and the sidecar describes these weights (as Router.load checks)."""
    try:
        side = json.loads(sidecar(path).read_bytes())
        return isinstance(side, dict) and side.get("weights_sha256") == hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, ValueError, RecursionError):
        return False


@contextlib.contextmanager
def locked(path: Path):
    """Exclusive lock on `path` between processes and threads (each call opens its own file), held for the block.
    Waits at most LOCK_TIMEOUT_S for another holder, then raises LibraryError."""
    with open(path, "a+b") as f:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        if os.name == "nt":
            import msvcrt
            take, release, busy = (lambda: msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1),
                                   lambda: (f.seek(0), msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)),
                                   (errno.EACCES, errno.EDEADLK))
        else:
            import fcntl  # released when the file closes, also when the process dies
            take, release, busy = (lambda: fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB),
                                   lambda: None, (errno.EAGAIN, errno.EACCES))
        while True:
            try:
                take()
                break
            except OSError as e:
                if e.errno not in busy:
                    raise
                if time.monotonic() > deadline:
                    raise LibraryError(f"{printable(path.parent)}: another program has held the library's lock for "
                                       f"{LOCK_TIMEOUT_S} s; close it and try again") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            release()


def jsonl(prompts: list[str]) -> bytes:
    """Router examples as examples.jsonl holds them: {"prompt": ...} per line."""
    return "".join(json.dumps({"prompt": p}, ensure_ascii=False) + "\n" for p in prompts).encode("utf-8")
