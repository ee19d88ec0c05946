"""LocalServer: the OpenAI-compatible HTTP server that `switchboard serve` and the app start and stop.

What a host does with it:
- `LocalServer(host=, port=, api_key=, run_on_engine=, listener=)`: `run_on_engine(job)` must run `job()` on
  the thread that owns the engine, in order with the host's own work there; it may return a Future that fails
  when the host refuses the job (the app: `lambda job: worker.submit("serve", lambda engine: job())`, which
  refuses while no model is loaded; the waiting requests then get 503). Without it the server runs its own
  EngineThread, as `switchboard serve` does.
- `start()` binds and serves in a thread of its own -> the address; `stop()` ends the requests in flight and
  the server (a LocalServer is started once).
- `set_engine(engine)` when a model is ready (the app: from a job on its worker, which hands jobs the engine),
  `set_engine(None)` before another one loads (requests then get 503, and the old model's memory can be freed).
- `listener(state, request)` hears every served request (see Scheduler; from the engine thread or the
  server's, so a Qt host emits a signal from it): `request.info` (endpoint, model, client, stream, prompt_tokens,
  batch_rows), then `request.text` (list of str), `request.routing` (RoutingEvents) and `request.stats`.
"""
import ipaddress
import socket
import threading
import time

from engine.errors import SwitchboardError

from .api import build_app
from .engine_thread import EngineThread
from .scheduler import Scheduler

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
MAX_BODY_BYTES = 8 * 2**20   # a full 128k-token context is ~0.5 MB of text; this leaves room for JSON escapes


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


class LocalServer:
    def __init__(self, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, api_key: str | None = None,
                 run_on_engine=None, listener=None, max_rows: int = 8, batch_window_ms: float = 2.0,
                 max_body_bytes: int = MAX_BODY_BYTES):
        if not is_loopback(host) and not api_key:
            raise SwitchboardError(f"serving on {host} lets other machines in: set an API key (--api-key KEY) "
                                   f"or serve on {DEFAULT_HOST}")
        if max_rows < 1:
            raise SwitchboardError(f"the largest batch must hold at least 1 request, got {max_rows} (--max-batch)")
        self.host, self.port, self.api_key, self.max_body_bytes = host, port, api_key or None, max_body_bytes
        self.engine_thread = None if run_on_engine else EngineThread()
        self.scheduler = Scheduler(run_on_engine or self.engine_thread.submit, max_rows=max_rows,
                                   window_s=batch_window_ms / 1000, listener=listener,
                                   connections=self._open_connections)
        self._socket = self._server = self._thread = None

    @property
    def address(self) -> str | None:
        """"http://127.0.0.1:8000" once started (the port the system gave when port 0 was asked for)."""
        if self._socket is None:
            return None
        host, port = self._socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def set_engine(self, engine):
        self.scheduler.set_engine(engine)

    def _open_connections(self) -> int:
        return len(self._server.server_state.connections) if self._server is not None else 0

    def start(self) -> str:
        import uvicorn

        self._socket = _bind(self.host, self.port)
        app = build_app(self.scheduler, api_key=self.api_key, max_body_bytes=self.max_body_bytes)
        self._server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                                                     lifespan="off", timeout_graceful_shutdown=3))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, name="http",
                                        daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise SwitchboardError(f"the server on {self.address} could not start (see the log above)")
            time.sleep(0.01)
        return self.address

    def wait(self):
        """Block until the server ends (Ctrl-C interrupts the wait)."""
        self._thread.join()

    def stop(self):
        self.scheduler.cancel_all()
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join()
            self._socket.close()
        if self.engine_thread is not None:
            self.engine_thread.stop()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as e:
        raise SwitchboardError(f"cannot serve on {host} port {port}: {e.strerror or e} (another program may "
                               "use that port: choose another with --port)") from None
    return sock
