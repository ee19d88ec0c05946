"""The adapter library on disk: the user's LoRA adapters, their router examples, and the router trained on them.

Layout (root: `--library DIR`, the app's setting, else app.paths.default_library_dir()):

    index.json      {"format": "lora-switchboard-library", "version": 1,
                     "adapters": [name, ...],                        the order; enabled ones load in this order
                     "router": null | {"file": "router-<n>.safetensors",      the current router
                                       "examples": {name: sha256 of the prompts it was trained on}}}
    model.json      {"model": name, "module_shapes": {module: [in, out]}}: the last model the library was used
                    with, so that imports without a model still check shapes
    adapters/<name>/adapter_config.json, adapter_model.safetensors      the PEFT files as imported
    adapters/<name>/examples.jsonl  router examples, {"prompt": ...} per line (absent: none yet)
    adapters/<name>/meta.json       {"name", "color": "#rrggbb" or null (automatic), "enabled", "imported" (ISO
                                     date), "source" (original path), "rank", "targets", "size_bytes",
                                     "n_examples", "accuracy": held-out router accuracy of the last retrain or null}
    router-<n>.safetensors, router-<n>.json   the router pair (Router.save) that index.json names
    .tmp/  staging for imports      .trash/  removed adapters on their way out      .lock  the writers' lock

Crash safety (a SIGKILL or power cut at any instant):
- An adapter exists iff `adapters/<name>/meta.json` does. Its folder is filled and fsynced in .tmp/ and appears
  with one rename; removal is one rename into .trash/. So every listed adapter is complete.
- index.json is replaced atomically (app/atomic.py). Readers reconcile it with the folders: a name without a
  folder is dropped (a removal cut short before its index write), a folder missing from the index is appended
  (an import cut short after its rename: the adapter is complete, so it is kept).
- A new router pair is written under a fresh name and fsynced, and becomes current only when index.json names
  it: after a crash the index names either the complete old pair or the complete new one. Unnamed pairs,
  .tmp/ and .trash/ are deleted by the next writer.
- meta.json and examples.jsonl are each replaced atomically.
Every write holds an exclusive lock on `.lock`, so the app and `switchboard library` can share a library.

Calls that take `engine` also change the running engine (hot-add, remove, router) and must run on the thread
that owns it (app/worker.py). Without an engine they only touch the disk. Index order is kept equal to the
bank's order: the bank appends, so an adapter re-enabled or renamed with an engine moves to the end.
"""
from __future__ import annotations  # `list` is also a method name below

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from engine.adapter_io import _KEY, CONFIG, PICKLES, SAFETENSORS, _check_members, _weights_name, read_adapter
from engine.errors import AdapterError, ExamplesError, RouterError, SwitchboardError
from engine.examples import read_examples_file

from engine import atomic
from .paths import default_library_dir

FORMAT, VERSION = "lora-switchboard-library", 1
MIN_EXAMPLES = 20                       # fewer router examples than this and an adapter is flagged
INDEX, MODEL, META, EXAMPLES = "index.json", "model.json", "meta.json", "examples.jsonl"
SOURCE_EXAMPLES = (EXAMPLES, "examples.txt")  # examples an imported folder brings (e.g. from another library)
_ROUTER_FILE = re.compile(r"router-(\d+)\.safetensors")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_BAD_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')           # not allowed in file names on some platform
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
# what zipfile and zlib raise on corrupt, truncated, encrypted or exotic archives (as engine/adapter_io.py)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, NotImplementedError,
               ValueError, zlib.error)


@dataclass
class ImportResult:
    path: str           # the dropped item, or `<archive>.zip/<folder>` / `<folder>/<sub>` for one adapter in it
    name: str | None    # the adapter's name in the library; None when refused
    ok: bool
    message: str        # "added math: rank 8, ..." or the precise reason for the refusal


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
    problem: str | None = None  # meta.json unreadable (edited by hand): the adapter is listed but refused at load

    @property
    def too_few_examples(self) -> bool:
        return self.n_examples < MIN_EXAMPLES


@dataclass
class _Item:
    """One adapter to import: a PEFT folder, or a folder (`prefix`, "" for the root) inside a zip."""
    label: str
    name: str
    folder: Path | None = None
    zpath: Path | None = None
    prefix: str = ""


