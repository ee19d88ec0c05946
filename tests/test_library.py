"""Adapter library (app/library.py): import of folders, folders of adapters and multi-adapter zips, refusals per
item, hot-add, editing round trips, examples, retrain, load_into, crash leftovers, the CLI, and a hypothesis
fuzz of archive layouts. No widgets."""
import io
import json
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from router_tasks import make_tasks

from app import cli
from app.library import MIN_EXAMPLES, Library
from engine import BASE, Engine
from engine.adapter_io import read_adapter
from engine.errors import AdapterError, ExamplesError, RouterError

TASKS = ["gsm8k", "translate_de", "code_questions", "cnn_dailymail"]


@pytest.fixture
def engine(llama_dir):
    return Engine.load(llama_dir, device="cpu")


def tensors_equal(a, b):
    return a.modules.keys() == b.modules.keys() and all(
        torch.equal(x, y) for m in a.modules for x, y in zip(a.modules[m], b.modules[m]))


def files_outside(root: Path, library: Path):
    return sorted(p for p in root.rglob("*") if library not in p.parents and p != library)


# ---- import ---------------------------------------------------------------------------------------------
def test_import_folder_folder_of_adapters_and_multi_adapter_zip(tmp_path, llama_adapters, module_shapes):
    src = {n: Path(p) for n, p in llama_adapters.items()}
    many = tmp_path / "many"
    for n in ("beta", "gamma"):
        shutil.copytree(src[n], many / n)
    (many / "notes").mkdir()  # no adapter files: not an item
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, folder in (("delta", "set/delta/"), ("alpha", "set/deeper/epsilon/"), ("gamma", "")):
            for f in src[n].iterdir():
                zf.write(f, folder + f.name)
        zf.writestr("set/deeper/epsilon/examples.txt", "first prompt\n\nsecond prompt\n")
        zf.writestr("NOTES.txt", "three adapters")
    solo = tmp_path / "solo.zip"  # one adapter in a folder: named after the archive, as Engine.add_adapter does
    with zipfile.ZipFile(solo, "w") as zf:
        for f in src["alpha"].iterdir():
            zf.write(f, "whatever/" + f.name)

    lib = Library(tmp_path / "lib")
    seen = []
    results = lib.import_paths([src["alpha"], many, bundle, solo],
                               progress=lambda done, total, r: seen.append((done, total, r.name)))
    assert [(r.name, r.ok) for r in results] == [("alpha", True), ("beta", True), ("gamma", True), ("bundle", True),
                                                 ("epsilon", True), ("delta", True), ("solo", True)]
    assert seen == [(i, 7, r.name) for i, r in enumerate(results, 1)]
    assert [r.path for r in results[3:]] == [str(bundle), f"{bundle}/set/deeper/epsilon", f"{bundle}/set/delta",
                                             str(solo)]
    assert "structure checked" in results[0].message  # no model known yet

    names = [a.name for a in lib.list()]
    assert names == ["alpha", "beta", "gamma", "bundle", "epsilon", "delta", "solo"]
    assert [a.name for a in Library(tmp_path / "lib").list()] == names  # persisted
    for a in lib.list():
        assert sorted(p.name for p in a.path.iterdir()) == sorted(
            ["adapter_config.json", "adapter_model.safetensors", "meta.json"]
            + (["examples.jsonl"] if a.name == "epsilon" else []))
        origin = src[{"epsilon": "alpha", "solo": "alpha", "bundle": "gamma"}.get(a.name, a.name)]
        assert tensors_equal(read_adapter(a.path, module_shapes), read_adapter(origin, module_shapes))
        assert a.enabled and a.color is None and a.accuracy is None and a.imported[:2] == "20"
        assert a.size_bytes == sum((a.path / f).stat().st_size
                                   for f in ("adapter_config.json", "adapter_model.safetensors"))
    beta, eps = lib.get("beta"), lib.get("epsilon")
    assert (beta.rank, beta.targets, beta.source) == (8, ["k_proj", "o_proj", "q_proj", "v_proj"],
                                                     str(many / "beta"))
    assert lib.examples("epsilon") == ["first prompt", "second prompt"] and eps.n_examples == 2
    assert not list((tmp_path / "lib" / ".tmp").iterdir())


