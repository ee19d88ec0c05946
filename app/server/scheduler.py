"""Scheduler: served requests run on the engine thread, concurrent ones batched into Engine.generate_rows.

Policy:
- A batch is one `Engine.generate_rows` call, run as one job through the host's `run_on_engine(job)`. A request
  that arrives while a batch runs waits for the next batch (rows never join a running batch). A request that
  finds the engine idle waits `window_s` (2 ms) for others to join it, and longer (up to `ARRIVAL_WAIT_S`)
  while requests are still being read and checked (arrive() .. submit()): clients that ask at the same moment
  are checked one after another on the server's event loop, and one left out would wait for a whole batch.
  A full batch starts at once, and so does a batch when every open client connection has already asked
  (`connections()`): a lone client never waits for the window.
- A batch takes the oldest waiting request and every later one that can share its rows (at most `max_rows`):
  the same GenerationSettings, and all routed by the router or all with fixed mixes (each row its own mix).
  Seeded sampling runs alone, so the seed alone decides its tokens.
- Each batch is its own job, so whatever else the host queues on the engine thread (the app's own chat) runs
  between two batches, first come first served: nothing waits longer than the batch in progress.
- A client that leaves cancels its request: dropped if waiting, else its row stops after its current token
  (`Engine.cancel(row)`) while the batch's other rows go on.
"""
import itertools
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from engine.errors import SwitchboardError
from engine.events import RoutingEvent, TokenEvent
from engine.generation import GenerationSettings


class Loading(Exception):
    """No model is ready (none loaded yet, or another one is loading)."""


class ReplyFailed(Exception):
    """The engine ended a reply with an error it survived (the GPU ran out of memory)."""


_ids = itertools.count(1)
ARRIVAL_WAIT_S = 0.05  # the longest a batch waits for requests still being read and checked


@dataclass(eq=False)
class ServedRequest:
    """One request as the engine runs it. The engine thread fills text, routing and stats and tells the
    client through `deliver(kind, payload)` (thread-safe): ("routing", RoutingEvent), ("text", str),
    ("done", stats) or ("error", exception); text, routing and stats are complete once "done" is delivered."""
    conversation: list[dict] | str   # messages, or a raw completion prompt
    settings: GenerationSettings
    mix: dict | None                 # fixed {adapter: weight} ({} = the base model); None: the router picks
    deliver: Callable[[str, object], None]
    info: dict = field(default_factory=dict)  # what the host's listener shows: endpoint, model, client
    id: int = field(default_factory=lambda: next(_ids))
    text: list[str] = field(default_factory=list)
    routing: list[RoutingEvent] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    cancelled: bool = False
    submitted: float = 0.0           # time.monotonic() when it joined the queue

    def batch_key(self):
        if self.settings.seed is not None and self.settings.temperature > 0:
            return self.id
        return self.settings, self.mix is None


