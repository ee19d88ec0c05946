"""EngineWorker: the one long-lived thread that owns the Engine (and so the GPU), and the jobs it runs. No Qt.

Queue policy: one FIFO queue, one job at a time, in the order they were submitted. A chat reply, a library job
and work another part of the app submits (e.g. a server's batch) never run at the same time: each waits for the
ones before it. `cancel()` stops the window's own reply, running or queued (never a server's batch, nor other
jobs); `stop()` drops what is queued.

Commands are typed methods (the library's take the LibraryService that does the work); each returns a
concurrent.futures.Future of its result. A failed job's Future raises JobFailed, whose message is for the user
and whose __cause__ is the original exception. While jobs run, `on_event(event)` is
called on this thread with plain dataclasses: Progress, ModelChanged, the engine's RoutingEvent and TokenEvent
(tokens batched: at most one event per ~30 ms, plus one at each sentence end), and a library job's own steps
(app/library_service.py). The engine is imported on this thread: torch takes seconds to import, and the window
must show at once.
"""
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ModelError, SwitchboardError
from engine.events import DoneEvent, RoutingEvent, TokenEvent
from engine.generation import GenerationSettings

TOKEN_BATCH_S = 0.03
log = logging.getLogger(__name__)
NO_MODEL = "no model is loaded: choose a model folder in Settings > Model and library"


@dataclass(frozen=True)
class Progress:
    message: str
    fraction: float = -1.0  # in [0, 1], or -1 when unknown (busy)


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model and its bank, as the windows show them."""
    model_name: str
    device: str
    adapters: tuple[str, ...]  # in bank order
    router: bool               # a router is loaded
    demo: bool                 # the bundled demo model (with its own adapters and router)
    context_len: int = 0       # tokens the model's context holds
    quantize: str | None = None  # "int8" | "int4": the base weights' quantization; None: the float weights


@dataclass(frozen=True)
class ModelChanged:
    """Reported after a job that loaded, dropped or changed the model or its bank (info None: no model)."""
    info: ModelInfo | None


@dataclass(frozen=True)
class Loaded:
    """The result of load_model besides the model itself (which ModelChanged reports)."""
    refused: list[tuple[str, str]]  # (path, reason) of each adapter or router that could not be loaded
    colors: dict[str, str]          # {adapter: "#rrggbb"} the user chose in the library
    notes: list[str] = field(default_factory=list)  # what the library repaired or skipped, a missing router


class JobFailed(Exception):
    """A job's failure, worded for the user; __cause__ holds the original exception."""


@dataclass
class _Job:
    command: str  # names the job in messages ("GPU out of memory during generate")
    work: Callable[[], object]  # called on the worker thread
    future: Future