def test_refusals_are_listed_per_item_and_nothing_is_written_outside(tmp_path, llama_adapters, bad, engine):
    drop = tmp_path / "drop"
    for kind in ("corrupt", "pickled", "wide"):
        shutil.copytree(bad[kind], drop / kind)
    shutil.copytree(llama_adapters["alpha"], drop / "good")
    shutil.copy(bad["evil"], drop / "evil.zip")
    again = shutil.copytree(llama_adapters["alpha"], tmp_path / "again" / "good")
    lib_dir = tmp_path / "lib"
    before = files_outside(tmp_path, lib_dir)

    lib = Library(lib_dir)
    results = {Path(r.path).relative_to(tmp_path).as_posix(): r
               for r in lib.import_paths([drop, again, tmp_path / "nope"], engine=engine)}
    assert {n: r.ok for n, r in results.items()} == {"drop/corrupt": False, "drop/evil.zip": False, "drop/good": True,
                                                     "drop/pickled": False, "drop/wide": False, "again/good": False,
                                                     "nope": False}
    expected = {
        "drop/corrupt": [f"{drop / 'corrupt'}/adapter_model.safetensors", "corrupt or truncated safetensors"],
        "drop/pickled": [f"{drop / 'pickled'}/adapter_model.bin", "pickle-only weights are refused"],
        "drop/wide": [f"{drop / 'wide'}/adapter_model.safetensors",
                      bad["wide_key"].removeprefix("base_model.model.")[:-len(".weight")],
                      "[4, 32] but the base layer takes 64 inputs"],
        "drop/evil.zip": [str(drop / "evil.zip"), "'../evil.txt' points outside the archive"],
        "again/good": [str(again), "an adapter named 'good' is already in the library; rename it first"],
        "nope": ["no such file or folder"],
    }
    for name, parts in expected.items():
        for part in parts:
            assert part in results[name].message, (name, results[name].message)
        assert results[name].name is None and ".tmp" not in results[name].message
    assert "fits" in results["drop/good"].message
    assert [a.name for a in lib.list()] == ["good"] and engine.adapters == ["good"]
    assert files_outside(tmp_path, lib_dir) == before and not (tmp_path / "evil.txt").exists()
    assert not list((lib_dir / ".tmp").iterdir()) and not list((lib_dir / "adapters").glob("*/.*"))


def test_bad_names_and_cancel(tmp_path, llama_adapters):
    reserved = shutil.copytree(llama_adapters["alpha"], tmp_path / "src" / "con")
    lib = Library(tmp_path / "lib")
    [r] = lib.import_paths([reserved])
    assert not r.ok and "reserved on Windows" in r.message and "rename it first" in r.message
    calls = []
    results = lib.import_paths([llama_adapters["alpha"], llama_adapters["beta"]],
                               cancel=lambda: calls.append(1) or len(calls) > 1)
    assert [r.ok for r in results] == [True, False] and "cancelled" in results[1].message
    assert [a.name for a in lib.list()] == ["alpha"]


def test_hot_add_is_usable_at_once_and_shapes_are_remembered(tmp_path, llama_adapters, bad, engine):
    lib = Library(tmp_path / "lib")
    [r] = lib.import_paths([llama_adapters["alpha"]], engine=engine)
    assert r.ok and engine.adapters == ["alpha"]
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    base, mixed = engine.logits(ids), engine.logits(ids, {"alpha": 1.0})
    engine.add_adapter(llama_adapters["alpha"], name="reference")
    assert not torch.allclose(base, mixed, atol=1e-4)
    assert torch.allclose(mixed, engine.logits(ids, {"reference": 1.0}), atol=1e-6)
    clash = shutil.copytree(llama_adapters["beta"], tmp_path / "reference")
    [r] = lib.import_paths([clash], engine=engine)
    assert not r.ok and r.message.startswith(f"{clash}: an adapter named 'reference' is already loaded")
    assert engine.adapters == ["alpha", "reference"] and [a.name for a in lib.list()] == ["alpha"]

    # the model's shapes are in model.json now: an import without an engine still checks them
    [r] = Library(tmp_path / "lib").import_paths([bad["wide"]])
    assert not r.ok and "but the base layer takes 64 inputs" in r.message
    [r] = Library(tmp_path / "lib").import_paths([llama_adapters["beta"]])
    assert r.ok and "the library's last model" in r.message


