"""LibraryJobs: the library manager's work on the engine thread, with callbacks in the UI thread.

Imports, retrains, probe sampling, and the edits that change the bank (rename, enable, remove) run as the
worker's "library" command. The worker runs commands one at a time in the order they were submitted, so its
done/failed signals for "library" arrive in submission order too: a FIFO of callbacks pairs each with its job.

A job gets the engine only when the loaded bank mirrors the library (its enabled adapters, in order); otherwise
(no model, the bundled demo's own adapters, an adapter refused at load) it works on the disk alone and the
model picks the changes up when it is reopened."""
from collections import deque

from PySide6.QtCore import QObject, Signal, Slot


class LibraryJobs(QObject):
    bankChanged = Signal()          # `bank` / `model_name` changed (a model loaded, an adapter hot-added, ...)
    _deliver = Signal(object, object)  # (callback, payload) from the engine thread, called in the UI thread

    def __init__(self, worker, library, submit=None, info=None, parent=None):
        """submit: how commands reach the worker (the main window's own submit keeps its busy count right).
        info: the worker's last model info ({"adapters", "model_name", ...}) when a model is already loaded."""
        super().__init__(parent)
        self.library = library
        self.worker = worker
        self.bank: list[str] | None = list(info["adapters"]) if info else None  # loaded adapters; None: no model
        self.model_name: str | None = info["model_name"] if info else None
        self._submit = submit or worker.submit
        self._pending: deque = deque()       # (on_done, on_failed) of submitted jobs, oldest first
        worker.done.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        self._deliver.connect(self._call)

    def run(self, job, on_done, on_failed):
        """Run `job(engine or None, progress)` on the engine thread; progress(message, fraction) feeds the
        status bar. Then on_done(result, with_engine) or on_failed(message) in the UI thread."""
        def wrapped(engine, progress):
            mirrors = engine is not None and engine.adapters == [a.name for a in self.library.list() if a.enabled]
            return job(engine if mirrors else None, progress), mirrors

        self._pending.append((on_done, on_failed))
        self._submit("library", job=wrapped)

    def report(self, callback, payload):
        """From a job (engine thread): call `callback(payload)` in the UI thread, queued."""
        self._deliver.emit(callback, payload)

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    @Slot(object, object)
    def _call(self, callback, payload):
        callback(payload)

    def _on_done(self, name: str, result):
        if "adapters" in result:
            self.bank, self.model_name = list(result["adapters"]), result["model_name"]
            self.bankChanged.emit()
        if name == "library":
            on_done, _ = self._pending.popleft()
            on_done(*result["library"])

    def _on_failed(self, name: str, message: str):
        if name == "load_model":  # the worker dropped the old engine before trying the new model
            self.bank = self.model_name = None
            self.bankChanged.emit()
        if name == "library":
            _, on_failed = self._pending.popleft()
            on_failed(message)
