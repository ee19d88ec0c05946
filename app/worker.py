"""EngineWorker: the one long-lived QThread that owns the engine (and so the GPU).

Commands go in through a queue as (name, kwargs) and run one at a time in the thread; each ends with
`done(name, result)` or `failed(name, message)`. A generation also streams `routing(dict)` and
`tokens(text, sentence_end)`, the tokens batched so the UI gets at most one signal per ~30 ms (plus one per
sentence end). Payloads are plain Python (dicts, str), never engine objects. The engine is imported in the
thread: torch and transformers take seconds to import and the window must show at once.
"""
import queue
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from PySide6.QtCore import QThread, Signal

TOKEN_BATCH_S = 0.03
_STOP = "_stop"


class EngineWorker(QThread):
    progress = Signal(str, float)   # message, fraction in [0, 1] or -1 when unknown (busy)
    done = Signal(str, object)      # command name, plain-Python result
    failed = Signal(str, str)       # command name, message for the user
    routing = Signal(object)        # RoutingEvent as a dict: sentence, probs, selected, latency_ms, row
    tokens = Signal(str, bool)      # batched text, True when it ends a sentence

    def __init__(self, parent=None):
        super().__init__(parent)
        self._queue: queue.Queue[tuple[str, dict]] = queue.Queue()
        self._cancel = threading.Event()
        self._engine = None  # written only by the worker thread

    # ---- UI thread ----
    def submit(self, command: str, /, **kwargs):
        if not hasattr(self, f"_do_{command}"):
            raise ValueError(f"EngineWorker has no command {command!r}")
        if command == "generate":  # a Stop pressed before this generation must not cancel it
            self._cancel.clear()
        self._queue.put((command, kwargs))

    def cancel(self):
        """Stop the running (or next queued) generation; safe to call from any thread."""
        self._cancel.set()
        engine = self._engine
        if engine is not None:
            engine.cancel()

    def exclude(self, name: str):
        """Safe from any thread: a reply in progress stops using adapter `name` from its next sentence
        (a removal queued behind that reply then finds it out of every mix)."""
        engine = self._engine
        if engine is not None:
            engine.exclude(name)

    def stop(self):
        """Drop queued commands, cancel generation and wait for the thread to end (closeEvent)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self.cancel()
        self._queue.put((_STOP, {}))
        self.wait()

    # ---- worker thread ----
    def run(self):
        while True:
            name, kwargs = self._queue.get()
            if name == _STOP:
                self._engine = None
                return
            try:
                result = getattr(self, f"_do_{name}")(**kwargs)
            except Exception as e:  # noqa: BLE001 -- every failure must reach the user and leave the thread alive
                self.failed.emit(name, _message(name, e))
            else:
                self.done.emit(name, result)

    def _require(self):
        if self._engine is None:
            from engine.errors import ModelError
            raise ModelError("no model is loaded: choose a model folder in Settings > Model folder")
        return self._engine

    def _info(self) -> dict:
        eng = self._engine
        return {"model_name": eng.model_name, "device": str(eng.device), "adapters": list(eng.adapters),
                "router": eng.router is not None}

    def _do_load_model(self, model_dir: str | None, device: str = "auto", dtype: str = "auto",
                       library_dir: str | None = None):
        """model_dir None: the bundled demo with its adapters and router. library_dir: adapters to load."""
        self.progress.emit(f"Loading {Path(model_dir).name if model_dir else 'the demo model'}…", -1)
        self._engine = None  # free the old model's memory before the new one loads
        from app.loading import open_engine
        opened = open_engine(model_dir, library_dir=library_dir, device=device, dtype=dtype)
        self._engine = opened.engine
        return {**self._info(), "demo": opened.demo, "description": opened.description, "colors": opened.colors,
                "refused": [(str(path), reason) for path, reason in opened.refused]}

    def _do_warm_up(self):
        """One short generation, so compilation (CUDA graphs) happens now and not on the first message."""
        self.progress.emit("Compiling…", -1)
        return {"warm_up_s": self._require().warmup()}

    def _do_add_adapter(self, path: str, name: str | None = None):
        self.progress.emit(f"Adding adapter {Path(path).name}…", -1)
        return {**self._info(), "added": self._require().add_adapter(path, name=name)}

    def _do_remove_adapter(self, name: str):
        self._require().remove_adapter(name)
        return self._info()

    def _do_load_router(self, path: str):
        self._require().load_router(path)
        return self._info()

    def _do_library(self, job):
        """`job(engine or None, progress)` from the library manager (ui/library_jobs.py): imports, edits and
        retrains that change the bank must run here, and the disk-heavy ones must not run in the UI thread even
        when no model is loaded. The result is under "library"; the bank's state beside it when a model is."""
        result = job(self._engine, lambda message, fraction=-1.0: self.progress.emit(message, fraction))
        return {**(self._info() if self._engine is not None else {}), "library": result}

    def _do_generate(self, messages: list[dict], **settings):
        from engine.events import DoneEvent, RoutingEvent, TokenEvent
        eng = self._require()
        parts: list[str] = []
        last = time.monotonic()

        def flush(sentence_end=False):
            nonlocal last
            if parts:
                self.tokens.emit("".join(parts), sentence_end)
                parts.clear()
            last = time.monotonic()

        stats = {}
        for ev in eng.generate(messages, **settings):
            if self._cancel.is_set():  # a Stop that came before generate() started its own cancel check
                eng.cancel()
            if isinstance(ev, TokenEvent):
                parts.append(ev.text)
                if ev.sentence_end or time.monotonic() - last >= TOKEN_BATCH_S:
                    flush(ev.sentence_end)
            elif isinstance(ev, RoutingEvent):
                flush()
                self.routing.emit(asdict(ev))
            elif isinstance(ev, DoneEvent):
                flush()
                stats = dict(ev.stats)
        return stats


def _message(command: str, e: Exception) -> str:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(e, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        first = str(e).splitlines()[0] if str(e) else ""
        return (f"GPU out of memory during {command} ({first}). Lower 'max new tokens', pick a smaller "
                f"dtype or device 'cpu' in Settings, then try again.")
    from engine.errors import SwitchboardError
    if isinstance(e, SwitchboardError):
        return str(e)
    traceback.print_exception(e)  # a bug, not a user error: keep the traceback for the log
    return f"{command} failed: {type(e).__name__}: {e}"