# ---- editing --------------------------------------------------------------------------------------------
def test_rename_enable_color_remove_round_trip(tmp_path, llama_adapters, engine, llama_dir):
    lib_dir = tmp_path / "lib"
    lib = Library(lib_dir)
    lib.import_paths([llama_adapters["alpha"], llama_adapters["beta"]], engine=engine)

    lib.set_enabled("alpha", False, engine)
    assert engine.adapters == ["beta"] and not Library(lib_dir).get("alpha").enabled
    lib.set_enabled("alpha", True, engine)
    assert engine.adapters == ["beta", "alpha"] == [a.name for a in Library(lib_dir).list()]  # bank order

    lib.rename("alpha", "first", engine)
    assert engine.adapters == ["beta", "first"] and [a.name for a in lib.list()] == ["beta", "first"]
    assert json.loads((lib_dir / "adapters" / "first" / "meta.json").read_text())["name"] == "first"
    assert not (lib_dir / "adapters" / "alpha").exists()
    for new, msg in (("beta", "already in the library"), ("BETA", "already in the library"),
                     ("a/b", "not allowed in file names"), ("", "empty")):
        with pytest.raises(AdapterError, match=msg):
            lib.rename("first", new)
    with pytest.raises(AdapterError, match="no adapter named 'alpha'"):
        lib.rename("alpha", "x")

    lib.set_color("first", "#12ab3C")
    assert Library(lib_dir).get("first").color == "#12ab3C"
    with pytest.raises(Exception, match="expected #rrggbb"):
        lib.set_color("first", "red")

    lib.remove("first", engine)
    assert engine.adapters == ["beta"] and [a.name for a in Library(lib_dir).list()] == ["beta"]
    assert not (lib_dir / "adapters" / "first").exists() and not list((lib_dir / ".trash").iterdir())
    with pytest.raises(AdapterError, match="no adapter named 'first'"):
        lib.remove("first")

    fresh = Engine.load(llama_dir, device="cpu")
    assert lib.load_into(fresh) == [] and fresh.adapters == ["beta"]


def test_examples_edit_import_and_too_few_flag(tmp_path, llama_adapters):
    lib = Library(tmp_path / "lib")
    lib.import_paths([llama_adapters["alpha"]])
    assert lib.examples("alpha") == [] and lib.get("alpha").too_few_examples
    prompts = [f"prompt {i} with a \"quote\" and\na newline \u2028" for i in range(MIN_EXAMPLES)]
    lib.set_examples("alpha", prompts)
    assert lib.examples("alpha") == prompts
    assert lib.get("alpha").n_examples == MIN_EXAMPLES and not lib.get("alpha").too_few_examples

    txt = tmp_path / "more.txt"
    txt.write_text("one\n\n  two  \n", encoding="utf-8")
    assert lib.import_examples("alpha", txt, append=True) == MIN_EXAMPLES + 2
    assert lib.examples("alpha")[-2:] == ["one", "two"]
    assert lib.import_examples("alpha", txt) == 2 and lib.get("alpha").too_few_examples

    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"prompt": "ok"}\n\n{"prompt": 3}\n', encoding="utf-8")
    with pytest.raises(ExamplesError, match=f"{bad_jsonl}:3: \"prompt\" must be a non-empty string"):
        lib.import_examples("alpha", bad_jsonl)
    with pytest.raises(ExamplesError, match="expected a .jsonl file"):
        lib.import_examples("alpha", tmp_path / "x.csv")
    with pytest.raises(ExamplesError, match="cannot read"):
        lib.import_examples("alpha", tmp_path / "missing.txt")
    with pytest.raises(ExamplesError, match="example 2 for 'alpha'"):
        lib.set_examples("alpha", ["fine", "  "])
    assert lib.examples("alpha") == ["one", "two"]  # unchanged by the refusals
    lib.set_examples("alpha", [])
    assert lib.examples("alpha") == [] and lib.get("alpha").n_examples == 0