class Scheduler:
    def __init__(self, run_on_engine: Callable[[Callable[[], None]], None], *, max_rows: int = 8,
                 window_s: float = 0.002, listener: Callable[[str, ServedRequest], None] | None = None,
                 connections: Callable[[], int] | None = None):
        """listener(state, request): "running" when the request's batch starts, then "done", "cancelled" or
        "failed". Called on the engine thread (a request cancelled while it waits: on the server's thread).
        connections(): how many client connections the server holds open (None: unknown, always wait)."""
        self._run_on_engine, self._connections = run_on_engine, connections
        self.max_rows, self.window_s, self._listener = max_rows, window_s, listener
        self._cond = threading.Condition()
        self._pending: list[ServedRequest] = []
        self._arriving = 0           # requests being read and checked (see arrival)
        self._scheduled = False      # a batch job is queued or running
        self._cancels = 0            # bumped by cancel(): the running batch looks for rows to stop
        self._running: list[ServedRequest] = []
        self.engine = None

    def set_engine(self, engine):
        """The engine batches run on; None while a model loads (requests then fail with Loading)."""
        self.engine = engine

    def arrive(self):
        """A request is being read and checked: a batch about to start waits (ARRIVAL_WAIT_S at most) for its
        submit(), or its depart() if it is refused."""
        with self._cond:
            self._arriving += 1

    def depart(self):
        with self._cond:
            self._arriving -= 1
            self._cond.notify_all()

    def submit(self, request: ServedRequest):
        """Queue an arrived request for the next batch."""
        with self._cond:
            request.submitted = time.monotonic()
            self._pending.append(request)
            self._arriving -= 1
            if not self._scheduled:
                self._schedule()
            self._cond.notify_all()

    def cancel(self, request: ServedRequest):
        """Any thread: the client has gone (or the server stops)."""
        with self._cond:
            request.cancelled = True
            self._cancels += 1
            waiting = request in self._pending
            if waiting:
                self._pending.remove(request)
        if waiting:
            self._tell("cancelled", request)

    def cancel_all(self):
        """The server stops: waiting requests are answered 503, running rows stop after their current token."""
        with self._cond:
            waiting, self._pending = self._pending, []
            for request in waiting + self._running:
                request.cancelled = True
            self._cancels += 1
        for request in waiting:
            request.deliver("error", Loading("the server is stopping"))
            self._tell("cancelled", request)

    # ---- engine thread ----
    def _run_batch(self):
        try:
            batch = self._take()
            if batch:
                self._generate(batch)
        finally:
            with self._cond:
                self._scheduled = False
                if self._pending:
                    self._schedule()

    def _schedule(self):  # with self._cond held
        self._scheduled = True
        future = self._run_on_engine(self._run_batch)
        if future is not None:  # a host that may refuse the job: the app's worker while it holds no model
            future.add_done_callback(self._refused)

    def _refused(self, future):
        if not future.cancelled() and future.exception() is None:
            return  # the batch ran (it never raises)
        with self._cond:
            waiting, self._pending, self._scheduled = self._pending, [], False
        for request in waiting:
            request.deliver("error", Loading("no model is loaded: try again once one is"))
            self._tell("failed", request)

    def _take(self) -> list[ServedRequest]:
        with self._cond:
            while self._pending and not self._ready(time.monotonic()):
                self._cond.wait(timeout=max(self.window_s / 4, 0.0005))
            self._pending = [r for r in self._pending if not r.cancelled]  # left between arrival and submit
            batch = self._compatible()[: self.max_rows]
            self._pending = [r for r in self._pending if r not in batch]
            return batch

    def _ready(self, now: float) -> bool:
        waited = now - self._pending[0].submitted
        if len(self._compatible()) >= self.max_rows:
            return True
        if self._arriving:
            return waited >= ARRIVAL_WAIT_S
        everyone_asked = self._connections is not None and self._connections() <= len(self._pending)
        return everyone_asked or waited >= self.window_s

    def _compatible(self) -> list[ServedRequest]:
        if not self._pending:
            return []
        key = self._pending[0].batch_key()
        return [r for r in self._pending if r.batch_key() == key]

    def _generate(self, batch: list[ServedRequest]):
        engine = self.engine
        if engine is None:
            for r in batch:
                r.deliver("error", Loading("the model is loading: try again in a moment"))
                self._tell("failed", r)
            return
        for r in batch:
            r.info["batch_rows"] = len(batch)
            self._tell("running", r)
        mix = None if batch[0].mix is None else [r.mix or None for r in batch]
        seen = None
        self._running = batch
        try:
            for ev in engine.generate_rows([r.conversation for r in batch], batch[0].settings, mix=mix):
                if seen != self._cancels:  # a client left: stop its row (generate_rows has cleared old ones)
                    seen = self._cancels
                    for i, r in enumerate(batch):
                        if r.cancelled:
                            engine.cancel(row=i)
                r = batch[ev.row]
                if isinstance(ev, TokenEvent):
                    if ev.text:
                        r.text.append(ev.text)
                        r.deliver("text", ev.text)
                elif isinstance(ev, RoutingEvent):
                    r.routing.append(ev)
                    r.deliver("routing", ev)
                else:
                    r.stats = {**ev.stats, "batch_rows": len(batch)}
                    if "error" in r.stats:
                        r.deliver("error", ReplyFailed(r.stats["error"]))
                        self._tell("failed", r)
                    else:
                        r.deliver("done", r.stats)
                        self._tell("cancelled" if r.cancelled else "done", r)
        except Exception as e:  # noqa: BLE001 -- every client of the batch must hear of it; the thread lives on
            if not isinstance(e, SwitchboardError):
                traceback.print_exception(e)  # a bug or an exhausted device, not a client's mistake: keep it logged
            for r in batch:
                if not r.stats:
                    r.deliver("error", e)
                    self._tell("failed", r)
        finally:
            self._running = []

    def _tell(self, state: str, request: ServedRequest):
        if self._listener is not None:
            self._listener(state, request)