class Library:
    def __init__(self, root=None):
        self.root = Path(root).expanduser() if root is not None else default_library_dir()
        self.adapters_dir = self.root / "adapters"

    # ---- reading (no lock: every file is replaced atomically) ----------------------------------------
    def list(self) -> list[AdapterInfo]:
        """All adapters, enabled or not, in index (bank) order."""
        return [self._info(n) for n in self._index()["adapters"]]

    def get(self, name: str) -> AdapterInfo:
        return self._info(self._folder(name, self._index()).name)

    def examples(self, name: str) -> list[str]:
        """The adapter's router example prompts ([] when it has none)."""
        f = self._folder(name, self._index()) / EXAMPLES
        return read_examples_file(f) if f.is_file() else []

    def router_info(self) -> dict | None:
        """The current router: {"path", "adapters", "report" (accuracy, per_adapter, confusion, labels, ...),
        "matches": whether it was trained for exactly the enabled adapters, in order}; None when there is none."""
        rec = self._index()["router"]
        if rec is None:
            return None
        path = self.root / rec["file"]
        sidecar = path.with_suffix(".json")
        try:
            side = json.loads(sidecar.read_bytes())
        except (OSError, ValueError) as e:
            raise RouterError(f"{sidecar}: unreadable router sidecar ({e}); retrain the router") from None
        enabled = [a.name for a in self.list() if a.enabled]
        return {"path": path, "adapters": side.get("adapters"), "report": side.get("report"),
                "matches": side.get("adapters") == enabled}

    # ---- importing -----------------------------------------------------------------------------------
    def import_paths(self, paths, engine=None, progress=None, cancel=None) -> list[ImportResult]:
        """Import PEFT adapter folders, .zip archives of one or more adapters, and folders of adapter folders.

        One ImportResult per adapter found (or per item that holds none), in order; never raises for a bad item.
        engine: validate against its model and hot-add each adapter (usable at once); without one, shapes are
        checked against model.json when the library has one, else only the adapter's own structure.
        progress(done, total, result) after each adapter; cancel() -> True skips the rest ("cancelled")."""
        items = [x for p in paths for x in _expand(Path(p))]
        if engine is not None:
            with self._writing():
                self._set_model(engine.model_name, engine.module_shapes())
        model = None if engine is not None else self._model()
        results = []
        for i, item in enumerate(items, 1):
            if isinstance(item, ImportResult):
                result = item
            elif cancel is not None and cancel():
                result = ImportResult(item.label, None, False, f"{item.label}: not imported (cancelled)")
            else:
                result = self._import_one(item, engine, model)
            results.append(result)
            if progress is not None:
                progress(i, len(items), result)
        return results

    def _import_one(self, item: _Item, engine, model) -> ImportResult:
        problem = _name_problem(item.name)
        if problem:
            return ImportResult(item.label, None, False, f"{item.label}: {problem}; rename it first")
        try:
            with self._writing() as idx:
                taken = next((n for n in idx["adapters"] if n.casefold() == item.name.casefold()), None)
                if taken is not None:
                    raise AdapterError(f"{item.label}: an adapter named '{taken}' is already in the library; "
                                       "rename it first (or remove the old one)")
                target = self.adapters_dir / item.name
                if target.exists():
                    raise AdapterError(f"{item.label}: {target} exists but is not a library adapter (no {META}); "
                                       "move it away first")
                stage = self.root / ".tmp" / uuid.uuid4().hex  # mkdir, not mkdtemp: the folder keeps the umask's mode
                stage.mkdir()
                try:
                    summary = self._stage(item, stage, engine, model, target)
                finally:
                    shutil.rmtree(stage, ignore_errors=True)  # gone already when it was published
                self._write_index(idx["adapters"] + [item.name], idx["router"])
        except AdapterError as e:
            return ImportResult(item.label, None, False, str(e))
        except OSError as e:  # the library itself cannot be written (disk full, permissions)
            return ImportResult(item.label, None, False, f"{item.label}: could not write it into {self.root} ({e})")
        return ImportResult(item.label, item.name, True, summary)

    def _stage(self, item: _Item, stage: Path, engine, model, target: Path) -> str:
        """Copy, validate and describe the adapter in `stage`, then publish it as `target`. -> summary line."""
        (_copy_zip if item.zpath is not None else _copy_folder)(item, stage)
        prompts, note = _staged_examples(stage)
        added = False
        try:
            if engine is not None:
                info = engine.add_adapter(stage, name=item.name)  # validates against the model and hot-adds
                added, rank, targets = True, info["rank"], info["targets"]
                checked = f"fits {engine.model_name}"
            else:
                model_name, shapes = model or (None, None)
                lw = read_adapter(stage, shapes or _own_shapes(stage), name=item.name)
                rank, targets = lw.rank, lw.targets
                checked = (f"fits {model_name} (the library's last model)" if model else
                           "structure checked; no model known yet, shapes are checked when a model loads it")
        except AdapterError as e:  # name the dropped item, not the staging folder
            message = str(e).replace(str(stage), item.label)
            raise AdapterError(message if message.startswith(item.label) else f"{item.label}: {message}") from None
        try:
            size = sum((stage / f).stat().st_size for f in (CONFIG, SAFETENSORS))
            atomic.write_new(stage / META, atomic.json_bytes({
                "name": item.name, "color": None, "enabled": True,
                "imported": datetime.now(timezone.utc).isoformat(timespec="seconds"), "source": item.label,
                "rank": rank, "targets": targets, "size_bytes": size, "n_examples": len(prompts), "accuracy": None}))
            atomic.publish_dir(stage, target)
        except BaseException:
            if added:
                engine.remove_adapter(item.name)
            raise
        return (f"added {item.name}: rank {rank}, {', '.join(targets)}, {_size(size)}, {len(prompts)} examples; "
                f"{checked}" + (f"; {note}" if note else ""))

    # ---- editing -------------------------------------------------------------------------------------
    def rename(self, old: str, new: str, engine=None):
        problem = _name_problem(new)
        if problem:
            raise AdapterError(f"cannot rename '{old}' to {new!r}: {problem}")
        with self._writing() as idx:
            folder = self._folder(old, idx)
            if new == old:
                return
            taken = next((n for n in idx["adapters"] if n.casefold() == new.casefold() and n != old), None)
            if taken is not None:
                raise AdapterError(f"cannot rename '{old}' to '{new}': an adapter named '{taken}' is already in "
                                   "the library")
            target = self.adapters_dir / new
            if target.exists() and new.casefold() != old.casefold():  # on a case-insensitive disk it is `folder`
                raise AdapterError(f"cannot rename '{old}' to '{new}': {target} exists (not a library adapter)")
            loaded = engine is not None and old in engine.adapters
            if loaded:
                engine.remove_adapter(old)
            _update_meta(folder, name=new)
            os.rename(folder, target)
            atomic.fsync_dir(self.adapters_dir)
            names = [new if n == old else n for n in idx["adapters"]]
            if loaded:
                engine.add_adapter(target, name=new)
                names = [n for n in names if n != new] + [new]  # where the bank put it
                _forget_stale_router(engine)
            self._write_index(names, idx["router"])

    def set_color(self, name: str, color: str | None):
        """color: "#rrggbb", or None for the automatic colour."""
        if color is not None and not _COLOR.fullmatch(color):
            raise SwitchboardError(f"colour {color!r} for '{name}': expected #rrggbb")
        with self._writing() as idx:
            _update_meta(self._folder(name, idx), color=color)

    def set_enabled(self, name: str, enabled: bool, engine=None):
        """A disabled adapter is not loaded, so never routed. With an engine it is removed from / added to the
        bank at once (AdapterError when it no longer fits the model; nothing changes then)."""
        with self._writing() as idx:
            folder = self._folder(name, idx)
            names = idx["adapters"]
            if engine is not None and enabled and name not in engine.adapters:
                engine.add_adapter(folder, name=name)
                names = [n for n in names if n != name] + [name]  # where the bank put it
            elif engine is not None and not enabled and name in engine.adapters:
                engine.remove_adapter(name)
                _forget_stale_router(engine)
            _update_meta(folder, enabled=bool(enabled))
            if names != idx["adapters"]:
                self._write_index(names, idx["router"])

    def remove(self, name: str, engine=None):
        """Delete the adapter (and unload it from the engine). The router then needs a retrain."""
        with self._writing() as idx:
            folder = self._folder(name, idx)
            trash = self.root / ".trash" / uuid.uuid4().hex
            os.rename(folder, trash)  # the removal's commit point
            atomic.fsync_dir(self.adapters_dir)
            self._write_index([n for n in idx["adapters"] if n != name], idx["router"])
            shutil.rmtree(trash, ignore_errors=True)
        if engine is not None and name in engine.adapters:
            engine.remove_adapter(name)
            _forget_stale_router(engine)

    def set_examples(self, name: str, prompts):
        """Replace the adapter's router examples (an empty list removes them)."""
        prompts = list(prompts)
        for i, p in enumerate(prompts, 1):
            if not isinstance(p, str) or not p.strip():
                raise ExamplesError(f"example {i} for '{name}': a prompt must be a non-empty string, got {p!r}")
        with self._writing() as idx:
            folder = self._folder(name, idx)
            if prompts:
                atomic.write_bytes(folder / EXAMPLES, _jsonl(prompts))
            else:
                (folder / EXAMPLES).unlink(missing_ok=True)
                atomic.fsync_dir(folder)
            _update_meta(folder, n_examples=len(prompts))

    def import_examples(self, name: str, file, append: bool = False) -> int:
        """Read a .jsonl ({"prompt": ...} per line) or .txt (a prompt per line) file into the adapter's examples,
        replacing them (or after them with append=True). ExamplesError names file:line. -> number of examples."""
        file = Path(file)
        if file.suffix not in (".jsonl", ".txt"):
            raise ExamplesError(f"{file}: expected a .jsonl file ({{\"prompt\": ...}} per line) or a .txt file "
                                "(one prompt per line)")
        try:
            prompts = read_examples_file(file)
        except OSError as e:
            raise ExamplesError(f"{file}: cannot read ({e})") from None
        if append:
            prompts = self.examples(name) + prompts
        self.set_examples(name, prompts)
        return len(prompts)

    # ---- engine and router ---------------------------------------------------------------------------
    def load_into(self, engine, progress=None) -> list[tuple[str, str]]:
        """Load the enabled adapters in index order, then the router when it was trained for exactly those.
        -> [(path, reason)] for each adapter or router refused; one bad adapter never stops the others.
        progress(done, total, name) after each adapter."""
        with self._writing() as idx:
            self._set_model(engine.model_name, engine.module_shapes())
        # loading needs no lock: an adapter or router removed meanwhile is refused like an unreadable one
        todo = [a for a in (self._info(n) for n in idx["adapters"]) if a.enabled]
        refused = []
        for i, a in enumerate(todo, 1):
            try:
                if a.problem:
                    raise AdapterError(a.problem)
                engine.add_adapter(a.path, name=a.name)
            except AdapterError as e:
                refused.append((str(a.path), str(e)))
            if progress is not None:
                progress(i, len(todo), a.name)
        if idx["router"] is not None:
            path = self.root / idx["router"]["file"]
            try:
                engine.load_router(path)
            except RouterError as e:
                refused.append((str(path), str(e)))
        return refused

    def retrain(self, engine=None, full=False, progress=None, cancel=None, *, epochs=None, seed=0) -> dict | None:
        """Train the router on the enabled adapters' examples: head-only from the current router when adapters
        were only added or removed, full when there is none, an adapter's examples changed, or full=True.
        progress(epoch, epochs, loss, held-out accuracy or None); cancel() -> True stops it. The new router
        replaces the old one only when training finished; then each adapter's meta.json gets its accuracy and
        the engine (whose bank must hold exactly the enabled adapters) loads it.
        -> the router's report (accuracy, per_adapter, confusion, labels, n_train, n_heldout) plus "mode"
        ("head" | "full") and "path"; None when cancelled (nothing changed)."""
        from engine.router import Router

        idx = self._index()
        names = [a.name for a in (self._info(n) for n in idx["adapters"]) if a.enabled]
        if not names:
            raise RouterError("no enabled adapters to train the router on")
        if engine is not None and engine.adapters != names:
            raise RouterError(f"the engine's adapters {engine.adapters} are not the library's enabled adapters "
                              f"{names}; reload the library first")
        examples = {n: self.examples(n) for n in names}
        missing = [n for n in names if not examples[n]]
        if missing:
            raise RouterError(f"no router examples for {', '.join(missing)}: import or write some first "
                              "(or disable those adapters)")
        digests = {n: _digest(examples[n]) for n in names}
        old, rec = None, idx["router"]
        if rec is not None:
            try:
                old = Router.load(self.root / rec["file"])
            except RouterError:
                old = None  # unreadable: train from scratch
        changed = old is not None and any(rec["examples"].get(n) != digests[n] for n in old.adapters if n in digests)
        mode = "full" if full or old is None or changed else "head"
        kw = dict(epochs=epochs, seed=seed, progress=progress, cancel=cancel)
        router = Router.train(examples, **kw) if old is None else old.retrain(examples, full=mode == "full", **kw)
        if router is None:
            return None

        with self._writing() as idx:
            now = [a.name for a in (self._info(n) for n in idx["adapters"]) if a.enabled]
            if now != names or any(_digest(self.examples(n)) != digests[n] for n in names):
                raise RouterError("the library changed while the router was training; retrain again")
            numbers = [int(m[1]) for p in self.root.glob("router-*.safetensors")
                       if (m := _ROUTER_FILE.fullmatch(p.name))]
            path = self.root / f"router-{max(numbers, default=0) + 1}.safetensors"
            router.save(path)
            atomic.fsync_dir(self.root)
            self._write_index(idx["adapters"], {"file": path.name, "examples": digests})  # the commit point
            if rec is not None:
                for f in (self.root / rec["file"], (self.root / rec["file"]).with_suffix(".json")):
                    f.unlink(missing_ok=True)
            for n, acc in router.report["per_adapter"].items():
                _update_meta(self.adapters_dir / n, accuracy=acc)
        if engine is not None:
            engine.load_router(path)
        return {**router.report, "mode": mode, "path": str(path)}

    # ---- internals -----------------------------------------------------------------------------------
    def _index(self) -> dict:
        """index.json reconciled with the adapter folders (see "Crash safety" above)."""
        path = self.root / INDEX
        try:
            idx = json.loads(path.read_bytes())
        except FileNotFoundError:
            idx = {"format": FORMAT, "version": VERSION, "adapters": [], "router": None}
        except (OSError, ValueError) as e:
            raise SwitchboardError(f"{path}: unreadable library index ({e}); delete it to rebuild it from the "
                                   "adapter folders (the router will need a retrain)") from None
        if not isinstance(idx, dict) or idx.get("format") != FORMAT or not isinstance(idx.get("adapters"), list):
            raise SwitchboardError(f"{path}: not a LoRA Switchboard library index")
        if idx.get("version") != VERSION:
            raise SwitchboardError(f"{path}: library format version {idx.get('version')}, this app reads {VERSION}")
        folders = set()
        if self.adapters_dir.is_dir():
            folders = {d.name for d in self.adapters_dir.iterdir() if (d / META).is_file()}
        names = [n for n in dict.fromkeys(idx["adapters"]) if isinstance(n, str) and n in folders]
        names += sorted(folders - set(names))
        rec = idx.get("router")
        ok = (isinstance(rec, dict) and isinstance(rec.get("file"), str) and _ROUTER_FILE.fullmatch(rec["file"])
              and isinstance(rec.get("examples"), dict))
        return {"adapters": names, "router": rec if ok else None, "reconciled": names != idx["adapters"]}

    def _write_index(self, names, router):
        atomic.write_json(self.root / INDEX, {"format": FORMAT, "version": VERSION, "adapters": names,
                                              "router": router})

    def _folder(self, name: str, idx) -> Path:
        if name not in idx["adapters"]:
            raise AdapterError(f"no adapter named '{name}' in the library {self.root} "
                               f"(it has: {', '.join(idx['adapters']) or 'none'})")
        return self.adapters_dir / name

    def _info(self, name: str) -> AdapterInfo:
        folder = self.adapters_dir / name
        try:
            meta, problem = json.loads((folder / META).read_bytes()), None
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            meta, problem = {}, f"{folder / META}: unreadable ({e})"
        return AdapterInfo(name=name, path=folder, color=meta.get("color"), enabled=meta.get("enabled", True),
                           imported=meta.get("imported"), source=meta.get("source"), rank=meta.get("rank"),
                           targets=meta.get("targets", []), size_bytes=meta.get("size_bytes"),
                           n_examples=meta.get("n_examples", 0), accuracy=meta.get("accuracy"), problem=problem)

    @contextlib.contextmanager
    def _writing(self):
        """Hold the writers' lock, clear what interrupted writers left, and yield the index."""
        for d in (self.adapters_dir, self.root / ".tmp", self.root / ".trash"):
            d.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / ".lock"):
            idx = self._index()
            self._collect_garbage(idx)
            yield idx

    def _collect_garbage(self, idx):
        for d in (self.root / ".tmp", self.root / ".trash"):
            for p in d.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        current = idx["router"]["file"] if idx["router"] else None
        for p in [*self.root.glob("router-*.safetensors"), *self.root.glob("router-*.json")]:
            if p.with_suffix(".safetensors").name != current:
                p.unlink()
        for p in self.root.glob(".*.tmp"):  # atomic writes (ours and Router.save's) cut short
            p.unlink()
        if idx["reconciled"]:
            self._write_index(idx["adapters"], idx["router"])

    def _model(self):
        """(model name, module shapes) from model.json, or None."""
        try:
            rec = json.loads((self.root / MODEL).read_bytes())
            return rec["model"], {m: (int(i), int(o)) for m, (i, o) in rec["module_shapes"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def set_model(self, name: str, shapes: dict[str, tuple[int, int]]):
        """Record the model (module -> (in, out)) that imports without an engine are checked against."""
        with self._writing():
            self._set_model(name, shapes)

    def _set_model(self, name, shapes):
        if self._model() != (name, shapes):
            atomic.write_json(self.root / MODEL, {"model": name,
                                                  "module_shapes": {m: list(s) for m, s in shapes.items()}})


# ---- import helpers ------------------------------------------------------------------------------------
def _expand(path: Path) -> list:
    """A dropped path -> the adapters in it (_Item), or an ImportResult refusing it."""
    label = str(path)
    try:
        if path.is_dir():
            if (path / CONFIG).is_file():
                return [_Item(label, path.resolve().name, folder=path)]
            peft_files = (CONFIG, SAFETENSORS, *PICKLES)
            subs = sorted(p for p in path.iterdir()
                          if (p.is_dir() and any((p / f).is_file() for f in peft_files))
                          or (p.is_file() and p.suffix.lower() == ".zip"))
            if not subs:
                return [_refused(label, f"{label}: no {CONFIG} in this folder or its subfolders "
                                        "(not a PEFT adapter)")]
            return [x for p in subs for x in (_expand_zip(p) if p.is_file() else [_Item(str(p), p.name, folder=p)])]
        if path.is_file() and path.suffix.lower() == ".zip":
            return _expand_zip(path)
    except OSError as e:
        return [_refused(label, f"{label}: cannot read ({e})")]
    if path.exists():
        return [_refused(label, f"{label}: not a PEFT adapter folder or .zip archive")]
    return [_refused(label, f"{label}: no such file or folder")]


def _expand_zip(zpath: Path) -> list:
    """The adapter folders in an archive: each folder holding an adapter_config.json (any depth). One adapter is
    named after the archive (as Engine.add_adapter names a zip), several after their folders."""
    try:
        with zipfile.ZipFile(zpath) as zf:
            infos = zf.infolist()
            _check_members(zpath, infos)  # zip-slip names, duplicates, zip bombs: refuses the whole archive
    except AdapterError as e:
        return [_refused(str(zpath), str(e))]
    except _ZIP_ERRORS as e:
        return [_refused(str(zpath), f"{zpath}: cannot read the zip archive ({e})")]
    prefixes = sorted({i.filename[:-len(CONFIG)] for i in infos
                       if not i.is_dir() and PurePosixPath(i.filename).name == CONFIG})
    if not prefixes:
        return [_refused(str(zpath), f"{zpath}: no {CONFIG} in the archive (not a PEFT adapter)")]
    if len(prefixes) == 1:
        return [_Item(str(zpath), zpath.stem, zpath=zpath, prefix=prefixes[0])]
    return [_Item(f"{zpath}/{p}".rstrip("/"), PurePosixPath(p).name or zpath.stem, zpath=zpath, prefix=p)
            for p in prefixes]


def _copy_folder(item: _Item, stage: Path):
    """Copy the adapter's files into `stage` (fsynced). Only known names are copied, never the whole folder."""
    try:
        present = {p.name for p in item.folder.iterdir() if p.is_file()}
        if SAFETENSORS not in present:
            _weights_name(present, item.label, allow_pickle=False)  # raises: pickle-only or no weights
        for f in (CONFIG, SAFETENSORS, *SOURCE_EXAMPLES):
            if f in present:
                shutil.copyfile(item.folder / f, stage / f)
                atomic.fsync_file(stage / f)
    except OSError as e:
        raise AdapterError(f"{item.label}: cannot read ({e})") from None


def _copy_zip(item: _Item, stage: Path):
    """Copy one adapter's members into `stage` (fsynced). The files written are named by us, never by the
    archive, so nothing lands outside `stage` whatever the member names say."""
    try:
        with zipfile.ZipFile(item.zpath) as zf:
            infos = zf.infolist()
            _check_members(item.zpath, infos)  # again: the archive may have changed since _expand_zip
            n = len(item.prefix)
            present = {i.filename[n:] for i in infos
                       if i.filename.startswith(item.prefix) and not i.is_dir() and "/" not in i.filename[n:]}
            if SAFETENSORS not in present:
                _weights_name(present, item.label, allow_pickle=False)  # raises: pickle-only or no weights
            for f in (CONFIG, SAFETENSORS, *SOURCE_EXAMPLES):
                if f in present:
                    with zf.open(item.prefix + f) as src, open(stage / f, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                        dst.flush()
                        os.fsync(dst.fileno())
    except AdapterError:
        raise
    except _ZIP_ERRORS as e:
        raise AdapterError(f"{item.zpath}: cannot read the zip archive ({e})") from None


def _staged_examples(stage: Path):
    """Examples the adapter brought along, rewritten as examples.jsonl. -> (prompts, note about a bad file)."""
    found = [stage / f for f in SOURCE_EXAMPLES if (stage / f).is_file()]
    prompts, note = [], None
    if found:
        try:
            prompts = read_examples_file(found[0])
        except ExamplesError as e:
            note = f"its {found[0].name} was not imported ({str(e).replace(str(stage) + os.sep, '')})"
    for f in found:
        f.unlink()
    if prompts:
        atomic.write_new(stage / EXAMPLES, _jsonl(prompts))
    return prompts, note


def _own_shapes(folder: Path) -> dict:
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
        m = _KEY.fullmatch(key)
        if m and len(shape) == 2:
            in_out = shapes.setdefault(m["module"], [0, 0])  # 0: the other half is missing, read_adapter says so
            if m["ab"] == "A":
                in_out[0] = shape[1]
            else:
                in_out[1] = shape[0]
    return {m: tuple(s) for m, s in shapes.items()}


def _name_problem(name: str) -> str | None:
    """Why `name` cannot be an adapter (and folder) name on every platform, or None."""
    if not name or not name.strip():
        return "the adapter name is empty"
    if _BAD_CHARS.search(name):
        return f"the name {name!r} holds a character not allowed in file names (<>:\"/\\|?* or control)"
    if name.startswith(".") or name.endswith((" ", ".")):
        return f"the name {name!r} starts with '.' or ends with a space or '.'"
    if name.split(".")[0].lower() in _RESERVED:
        return f"the name {name!r} is reserved on Windows"
    if len(name) > 100:
        return f"the name is {len(name)} characters long (at most 100)"
    return None


def _refused(label: str, message: str) -> ImportResult:
    return ImportResult(label, None, False, message)


# ---- small helpers -------------------------------------------------------------------------------------
def _update_meta(folder: Path, **changes):
    path = folder / META
    meta = json.loads(path.read_bytes())
    meta.update(changes)
    atomic.write_json(path, meta)


def _forget_stale_router(engine):
    """The engine's router could pick an adapter the bank no longer has: drop it until the next retrain."""
    if engine.router is not None and not set(engine.router.adapters) <= set(engine.adapters):
        engine.router = None


def _jsonl(prompts: list[str]) -> bytes:
    return "".join(json.dumps({"prompt": p}, ensure_ascii=False) + "\n" for p in prompts).encode("utf-8")


def _digest(prompts: list[str]) -> str:
    return hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode("utf-8")).hexdigest()


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive lock on `path` between processes and threads (each call opens its own file), held for the block."""
    with open(path, "a+b") as f:
        if os.name == "nt":
            import msvcrt

            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after 10 s: keep waiting
                    pass
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file closes, also when the process dies
            yield
