"""EngineThread: the one thread that owns the engine under `switchboard serve` (in the app, the engine worker's
thread plays this part). Jobs run one at a time, in the order they were submitted."""
import queue
import threading
import traceback
from concurrent.futures import Future


class EngineThread:
    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._thread.start()

    def submit(self, job):
        """Run `job()` on the engine thread, after the jobs submitted before it."""
        self._jobs.put(job)

    def call(self, fn) -> Future:
        """Run `fn()` on the engine thread -> a Future of its result (or of its exception)."""
        future = Future()

        def job():
            try:
                future.set_result(fn())
            except BaseException as e:  # noqa: BLE001 -- the caller's to handle, through the future
                future.set_exception(e)
        self.submit(job)
        return future

    def stop(self):
        """End the thread after the jobs already submitted."""
        self._jobs.put(None)
        self._thread.join()

    def _loop(self):
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as e:  # noqa: BLE001 -- a bug in one job must not take the engine thread with it
                traceback.print_exception(e)