class EngineWorker:
    def __init__(self, on_event: Callable[[object], None]):
        """on_event(event): called on the worker thread with every event the jobs report."""
        self.on_event = on_event
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="engine")
        self._cancel = threading.Event()    # Stop pressed for the window's reply (running, or queued)
        self._replying = False              # the window's reply runs now (not a server batch): under _lock
        self._lock = threading.Lock()
        self._engine = None   # written only by the worker thread
        self._demo = False
        self._info: ModelInfo | None = None  # last reported

    def start(self):
        self._thread.start()

    def stop(self):
        """Drop the queued jobs (their Futures are cancelled), stop the reply and wait for the thread to end."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.cancel()
        self.cancel()
        self._queue.put(None)
        self._thread.join()

    def cancel(self):
        """Stop the window's reply, running or the next queued one; safe from any thread. The engine is told only
        while that reply runs: between replies it may be running a server's batch, which this must not stop."""
        with self._lock:
            self._cancel.set()
            if self._replying:
                self._engine.cancel()

    def exclude(self, name: str):
        """Safe from any thread: a reply in progress stops using adapter `name` from its next sentence (a
        removal queued behind that reply then finds it out of every mix)."""
        engine = self._engine
        if engine is not None:
            engine.exclude(name)

    # ---- commands (any thread) ----
    def load_model(self, model_dir: str | None, device: str = "auto", dtype: str = "auto",
                   library_dir: str | None = None, quantize: str = "auto") -> Future:
        """model_dir None: the bundled demo with its adapters and router; else a model folder or .gguf file.
        library_dir: the adapters to load. quantize: "auto" | "none" | "int8" | "int4" (Engine.load's)."""
        return self._put("load_model", lambda: self._load_model(model_dir, device, dtype, library_dir, quantize))

    def warm_up(self) -> Future:
        """Short replies that capture the decode graphs, so the first message is answered at once; on a GPU the
        decode step then compiles in a background thread, reported as Progress("Compiling…", done / total) from
        that thread (replies run meanwhile on the uncompiled step). On the CPU nothing compiles.
        -> seconds spent before a reply can start."""
        def work():
            engine = self._require()
            self.report(Progress("Warming up…"))

            def compiled(done, total):  # the compile thread; a model loaded since has its own warm-up
                if self._engine is engine:
                    self.report(Progress(f"Compiling the decode step ({done}/{total}); replies run meanwhile"
                                         if done < total else "Decode step compiled: replies run at full speed",
                                         done / total))
            return engine.warmup(wait=False, progress=compiled)
        return self._put("warm_up", work)

    def generate(self, messages: list[dict], settings: GenerationSettings, continue_reply: bool = False) -> Future:
        """Stream one reply (RoutingEvent and TokenEvent events). continue_reply: the last message is a reply cut
        off, which this one goes on with. -> the engine's DoneEvent."""
        self._cancel.clear()  # a Stop pressed before this reply must not cancel it
        return self._put("generate", lambda: self._generate(messages, settings, continue_reply))

    def count_tokens(self, messages: list[dict]) -> Future:
        """-> the tokens `messages` take as a prompt (the chat template's included): what the context meter shows."""
        from engine.chat import render

        return self.submit("count tokens", lambda engine: len(render(engine.tokenizer, messages)))

    def submit(self, command: str, work) -> Future:
        """Queue `work(engine)` (the loaded Engine; ModelError when there is none) behind the jobs already
        queued: how other parts of the app put their own work on this thread."""
        return self._put(command, lambda: work(self._require()))

    # ---- library jobs (app/library_service.py): they change the bank, and the disk-heavy ones must not run in the
    # window's thread even when no model is loaded
    def import_adapters(self, library, paths: list[str], cancel) -> Future:
        return self._put("import", lambda: library.import_paths(self._engine, paths, self.report, cancel))

    def rename_adapter(self, library, old: str, new: str) -> Future:
        return self._put("rename", lambda: library.rename(self._engine, old, new))

    def enable_adapter(self, library, name: str, enabled: bool) -> Future:
        return self._put("enable", lambda: library.set_enabled(self._engine, name, enabled))

    def remove_adapter(self, library, name: str) -> Future:
        return self._put("remove", lambda: library.remove(self._engine, name))

    def retrain_router(self, library, full: bool, cancel) -> Future:
        return self._put("retrain", lambda: library.retrain(self._engine, full, self.report, cancel))

    def sample_probes(self, library, name: str) -> Future:
        return self._put("probe examples", lambda: library.sample_probes(self._engine, name, self.report))

    def report(self, event):
        """Deliver an event from the running job (called on this thread)."""
        self.on_event(event)

    # ---- worker thread ----
    def _put(self, command: str, work) -> Future:
        job = _Job(command, work, Future())
        self._queue.put(job)
        return job.future

    def _run(self):
        while (job := self._queue.get()) is not None:
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                result = job.work()
            except Exception as e:  # noqa: BLE001 -- every failure must reach the user and leave the thread alive
                failure = JobFailed(_message(job.command, e))
                failure.__cause__ = e
                self._report_model()
                job.future.set_exception(failure)
            else:
                self._report_model()
                job.future.set_result(result)
        self._engine = None

    def _report_model(self):
        engine = self._engine
        info = None if engine is None else ModelInfo(engine.model_name, str(engine.device), tuple(engine.adapters),
                                                     engine.router is not None, self._demo, engine.context_len,
                                                     engine.quantize)
        if info != self._info:
            self._info = info
            self.report(ModelChanged(info))

    def _require(self):
        if self._engine is None:
            raise ModelError(NO_MODEL)
        return self._engine

    def _load_model(self, model_dir, device, dtype, library_dir, quantize) -> Loaded:
        self.report(Progress(f"Loading {Path(model_dir).name if model_dir else 'the demo model'}…"))
        self._engine = None  # free the old model's memory before the new one loads
        from app.loading import open_engine  # imports torch: on this thread, not at start-up

        def adapters(done, total, name):
            self.report(Progress(f"Loading adapter {name} ({done}/{total})…", done / total))

        opened = open_engine(model_dir, library_dir=library_dir, device=device, dtype=dtype, quantize=quantize,
                             progress=adapters, notify=lambda message: self.report(Progress(message)))
        self._engine, self._demo = opened.engine, opened.demo
        return Loaded([(str(path), reason) for path, reason in opened.refused], opened.colors, opened.notes)

    def _generate(self, messages, settings, continue_reply):
        engine = self._require()
        parts: list[str] = []
        last = time.monotonic()
        done = None

        def flush(sentence_end=False):
            nonlocal last
            if parts:
                self.report(TokenEvent("".join(parts), sentence_end))
                parts.clear()
            last = time.monotonic()

        with self._lock:
            self._replying = True
        try:
            for ev in engine.generate(messages, settings, continue_reply=continue_reply):
                if self._cancel.is_set():  # a Stop that came before generate() started its own cancel check
                    engine.cancel()
                if isinstance(ev, TokenEvent):
                    parts.append(ev.text)
                    if ev.sentence_end or time.monotonic() - last >= TOKEN_BATCH_S:
                        flush(ev.sentence_end)
                elif isinstance(ev, RoutingEvent):
                    flush()
                    self.report(ev)
                elif isinstance(ev, DoneEvent):
                    flush()
                    done = ev
        finally:
            with self._lock:
                self._replying = False
        return done


def _message(command: str, e: Exception) -> str:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(e, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        first = str(e).splitlines()[0] if str(e) else ""
        return (f"GPU out of memory during {command} ({first}). Lower 'max new tokens', pick a smaller "
                f"dtype or device 'cpu' in Settings, then try again.")
    if isinstance(e, SwitchboardError):
        return str(e)
    log.error("%s failed", command, exc_info=e)  # a bug, not a user error: keep the traceback for the log
    return f"{command} failed: {type(e).__name__}: {e}"