# ---- router ---------------------------------------------------------------------------------------------
def test_retrain_full_then_head_then_full_and_cancel(tmp_path, llama_adapters, engine):
    lib = Library(tmp_path / "lib")
    names = ["alpha", "beta", "gamma"]
    lib.import_paths([llama_adapters[n] for n in names], engine=engine)
    train, _ = make_tasks(24, seed=1, tasks=TASKS)
    for n, task in zip(names, TASKS):
        lib.set_examples(n, train[task])
    lib.import_paths([llama_adapters["delta"]])
    with pytest.raises(RouterError, match="no router examples for delta"):
        lib.retrain()
    lib.set_examples("delta", train[TASKS[3]])
    with pytest.raises(RouterError, match="not the library's enabled adapters"):
        lib.retrain(engine)  # delta was imported without the engine
    lib.set_enabled("delta", False)

    steps = []
    report = lib.retrain(engine, progress=lambda *a: steps.append(a), epochs=20)
    assert report["mode"] == "full" and [s[:2] for s in steps] == [(e, 20) for e in range(1, 21)]
    assert all(loss > 0 and 0 <= acc <= 1 for _, _, loss, acc in steps)
    assert report["accuracy"] == steps[-1][3] and report["labels"] == names + [BASE]  # the router's base class last
    assert engine.router.adapters == names and lib.router_info()["matches"]
    for n in names:
        assert lib.get(n).accuracy == report["per_adapter"][n]
    first = Path(report["path"])

    lib.set_enabled("delta", True, engine)  # only an adapter added: head-only
    report = lib.retrain(engine, progress=lambda *a: steps.append(a))
    assert report["mode"] == "head" and engine.router.adapters == names + ["delta"]
    assert report["accuracy"] > 0.5
    assert not first.exists() and sorted(p.name for p in lib.root.glob("router-*")) == [
        "router-2.json", "router-2.safetensors"]

    lib.set_examples("alpha", train[TASKS[0]][:-4])  # an adapter's examples changed: full
    assert lib.retrain(engine, epochs=2)["mode"] == "full"
    current = lib.router_info()["path"].read_bytes()
    assert lib.retrain(engine, full=True, cancel=lambda: True) is None  # cancelled: the router is untouched
    assert lib.router_info()["path"].read_bytes() == current


def test_load_into_refuses_per_adapter_and_loads_a_matching_router(tmp_path, llama_adapters, bad, llama_dir):
    lib = Library(tmp_path / "lib")
    lib.import_paths([llama_adapters["alpha"], bad["wide"], llama_adapters["beta"]])  # structure only: all pass
    train, _ = make_tasks(20, seed=2, tasks=TASKS)
    for n, task in zip(["alpha", "wide", "beta"], TASKS):
        lib.set_examples(n, train[task])
    lib.retrain(epochs=1)
    (lib.root / "adapters" / "beta" / "meta.json").write_text("{ not json")  # edited by hand

    seen = []
    eng = Engine.load(llama_dir, device="cpu")
    refused = dict(lib.load_into(eng, progress=lambda *a: seen.append(a)))
    assert eng.adapters == ["alpha"] and eng.router is None
    assert seen == [(1, 3, "alpha"), (2, 3, "wide"), (3, 3, "beta")]
    assert "but the base layer takes 64 inputs" in refused[str(lib.root / "adapters" / "wide")]
    assert "meta.json: unreadable" in refused[str(lib.root / "adapters" / "beta")]
    assert "router was trained for other adapters" in refused[str(lib.router_info()["path"])]

    (lib.root / "adapters" / "beta" / "meta.json").write_text(json.dumps({"enabled": True}))
    lib.set_enabled("wide", False)
    assert not lib.router_info()["matches"]
    lib.retrain(epochs=1)
    eng = Engine.load(llama_dir, device="cpu")
    assert lib.load_into(eng) == [] and eng.router.adapters == eng.adapters == ["alpha", "beta"]


# ---- crash leftovers ------------------------------------------------------------------------------------
def test_leftovers_of_interrupted_writes_are_reconciled(tmp_path, llama_adapters):
    lib = Library(tmp_path / "lib")
    lib.import_paths([llama_adapters["alpha"], llama_adapters["beta"]])
    root = lib.root
    half = root / ".tmp" / "cut-short"  # an import killed mid-copy
    half.mkdir()
    (half / "adapter_config.json").write_bytes((Path(llama_adapters["gamma"]) / "adapter_config.json").read_bytes())
    orphan = shutil.copytree(root / "adapters" / "beta", root / "adapters" / "orphan")  # killed before index write
    shutil.move(root / "adapters" / "alpha", root / ".trash" / "x")  # a removal killed before its index write
    (root / "router-7.safetensors").write_bytes(b"from a retrain killed before its commit")
    (root / ".index.json.123.456.tmp").write_bytes(b"{")

    assert [a.name for a in lib.list()] == ["beta", "orphan"]  # ghost dropped, complete orphan kept
    assert lib.get("orphan").path == orphan
    lib.set_color("beta", "#000000")  # any write collects the rest
    assert not list((root / ".tmp").iterdir()) and not list((root / ".trash").iterdir())
    assert not (root / "router-7.safetensors").exists() and not (root / ".index.json.123.456.tmp").exists()
    assert json.loads((root / "index.json").read_text())["adapters"] == ["beta", "orphan"]

    (root / "index.json").write_text("{ torn")  # a hand edit: rebuilt from the folders, and said so
    assert [a.name for a in lib.list()] == ["beta", "orphan"]
    assert any("index.json was damaged" in p and "rebuilt" in p for p in lib.problems())
    (root / "index.json").unlink()
    assert [a.name for a in lib.list()] == ["beta", "orphan"]


