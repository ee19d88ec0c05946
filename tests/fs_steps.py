"""Crash points for the kill tests (tests/library_worker.py, tests/conversation_worker.py): count a process's
file-system steps and SIGKILL it just before a chosen one. Not a test module."""
import contextlib
import os
import signal

OPS = ("mkdir", "fsync", "rename", "replace", "unlink", "rmdir")


@contextlib.contextmanager
def counted_ops(kill_at):
    """Count this process's file-system steps (OPS); SIGKILL it just before step `kill_at` (None: never)."""
    count, saved = [0], {name: getattr(os, name) for name in OPS}

    def wrap(f):
        def step(*args, **kwargs):
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return f(*args, **kwargs)
        return step

    for name, f in saved.items():
        setattr(os, name, wrap(f))
    try:
        yield count
    finally:
        for name, f in saved.items():
            setattr(os, name, f)
