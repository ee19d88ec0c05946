"""The process that tests/test_library_kill.py SIGKILLs in the middle of library writes. Not a test module.

    python tests/library_worker.py

Reads one JSON job per line on stdin:
    {"job": "import", "root": DIR, "paths": [PATH, ...]}     Library(root).import_paths(paths)
    {"job": "retrain", "root": DIR, "epochs": N}              Library(root).retrain(epochs=N)
with "kill_at_op": k (the child SIGKILLs itself just before its k-th file-system step: mkdir, fsync, rename,
replace, unlink, rmdir), or "kill_after_s": t (this process SIGKILLs the child t seconds after the fork), or
"here": true (run it in this process, to the end). For each job it answers one JSON line:
    {"killed": bool, "exit": exit code, "ops": file-system steps made (null unless it finished),
     "seconds": how long it ran}
A job runs in a forked child, so a run costs a fork and not an interpreter start. Router training and loading
are memoised in this process: a retrain run "here" fills the memo, and the children then spend their time in
the commit, where every file-system step of a retrain is. Training and loading write no file, so the crash
points are the same with or without the memo.
"""
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import torch
import torch._dynamo  # noqa: F401 - torch.optim imports it lazily, making a cache folder: not a library step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.library import Library  # noqa: E402
from fs_steps import counted_ops  # noqa: E402
from engine.router import Router  # noqa: E402


def memoise_training():
    """Same examples, old router, epochs and seed -> the same router, trained once; the same sidecar (which
    holds the weights' sha256) -> the same loaded router."""
    fit, load, fits, loads = Router._fit, Router.load.__func__, {}, {}

    def memo_fit(examples, base, featurizer, old, epochs, seed, holdout, progress, cancel):
        key = json.dumps([examples, base, old.adapters if old else None, epochs, seed, holdout])
        if key not in fits:
            fits[key] = fit(examples, base, featurizer, old, epochs, seed, holdout, progress, cancel)
        return fits[key]

    def memo_load(cls, path, adapters=None):
        key = (Path(path).with_suffix(".json").read_bytes(), None if adapters is None else tuple(adapters))
        if key not in loads:
            loads[key] = load(cls, path, adapters)
        return loads[key]

    Router._fit = staticmethod(memo_fit)
    Router.load = classmethod(memo_load)


def run(job) -> int:
    """Do the job; -> the number of file-system steps it made."""
    with counted_ops(job.get("kill_at_op")) as count:
        library = Library(job["root"])
        if job["job"] == "import":
            library.import_paths(job["paths"])
        else:
            library.retrain(epochs=job["epochs"])
    return count[0]


def in_child(job) -> dict:
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 1
        try:
            os.write(w, str(run(job)).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(w)
    code = os.waitstatus_to_exitcode(wait(pid, job.get("kill_after_s")))
    ops = os.read(r, 64).decode()
    os.close(r)
    return {"killed": code == -signal.SIGKILL, "exit": code, "ops": int(ops) if ops else None,
            "seconds": time.monotonic() - t0}


def wait(pid, kill_after):
    """-> wait status. Kills only a child not reaped yet, so the pid is still ours."""
    deadline = None if kill_after is None else time.monotonic() + kill_after
    while deadline is not None:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.001)
    return os.waitpid(pid, 0)[1]


def main():
    torch.set_num_threads(1)  # before any torch op: no thread pool exists for the children to inherit
    memoise_training()
    for line in sys.stdin:
        job = json.loads(line)
        if job.get("here"):
            t0 = time.monotonic()
            result = {"killed": False, "exit": 1, "ops": None}
            try:
                result.update(exit=0, ops=run(job))
            except Exception:
                traceback.print_exc()
            result["seconds"] = time.monotonic() - t0
        else:
            result = in_child(job)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
