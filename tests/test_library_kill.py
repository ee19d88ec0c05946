"""Kill test: a process importing adapters or retraining the router is SIGKILLed at random points (before a random
file-system step, or after a random delay). Afterwards the library loads, every listed adapter is complete, nothing
half-copied is listed, nothing of the previous library is lost, and the router is the old one or the new one."""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from router_tasks import make_tasks

from app.library import Library
from engine.adapter_io import read_adapter

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker forks its children")
WORKER = Path(__file__).with_name("library_worker.py")
TASKS = ["gsm8k", "translate_de", "code_questions", "cnn_dailymail"]


@pytest.fixture(scope="module")
def worker():
    proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=60)


def ask(worker, **job):
    worker.stdin.write(json.dumps(job) + "\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    assert line, "the worker process died"
    return json.loads(line)


@pytest.fixture(scope="module")
def template(tmp_path_factory, llama_adapters):
    """A library of three adapters with examples and a router, plus a fourth added after it (so a retrain is
    head-only); to import: a batch (a folder of six adapters and a zip of two) and a zip of one."""
    tmp = tmp_path_factory.mktemp("kill")
    lib = Library(tmp / "template")
    names = ["alpha", "beta", "gamma", "delta"]
    train, _ = make_tasks(20, seed=4, tasks=TASKS)
    lib.import_paths([llama_adapters[n] for n in names[:3]])
    for n, task in zip(names, TASKS[:3]):
        lib.set_examples(n, train[task])
    lib.retrain(epochs=2)
    lib.import_paths([llama_adapters["delta"]])
    lib.set_examples("delta", train[TASKS[3]])

    batch = tmp / "batch"
    for i in range(6):
        shutil.copytree(llama_adapters[names[i % 4]], batch / f"b{i}")
    pack = tmp / "pack.zip"
    with zipfile.ZipFile(pack, "w") as zf:
        for i in range(2):
            for f in Path(llama_adapters[names[i]]).iterdir():
                zf.write(f, f"z{i}/{f.name}")
    one = tmp / "one.zip"
    with zipfile.ZipFile(one, "w") as zf:
        for f in Path(llama_adapters["gamma"]).iterdir():
            zf.write(f, f"gamma/{f.name}")
        zf.writestr("gamma/examples.txt", "an example\nanother\n")
    return {"root": lib.root, "names": names, "paths": [str(batch), str(pack)], "one": str(one),
            "batch": [f"b{i}" for i in range(6)] + ["z0", "z1"]}


def router_hash(root):
    """sha256 of the router weights the index names, after checking that its sidecar describes them (as
    Router.load does): the pair is complete."""
    path = Library(root).router_info()["path"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert json.loads(path.with_suffix(".json").read_text())["weights_sha256"] == digest
    return digest


def check(root, template, module_shapes) -> tuple[list[str], str]:
    """The library loads, every listed adapter is complete, none of the template's is lost. -> (names, router)."""
    lib = Library(root)
    listed = lib.list()
    names = [a.name for a in listed]
    assert set(template["names"]) <= set(names) <= {*template["names"], *template["batch"], "one"}
    for a in listed:  # complete: every file reads and validates
        assert a.problem is None
        read_adapter(a.path, module_shapes)
        assert len(lib.examples(a.name)) == a.n_examples
    router = router_hash(root)
    lib.set_color(names[0], None)  # the next writer clears what the killed one left
    assert not list((root / ".tmp").iterdir()) and not list((root / ".trash").iterdir())
    assert len(list(root.glob("router-*"))) == 2 and not list(root.glob(".*.tmp"))
    return names, router


def killed_runs(worker, template, tmp_path, job, kills, module_shapes):
    """Run `job` on a fresh copy of the template once per kill in `kills`. -> [(killed, names, router hash)]"""
    out = []
    for i, kill in enumerate(kills):
        root = shutil.copytree(template["root"], tmp_path / f"run{i}")
        result = ask(worker, root=str(root), **job, **kill)
        assert result["killed"] or result["exit"] == 0, result
        out.append((result["killed"], *check(root, template, module_shapes)))
        shutil.rmtree(root)
    return out


def test_import_killed_at_every_step_and_at_random_times(template, worker, module_shapes, tmp_path):
    old = router_hash(template["root"])
    # one adapter from a zip, killed before each of its file-system steps in turn: every crash point of an import
    one = {"job": "import", "paths": [template["one"]]}
    done = ask(worker, root=str(shutil.copytree(template["root"], tmp_path / "one")), **one)
    assert done["exit"] == 0 and done["ops"] > 5
    runs = killed_runs(worker, template, tmp_path, one, [{"kill_at_op": k} for k in range(1, done["ops"] + 1)],
                       module_shapes)
    assert all(killed for killed, _, _ in runs)
    assert {tuple(names[4:]) for _, names, _ in runs} == {(), ("one",)}  # absent, or there and complete
    assert {router for _, _, router in runs} == {old}

    # the whole batch (a folder of six adapters and a zip of two), at random steps and after random delays
    batch = {"job": "import", "paths": template["paths"]}
    done = ask(worker, root=str(shutil.copytree(template["root"], tmp_path / "clean")), **batch)
    assert done["exit"] == 0 and check(tmp_path / "clean", template, module_shapes)[0][4:] == template["batch"]
    rng = random.Random(0)
    kills = [{"kill_at_op": rng.randint(1, done["ops"])} for _ in range(2)]
    kills += [{"kill_after_s": rng.uniform(0, done["seconds"])} for _ in range(2)]
    runs = killed_runs(worker, template, tmp_path, batch, kills, module_shapes)
    assert sum(killed for killed, _, _ in runs) >= 2 and {router for _, _, router in runs} == {old}


def test_retrain_killed_at_every_step_and_at_random_times(template, worker, module_shapes, tmp_path):
    old = router_hash(template["root"])
    job = {"job": "retrain", "epochs": 2}
    trained = ask(worker, root=str(shutil.copytree(template["root"], tmp_path / "trained")), here=True, **job)
    assert trained["exit"] == 0 and trained["ops"] > 5  # the worker trains once; its children reuse the router
    new = router_hash(tmp_path / "trained")
    done = ask(worker, root=str(shutil.copytree(template["root"], tmp_path / "clean")), **job)
    assert done["exit"] == 0 and done["ops"] == trained["ops"] and router_hash(tmp_path / "clean") == new != old

    rng = random.Random(1)
    kills = [{"kill_at_op": k} for k in range(1, done["ops"] + 1)]
    kills += [{"kill_after_s": rng.uniform(0, done["seconds"])} for _ in range(2)]
    runs = killed_runs(worker, template, tmp_path, job, kills, module_shapes)
    assert all(killed for killed, _, _ in runs[:done["ops"]])
    assert {router for _, _, router in runs[:done["ops"]]} == {old, new}  # the old one up to the commit, then new
    assert all(names == template["names"] for _, names, _ in runs)
