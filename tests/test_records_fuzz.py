"""Property-based fuzzing of the library's records (index.json, each meta.json, the router's sidecar): whatever
they hold, reading, loading and writing the library raise nothing but SwitchboardError, every message can be
printed, and no adapter folder or router file is ever deleted."""
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from router_tasks import make_tasks

from app.library import Library
from engine import Engine
from engine.errors import SwitchboardError

FUZZ = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NAMES = ["alpha", "beta"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(NAMES + ["router-1.safetensors", "router-2.safetensors", "../router-1.safetensors", "\ud800"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6) | st.sampled_from(NAMES), inner,
                                                                max_size=3),
    max_leaves=6)
INDEX_FIELDS = ["format", "version", "adapters", "router"]
ROUTER_FIELDS = ["file", "examples"]
META_FIELDS = ["name", "color", "enabled", "imported", "source", "rank", "targets", "size_bytes", "n_examples",
               "accuracy"]
SIDECAR_FIELDS = ["format", "version", "adapters", "featurizer", "net", "report", "weights_sha256",
                  "settings_sha256"]
FEATURIZER_FIELDS = ["kind", "buckets", "max_words", "char_ngrams", "tokenizer_dir"]

edits = st.one_of(
    st.tuples(st.just("index"), st.none(), json_values),
    st.tuples(st.just("index"), st.sampled_from(INDEX_FIELDS), json_values),
    st.tuples(st.just("index.router"), st.sampled_from(ROUTER_FIELDS), json_values),
    st.tuples(st.sampled_from(["meta:alpha", "meta:beta"]), st.none(), json_values),
    st.tuples(st.sampled_from(["meta:alpha", "meta:beta"]), st.sampled_from(META_FIELDS), json_values),
    st.tuples(st.just("sidecar"), st.none(), json_values),
    st.tuples(st.just("sidecar"), st.sampled_from(SIDECAR_FIELDS), json_values),
    st.tuples(st.just("sidecar.featurizer"), st.sampled_from(FEATURIZER_FIELDS),
              json_values | st.sampled_from([1 << 26, 0, [1, 99], [3, 1], "tokenizer"])),
    st.tuples(st.sampled_from(["index", "meta:alpha", "sidecar"]), st.just("bytes"), st.binary(max_size=40)),
)


@pytest.fixture(scope="module")
def template(tmp_path_factory, llama_adapters):
    lib = Library(tmp_path_factory.mktemp("records") / "lib")
    lib.import_paths([llama_adapters[n] for n in NAMES])
    train, _ = make_tasks(20, seed=5, tasks=["gsm8k", "translate_de"])
    for n, task in zip(NAMES, ["gsm8k", "translate_de"]):
        lib.set_examples(n, train[task])
    lib.retrain(epochs=1)
    return lib.root


@pytest.fixture(scope="module")
def engine(llama_dir):
    return Engine.load(llama_dir, device="cpu")


def record(root: Path, target: str) -> Path:
    if target.startswith("meta:"):
        return root / "adapters" / target[5:] / "meta.json"
    return root / ("router-1.json" if target.startswith("sidecar") else "index.json")


def apply(root: Path, target: str, field, value):
    path = record(root, target)
    if field == "bytes":
        path.write_bytes(value)
        return
    try:
        data = json.loads(path.read_bytes())
    except ValueError:
        data = {}
    if field is None:
        data = value
    elif "." in target and isinstance(data, dict) and isinstance(data.get(target.split(".")[1]), dict):
        data[target.split(".")[1]][field] = value
    elif isinstance(data, dict):
        data[field] = value
    path.write_text(json.dumps(data))


def printable(text):
    str(text).encode("utf-8")  # raises on a lone surrogate


@FUZZ
@given(changes=st.lists(edits, min_size=1, max_size=3))
def test_damaged_records_never_crash_or_delete(template, engine, changes):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(template, Path(tmp) / "lib"))
        for change in changes:
            apply(root, *change)
        before = sorted(p.name for p in (root / "adapters").iterdir())
        lib = Library(root)
        try:
            for a in lib.list():
                printable(f"{a.name} {a.problem} {a.warning} {a.targets} {a.n_examples} {a.enabled}")
            for p in lib.problems():
                printable(p)
            try:
                lib.router_info()
            except SwitchboardError as e:
                printable(e)
            for path, reason in lib.load_into(engine):
                printable(f"{path}: {reason}")
            assert engine.router is None or engine.router.adapters == engine.adapters
            try:
                lib.set_color(lib.list()[0].name, "#123456")
            except SwitchboardError as e:
                printable(e)
        except SwitchboardError as e:  # a folder that is no library of this version: refused, not touched
            printable(e)
        finally:
            for name in engine.adapters:
                engine.remove_adapter(name)
            engine.router = None
        assert sorted(p.name for p in (root / "adapters").iterdir()) == before
        assert (root / "router-1.safetensors").is_file() and (root / "router-1.json").is_file()
