"""WorkerSignals: the engine worker (app/worker.py) seen from Qt. Each event the worker reports on its thread
becomes a signal queued to the windows' thread, carrying the event's dataclass; `watch` calls back there when a
command's Future ends."""
from PySide6.QtCore import QObject, Qt, Signal, Slot

from engine.events import RoutingEvent, TokenEvent

from .worker import JobFailed, ModelChanged, Progress


class WorkerSignals(QObject):
    progress = Signal(object)   # worker.Progress
    model = Signal(object)      # worker.ModelChanged
    routing = Signal(object)    # engine.events.RoutingEvent
    tokens = Signal(object)     # engine.events.TokenEvent, batched
    step = Signal(object)       # a library job's step: library_service.ImportStep or Epoch
    _ended = Signal(object, object, object)  # (future, on_done, on_failed) of a watched command

    def __init__(self, parent=None):
        super().__init__(parent)
        self._by_type = {Progress: self.progress, ModelChanged: self.model, RoutingEvent: self.routing,
                         TokenEvent: self.tokens}
        self._ended.connect(self._call, Qt.QueuedConnection)  # also when the Future had already ended

    def deliver(self, event):
        """EngineWorker's on_event (its thread): the signal is queued to the receivers' thread."""
        self._by_type.get(type(event), self.step).emit(event)

    def watch(self, future, on_done, on_failed=None):
        """Call on_done(result) or on_failed(message) in this object's thread when `future` ends (a Future
        cancelled by EngineWorker.stop calls neither)."""
        future.add_done_callback(lambda f: self._ended.emit(f, on_done, on_failed))

    @Slot(object, object, object)
    def _call(self, future, on_done, on_failed):
        if future.cancelled():
            return
        try:
            result = future.result()
        except JobFailed as e:
            if on_failed is not None:
                on_failed(str(e))
            return
        on_done(result)