# ---- CLI ------------------------------------------------------------------------------------------------
def test_cli_add_list_remove(tmp_path, llama_adapters, bad, llama_dir, capsys):
    lib = str(tmp_path / "lib")
    assert cli.main(["library", "add", str(llama_adapters["alpha"]), str(bad["corrupt"]), "--library", lib]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("added alpha: rank 4, q_proj, v_proj")
    assert out[1].startswith(f"refused: {bad['corrupt']}/adapter_model.safetensors: corrupt or truncated")
    assert cli.main(["library", "add", str(bad["wide"]), "--library", lib]) == 0  # structure only
    assert cli.main(["library", "add", str(llama_adapters["beta"]), "--model", str(llama_dir), "--library", lib]) == 0
    assert cli.main(["library", "add", str(bad["wide"]), "--model", str(llama_dir), "--library", lib]) == 1
    assert "already in the library" in capsys.readouterr().out

    assert cli.main(["library", "list", "--library", lib]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["name", "rank", "targets", "size", "examples", "enabled", "accuracy"]
    assert [row.split()[0] for row in table[1:]] == ["alpha", "wide", "beta"]
    assert table[1].split()[1:3] == ["4", "q_proj,v_proj"] and "0 (too few)" in table[1]

    assert cli.main(["library", "remove", "wide", "--library", lib]) == 0
    assert cli.main(["library", "remove", "wide", "--library", lib]) == 2
    assert "no adapter named 'wide'" in capsys.readouterr().err
    assert [a.name for a in Library(lib).list()] == ["alpha", "beta"]


# ---- fuzz: archive layouts ------------------------------------------------------------------------------
SEGMENTS = ["a", "b", "ü", "..", ".", "", "C:", "x\\..", "con", ".hidden"]
FILES = ["adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "examples.jsonl", "examples.txt",
         "other"]
member = st.tuples(st.booleans(), st.lists(st.sampled_from(SEGMENTS), max_size=3), st.sampled_from(FILES),
                   st.sampled_from(["config", "weights", "junk", "empty", "examples"]))


@pytest.fixture(scope="module")
def payloads(llama_adapters):
    d = Path(llama_adapters["alpha"])
    return {"config": (d / "adapter_config.json").read_bytes(),
            "weights": (d / "adapter_model.safetensors").read_bytes(),
            "junk": b"\x00\xffPK not anything", "empty": b"", "examples": b'{"prompt": "hi"}\nnot json\n'}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(members=st.lists(member, max_size=6), truncate=st.sampled_from([None, 0.5, 0.9]),
       method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_archive_layouts_are_accepted_or_refused(payloads, module_shapes, members, truncate, method):
    with tempfile.TemporaryDirectory() as sandbox:
        sandbox = Path(sandbox)
        buf = io.BytesIO()
        with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", method) as zf:
            warnings.simplefilter("ignore")  # duplicate names
            for absolute, dirs, name, content in members:
                zf.writestr(("/" if absolute else "") + "/".join([*dirs, name]), payloads[content])
        data = buf.getvalue()
        archive = sandbox / "drop.zip"
        archive.write_bytes(data if truncate is None else data[: int(len(data) * truncate)])
        lib = Library(sandbox / "lib")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = lib.import_paths([archive])  # anything but AdapterError inside would escape here
        assert results and all(r.message for r in results)
        ok = [r.name for r in results if r.ok]
        assert [a.name for a in lib.list()] == ok
        for a in lib.list():
            read_adapter(a.path, module_shapes)  # complete and valid
            lib.examples(a.name)
        assert {p.name for p in sandbox.iterdir()} <= {"drop.zip", "lib"}
        assert not (sandbox / "lib" / ".tmp").exists() or not list((sandbox / "lib" / ".tmp").iterdir())
