"""ServerController: the local OpenAI-compatible server (app/server) run by the app while it is open, as set in
Settings > Local server; its address in the status bar and its requests in a log window (ui/server_log.py).

The server is hosted on the app's engine worker: each batch of requests is one job on the worker's queue, so the
window's own replies and the server's batches take turns, first come first served, and neither stops the other
(the window's Stop cancels only its own reply). The engine is handed to the server by a worker job once a model
is ready, and taken back before another one loads (requests then get 503 until it is ready)."""
import time
from collections import OrderedDict

from PySide6.QtCore import QObject, Signal

from engine.errors import SwitchboardError

from .plural import plural
from ui.server_log import MAX_ROWS, ServerLog

FINISHED = ("done", "cancelled", "failed")


class ServerController(QObject):
    _heard = Signal(str, object)  # (state, ServedRequest), emitted on the engine or server thread

    def __init__(self, settings, worker, signals, window):
        super().__init__(window)
        self.settings, self.worker, self.signals, self.window = settings, worker, signals, window
        self.server = None
        self.address: str | None = None
        self.requests: OrderedDict[int, tuple[str, float, object]] = OrderedDict()  # id -> (state, time, request)
        self.log: ServerLog | None = None  # made on first use
        self._heard.connect(self._on_request)  # queued to this thread
        window.serverLogRequested.connect(self.show_log)

    # ---- running ----
    def apply(self):
        """(Re)start the server as the settings say, or stop it."""
        self.stop()
        if not self.settings.server_enabled:
            self._show()
            return
        from .server import LocalServer  # the HTTP stack: only when the server is on

        try:
            server = LocalServer(host=self.settings.server_host, port=self.settings.server_port,
                                 api_key=self.settings.server_api_key or None,
                                 run_on_engine=lambda job: self.worker.submit("serve", lambda _engine: job()),
                                 listener=lambda state, request: self._heard.emit(state, request))
            self.address = server.start()
        except SwitchboardError as e:  # an open address without a key, a port in use
            self._show(f"Local server not running: {e}")
            return
        self.server = server
        self._show()
        self.hand_engine()

    def hand_engine(self):
        """Give the server the loaded engine (a job on the worker, which passes it; no model: nothing to give)."""
        if self.server is not None:
            self.signals.watch(self.worker.submit("serve", self.server.set_engine), lambda _: None, lambda _: None)

    def take_engine(self):
        """Another model is about to load: requests get 503 until it is ready, and the old one can be freed."""
        if self.server is not None:
            self.server.set_engine(None)

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = self.address = None

    # ---- what it serves ----
    def _on_request(self, state: str, request):
        started = self.requests.pop(request.id, (None, time.time(), None))[1]
        self.requests[request.id] = (state, started, request)
        while len(self.requests) > MAX_ROWS:
            self.requests.popitem(last=False)
        self._show()
        if self.log is not None:
            self.log.show_request(request.id, _cells(state, started, request))

    def show_log(self):
        if self.log is None:
            self.log = ServerLog(self.window)
            self.log.requestSelected.connect(self._detail)
            for request_id, (state, started, request) in self.requests.items():
                self.log.show_request(request_id, _cells(state, started, request))
            self._show()
        self.log.show()
        self.log.raise_()
        self.log.activateWindow()

    def _detail(self, request_id: int):
        if request_id in self.requests:
            request = self.requests[request_id][2]
            self.log.show_detail("".join(request.text), [ev.selected for ev in request.routing])

    def _show(self, failure: str = ""):
        running = sum(1 for state, _, _ in self.requests.values() if state not in FINISHED)
        if failure:
            text = failure
        elif self.address:
            text = f"Serving {self.address}/v1" + (f" · {running} running" if running else "")
        else:
            text = ""
        self.window.show_server(text, failed=bool(failure))
        if self.log is not None:
            self.log.set_address(text or "The local server is off: turn it on in Settings > Local server.")


def _cells(state: str, started: float, request) -> tuple[str, ...]:
    info, stats = request.info, request.stats
    tokens = plural(stats["tokens"], "token") if "tokens" in stats else ""
    if stats.get("tokens_per_s"):
        tokens += f" · {stats['tokens_per_s']:.1f} tok/s"
    routing = " | ".join(" + ".join(f"{name} {w:.2f}" for name, w in ev.selected.items()) or "base"
                         for ev in request.routing)
    return (time.strftime("%H:%M:%S", time.localtime(started)), info.get("client") or "", info.get("endpoint", ""),
            info.get("model", ""), state, tokens, routing)
