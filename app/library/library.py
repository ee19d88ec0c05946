"""Library: import, edit, load and retrain the adapter library (layout and crash safety: app/library/__init__.py)."""
from __future__ import annotations  # `list` is also a method name below

import hashlib
import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from engine.adapter_io import CONFIG, SAFETENSORS, printable, read_adapter
from engine.errors import AdapterError, ExamplesError, RouterError, SwitchboardError
from engine.examples import read_examples_file

from engine import atomic

from ..paths import default_library_dir
from . import importer
from .importer import ImportResult, Item
from .storage import COLOR, EXAMPLES, INDEX, META, ROUTER_FILE, AdapterInfo, LibraryError, Storage, jsonl

# A head-only retrain keeps the features, which may read a new adapter's words as another's or as general chat
# (on the demo library: a new adapter got 10 of 20 fresh prompts). Below this held-out accuracy for a new
# adapter the retrain goes on as a full one.
HEAD_MIN_ACCURACY = 0.9


class Library:
    def __init__(self, root=None):
        self.root = Path(root).expanduser() if root is not None else default_library_dir()
        self.adapters_dir = self.root / "adapters"
        self._store = Storage(self.root)

    # ---- reading (no lock: every file is replaced atomically) ----------------------------------------
    def list(self) -> list[AdapterInfo]:
        """All adapters, enabled or not, in index (bank) order."""
        return [self._store.info(n) for n in self._store.index().adapters]

    def get(self, name: str) -> AdapterInfo:
        return self._store.info(self._folder(name, self._store.index()).name)

    def problems(self) -> list[str]:
        """What reading the library had to repair or skip (a damaged index, a folder name that is not UTF-8),
        and every adapter record's problem or warning."""
        idx = self._store.index()
        infos = [self._store.info(n) for n in idx.adapters]
        return idx.problems + [p for a in infos for p in (a.problem, a.warning) if p]

    def examples(self, name: str) -> list[str]:
        """The adapter's router example prompts ([] when it has none)."""
        f = self._folder(name, self._store.index()) / EXAMPLES
        return read_examples_file(f) if f.is_file() else []

    def router_file(self) -> Path | None:
        """The current router pair's weights file, or None when no router has been trained."""
        router = self._store.index().router
        return None if router is None else self.root / router["file"]

    def router_info(self) -> dict | None:
        """The current router: {"path", "adapters", "report" (accuracy, per_adapter, confusion, labels, ...),
        "matches": whether it was trained for exactly the loadable adapters, in order}; None when there is none."""
        from engine.router import read_sidecar

        path = self.router_file()
        if path is None:
            return None
        side = read_sidecar(path)
        loadable = [a.name for a in self.list() if a.loadable]
        return {"path": path, "adapters": side["adapters"], "report": side.get("report"),
                "matches": side["adapters"] == loadable}

    # ---- importing -----------------------------------------------------------------------------------
    def import_paths(self, paths, engine=None, progress=None, cancel=None) -> list[ImportResult]:
        """Import PEFT adapter folders, .zip archives of one or more adapters, and folders of adapter folders.

        One ImportResult per adapter found (or per item that holds none), in order; never raises for a bad item.
        engine: validate against its model and hot-add each adapter (usable at once); without one, shapes are
        checked against model.json when the library has one, else only the adapter's own structure.
        progress(done, total, result) after each adapter; cancel() -> True skips the rest ("cancelled")."""
        items = [x for p in paths for x in importer.expand(Path(p))]
        if engine is not None:
            with self._store.writing():
                self._store.set_model(engine.model_name, engine.module_shapes())
        model = None if engine is not None else self._store.model()
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

    def _import_one(self, item: Item, engine, model) -> ImportResult:
        problem = importer.name_problem(item.name)
        if problem:
            return ImportResult(item.label, None, False, f"{item.label}: {problem}; rename it first")
        try:
            with self._store.writing() as idx:
                taken = next((n for n in idx.adapters if n.casefold() == item.name.casefold()), None)
                if taken is not None:
                    raise AdapterError(f"{item.label}: an adapter named '{taken}' is already in the library; "
                                       f"rename it first (switchboard library rename {taken} NEW), or remove it")
                target = self.adapters_dir / item.name
                if target.exists():
                    raise AdapterError(f"{item.label}: {target} exists but is not a library adapter (no {META}); "
                                       "move it away first")
                stage = self.root / ".tmp" / uuid.uuid4().hex  # mkdir, not mkdtemp: the folder keeps the umask's mode
                stage.mkdir()
                try:
                    summary, added = self._stage(item, stage, engine, model, target)
                finally:
                    shutil.rmtree(stage, ignore_errors=True)  # gone already when it was published
                try:
                    self._store.write_index(idx.adapters + [item.name], idx.router)
                except OSError as e:  # take it back out, so that the library is as it was
                    self._unpublish(target, engine if added else None)
                    raise LibraryError(f"could not write {INDEX} ({e}); nothing was added") from None
        except AdapterError as e:
            return ImportResult(item.label, None, False, printable(str(e)))
        except LibraryError as e:  # the library itself cannot be written (disk full, read-only)
            return ImportResult(item.label, None, False, f"{item.label}: could not write it into the library "
                                                         f"{printable(self.root)} ({e})")
        return ImportResult(item.label, item.name, True, summary)

    def _stage(self, item: Item, stage: Path, engine, model, target: Path) -> tuple[str, bool]:
        """Copy, validate and describe the adapter in `stage`, then publish it as `target`.
        -> (summary line, whether the engine hot-added it)."""
        importer.copy_item(item, stage)
        prompts, note = importer.staged_examples(stage)
        added = False
        try:
            if engine is not None:
                info = engine.add_adapter(stage, name=item.name)  # validates against the model and hot-adds
                added, rank, targets = True, info["rank"], info["targets"]
                checked = f"fits {engine.model_name}"
            else:
                model_name, shapes = model or (None, None)
                lw = read_adapter(stage, shapes or importer.own_shapes(stage), name=item.name)
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
                f"{checked}" + (f"; {note}" if note else "")), added

    def _unpublish(self, target: Path, engine):
        """Undo a publish whose index write failed: one rename into .trash/ (the removal's commit point)."""
        os.rename(target, self.root / ".trash" / uuid.uuid4().hex)
        atomic.fsync_dir(self.adapters_dir)
        if engine is not None:
            engine.remove_adapter(target.name)

    # ---- editing -------------------------------------------------------------------------------------
    def rename(self, old: str, new: str, engine=None):
        problem = importer.name_problem(new)
        if problem:
            raise AdapterError(f"cannot rename '{old}' to {printable(new)!r}: {problem}")
        with self._store.writing() as idx:
            folder = self._folder(old, idx)
            if new == old:
                return
            taken = next((n for n in idx.adapters if n.casefold() == new.casefold() and n != old), None)
            if taken is not None:
                raise AdapterError(f"cannot rename '{old}' to '{new}': an adapter named '{taken}' is already in "
                                   "the library")
            target = self.adapters_dir / new
            if target.exists() and new.casefold() != old.casefold():  # on a case-insensitive disk it is `folder`
                raise AdapterError(f"cannot rename '{old}' to '{new}': {target} exists (not a library adapter)")
            loaded = engine is not None and old in engine.adapters
            if loaded:
                engine.remove_adapter(old)
            self._store.update_meta(folder, name=new)
            os.rename(folder, target)
            atomic.fsync_dir(self.adapters_dir)
            names = [new if n == old else n for n in idx.adapters]
            if loaded:
                engine.add_adapter(target, name=new)
                names = [n for n in names if n != new] + [new]  # where the bank put it
            self._store.write_index(names, idx.router)

    def set_color(self, name: str, color: str | None):
        """color: "#rrggbb", or None for the automatic colour."""
        if color is not None and not (isinstance(color, str) and COLOR.fullmatch(color)):
            raise SwitchboardError(f"colour {color!r} for '{name}': expected #rrggbb")
        with self._store.writing() as idx:
            self._store.update_meta(self._folder(name, idx), color=color)

    def set_enabled(self, name: str, enabled: bool, engine=None):
        """A disabled adapter is not loaded, so never routed. With an engine it is removed from / added to the
        bank at once (AdapterError when it no longer fits the model; nothing changes then)."""
        with self._store.writing() as idx:
            folder = self._folder(name, idx)
            names = idx.adapters
            if engine is not None and enabled and name not in engine.adapters:
                engine.add_adapter(folder, name=name)
                names = [n for n in names if n != name] + [name]  # where the bank put it
            elif engine is not None and not enabled and name in engine.adapters:
                engine.remove_adapter(name)  # its router keeps routing among the others until a retrain
            self._store.update_meta(folder, enabled=bool(enabled))
            if names != idx.adapters:
                self._store.write_index(names, idx.router)

    def remove(self, name: str, engine=None):
        """Delete the adapter (and unload it from the engine). The router then needs a retrain."""
        with self._store.writing() as idx:
            folder = self._folder(name, idx)
            trash = self.root / ".trash" / uuid.uuid4().hex
            os.rename(folder, trash)  # the removal's commit point
            atomic.fsync_dir(self.adapters_dir)
            shutil.rmtree(trash, ignore_errors=True)
            try:
                self._store.write_index([n for n in idx.adapters if n != name], idx.router)
            except OSError:  # disk full: readers drop a name without a folder, so the removal stands
                pass
        if engine is not None and name in engine.adapters:
            engine.remove_adapter(name)

    def set_examples(self, name: str, prompts):
        """Replace the adapter's router examples (an empty list removes them)."""
        prompts = list(prompts)
        for i, p in enumerate(prompts, 1):
            if not isinstance(p, str) or not p.strip():
                raise ExamplesError(f"example {i} for '{name}': a prompt must be a non-empty string, got {p!r}")
        with self._store.writing() as idx:
            folder = self._folder(name, idx)
            if prompts:
                atomic.write_bytes(folder / EXAMPLES, jsonl(prompts))
            else:
                (folder / EXAMPLES).unlink(missing_ok=True)
                atomic.fsync_dir(folder)
            self._store.update_meta(folder, n_examples=len(prompts))

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
        progress(done, total, name) after each adapter. Takes no lock and needs no write access: the model is
        recorded in model.json only when it changed and the library can be written."""
        try:
            if self._store.model() != (engine.model_name, engine.module_shapes()):
                self.set_model(engine.model_name, engine.module_shapes())
        except LibraryError:
            pass  # read-only or full: imports without a model just check less
        # loading needs no lock: an adapter or router removed meanwhile is refused like an unreadable one
        idx = self._store.index()
        todo = [a for a in map(self._store.info, idx.adapters) if a.enabled]
        refused = []
        for i, a in enumerate(todo, 1):
            try:
                if a.problem:
                    raise AdapterError(a.problem)
                engine.add_adapter(a.path, name=a.name)
            except AdapterError as e:
                refused.append((printable(a.path), printable(str(e))))
            if progress is not None:
                progress(i, len(todo), a.name)
        if idx.router is not None:
            path = self.root / idx.router["file"]
            try:
                engine.load_router(path)
            except RouterError as e:
                refused.append((printable(path), printable(str(e))))
        return refused

    def retrain(self, engine=None, full=False, progress=None, cancel=None, *, epochs=None, seed=0) -> dict | None:
        """Train the router on the loadable adapters' examples: head-only from the current router when adapters
        were only added or removed, full when there is none, an adapter's examples changed, or full=True; a
        head-only retrain that leaves a new adapter below HEAD_MIN_ACCURACY held out goes on as a full one.
        progress(epoch, epochs, loss, held-out accuracy or None); cancel() -> True stops it. The new router
        replaces the old one only when training finished; then each adapter's meta.json gets its accuracy and
        the engine (whose bank must hold exactly the loadable adapters) loads it.
        -> the router's report (accuracy, per_adapter, confusion, labels, n_train, n_heldout) plus "mode"
        ("head" | "full"), "refit_for" ({new adapter: its held-out accuracy} where a head-only retrain fell short
        and went on as a full one) and "path"; None when cancelled (nothing changed)."""
        from engine.router import Router

        idx = self._store.index()
        names = [a.name for a in map(self._store.info, idx.adapters) if a.loadable]
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
        old, rec = None, idx.router
        if rec is not None:
            try:
                old = Router.load(self.root / rec["file"])
            except RouterError:
                old = None  # unreadable: train from scratch
        changed = old is not None and any(rec["examples"].get(n) != digests[n] for n in old.adapters if n in digests)
        mode = "full" if full or old is None or changed else "head"
        kw = dict(epochs=epochs, seed=seed, progress=progress, cancel=cancel)
        router = Router.train(examples, **kw) if old is None else old.retrain(examples, full=mode == "full", **kw)
        held = router.report["per_adapter"] if mode == "head" and router is not None else {}
        # (an accuracy of None: none of its examples held out)
        short = {n: acc for n, acc in held.items()
                 if n not in old.adapters and acc is not None and acc < HEAD_MIN_ACCURACY}
        if short:
            mode = "full"
            router = old.retrain(examples, full=True, **kw)
        if router is None:
            return None

        with self._store.writing() as idx:
            now = [a.name for a in map(self._store.info, idx.adapters) if a.loadable]
            if now != names or any(_digest(self.examples(n)) != digests[n] for n in names):
                raise RouterError("the library changed while the router was training; retrain again")
            numbers = [int(m[1]) for p in self.root.glob("router-*.safetensors")
                       if (m := ROUTER_FILE.fullmatch(p.name))]
            path = self.root / f"router-{max(numbers, default=0) + 1}.safetensors"
            router.save(path)
            atomic.fsync_dir(self.root)
            self._store.write_index(idx.adapters, {"file": path.name, "examples": digests})  # the commit point
            if idx.router is not None:
                for f in (self.root / idx.router["file"], (self.root / idx.router["file"]).with_suffix(".json")):
                    f.unlink(missing_ok=True)
            for n, acc in router.report["per_adapter"].items():
                self._store.update_meta(self.adapters_dir / n, accuracy=acc)
        if engine is not None:
            engine.load_router(path)
        return {**router.report, "mode": mode, "refit_for": short, "path": str(path)}

    def set_model(self, name: str, shapes: dict[str, tuple[int, int]]):
        """Record the model (module -> (in, out)) that imports without an engine are checked against."""
        with self._store.writing():
            self._store.set_model(name, shapes)

    # ---- internals -----------------------------------------------------------------------------------
    def _folder(self, name: str, idx) -> Path:
        if name not in idx.adapters:
            raise AdapterError(f"no adapter named '{printable(name)}' in the library {printable(self.root)} "
                               f"(it has: {', '.join(idx.adapters) or 'none'})")
        return self.adapters_dir / name


def _digest(prompts: list[str]) -> str:
    return hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode("utf-8")).hexdigest()


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
