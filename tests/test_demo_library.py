"""The demo as a library (app/demo_library.py, app/loading.py): on first start the demo's adapters, examples and
router are installed into the user's library; installing again changes nothing; it never overwrites what the
user has; an adapter the user adds is routed in the chat once the router is retrained."""
import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.demo_library import demo_adapters, first_start, install_demo
from app.library import Library
from app.loading import open_engine
from app.paths import DEMO_DIR
from conftest import make_adapter_dir
from engine import BASE, RoutingEvent

TASKS = [p.name for p in demo_adapters()]


def snapshot(root: Path) -> dict:
    """Every file under `root` -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def demo_examples(task):
    return [json.loads(line)["prompt"] for line in (DEMO_DIR / "adapters" / task / "examples.jsonl").read_text(
        encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh data folder opened as the app opens the demo on first start."""
    root = tmp_path_factory.mktemp("data") / "library"
    assert first_start(Library(root))
    return root, open_engine(None, library_dir=root, device="cpu", dtype="float32")


def test_first_start_installs_the_demo_into_the_library(installed):
    root, opened = installed
    library = Library(root)
    assert opened.demo and opened.installed.added == TASKS and not opened.installed.skipped
    assert "Installed the demo's 7 adapters" in opened.installed.message and opened.refused == []
    assert [a.name for a in library.list()] == TASKS == opened.engine.adapters
    for task in TASKS:
        assert library.examples(task) == demo_examples(task)
        assert load_file(DEMO_DIR / "adapters" / task / "adapter_model.safetensors").keys() == \
            load_file(library.get(task).path / "adapter_model.safetensors").keys()
    info = library.router_info()
    assert info["matches"] and info["adapters"] == TASKS and opened.engine.router.labels == TASKS + [BASE]
    prompt = json.loads((DEMO_DIR / "tasks" / "units.jsonl").read_text(encoding="utf-8").splitlines()[0])
    reply = opened.engine.generate_batch([[{"role": "user", "content": prompt["prompt"]}]], max_new_tokens=40)[0]
    assert reply["text"].strip() == prompt["response"] and max(reply["routing"][0].selected,
                                                               key=reply["routing"][0].selected.get) == "units"


def test_the_installed_router_is_the_bundled_router(installed):
    """Trained from the demo's examples with the library's defaults, as packaging/build_demo.py trains it."""
    root, _ = installed
    bundled, trained = load_file(DEMO_DIR / "router.safetensors"), load_file(Library(root).router_info()["path"])
    assert bundled.keys() == trained.keys() and all(torch.equal(bundled[k], trained[k]) for k in bundled)


def test_installing_again_changes_nothing(installed):
    root, _ = installed
    before = snapshot(root)
    again = open_engine(None, library_dir=root, device="cpu", dtype="float32")
    assert again.installed is None and again.refused == [] and again.engine.adapters == TASKS
    assert again.engine.router is not None and not first_start(Library(root))
    result = install_demo(Library(root))  # an explicit install finds everything there
    assert result.added == [] and [n for n, _ in result.skipped] == TASKS and result.router is None
    assert "already in your library" in result.message
    assert snapshot(root) == before


def test_install_keeps_what_the_user_has(tmp_path):
    """A library that already holds the user's own 'units' (other weights, examples, colour) and another adapter."""
    library = Library(tmp_path / "library")
    mine = make_adapter_dir(tmp_path / "units", DEMO_DIR / "model", seed=3)
    (mine / "examples.txt").write_text("my own units prompt\n" * 3 + "another one\n", encoding="utf-8")
    shout = make_adapter_dir(tmp_path / "shout", DEMO_DIR / "model", seed=4)
    (shout / "examples.txt").write_text("".join(f"SHOUT THIS LOUDLY {i}!\n" for i in range(30)), encoding="utf-8")
    assert all(r.ok for r in library.import_paths([mine, shout]))
    library.set_color("units", "#123456")
    weights = snapshot(library.get("units").path)
    result = install_demo(library)
    assert result.skipped == [("units", "the library already has an adapter of this name")]
    assert result.added == [t for t in TASKS if t != "units"] and result.router["mode"] == "full"
    assert snapshot(library.get("units").path) == weights  # the user's adapter: weights, examples, meta untouched
    assert library.get("units").color == "#123456" and library.examples("shout")[0] == "SHOUT THIS LOUDLY 0!"
    assert [a.name for a in library.list()] == ["units", "shout", *result.added]
    assert library.router_info()["matches"]


def shout_prompts(n, seed):
    rng = random.Random(seed)
    words = "river lamp garden window music coffee mountain paper engine yellow silver forest planet rabbit".split()
    return [rng.choice(["Shout this: ", "Say it in capitals: ", "Write in all caps: ", "Make this loud: "])
            + " ".join(rng.sample(words, 3)) + rng.choice([".", "!", ""]) for _ in range(n)]


@pytest.mark.slow
def test_an_adapter_added_to_the_installed_library_is_routed_after_a_retrain(installed, tmp_path):
    """The window's default retrain: head-only first, which keeps the features; they never saw the new adapter's
    words and read them as general chat (the base model kept about half of its fresh prompts), its held-out
    accuracy shows it, and the retrain goes on as a full one."""
    root, opened = installed
    library, engine = Library(tmp_path / "library"), opened.engine
    shutil.copytree(root, library.root)
    shout = make_adapter_dir(tmp_path / "shout", DEMO_DIR / "model", seed=4)
    (shout / "examples.txt").write_text("".join(p + "\n" for p in dict.fromkeys(shout_prompts(40, 0))),
                                        encoding="utf-8")
    added = library.import_paths([shout], engine=engine)
    assert added[0].ok and engine.adapters == TASKS + ["shout"] and engine.router is not None
    report = library.retrain(engine)
    assert report["mode"] == "full" and list(report["refit_for"]) == ["shout"]
    assert engine.router.adapters == TASKS + ["shout"]
    fresh = shout_prompts(20, 1)
    firsts = [next(e for e in engine.generate([{"role": "user", "content": p}], max_new_tokens=2)
                   if isinstance(e, RoutingEvent)) for p in fresh]
    assert sum(max(e.selected, key=e.selected.get) == "shout" for e in firsts) >= 19
    engine.remove_adapter("shout")  # the module's engine goes back as it was
    engine.load_router(Library(root).router_info()["path"])
