"""Router: featurizer, training, head-only / full retrain, files, routing rules, and the `switchboard router` CLI."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from router_tasks import make_tasks, write_folder

from app.commands import router as router_cmd
from app.commands.options import Parser
from engine.errors import RouterError
from engine.events import BASE
from engine.features import Featurizer
from engine.general_chat import general_chat
from engine.router import MIN_BASE_EXAMPLES, Router, RouterNet, _settings_sha256, param_count, sidecar_path

TASKS = ["gsm8k", "translate_de", "code_questions", "cnn_dailymail", "object_counting", "strategyqa"]


@pytest.fixture(scope="module")
def data():
    return make_tasks(40, 30, seed=3, tasks=TASKS)  # (train, test): 40 and 30 prompts per task


@pytest.fixture(scope="module")
def router(data):
    return Router.train(data[0], seed=0)


def _accuracy(router, test):
    hits = [router.labels[int(router.probs(p).argmax())] == a for a, ps in test.items() for p in ps]
    return sum(hits) / len(hits)


# ---------------------------------------------------------------------- featurizer
def test_featurizer_is_stable_across_processes():
    """Hashes must not depend on Python's per-process salted hash(): a saved router must featurize identically."""
    text = "Übersetze bitte: Der Hund schläft. 今天天气很好！ def f(x): return x"
    code = ("from engine.features import Featurizer; i, w = Featurizer()(%r); "
            "print(i.tolist(), [round(float(x), 6) for x in w])" % text)
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"  # a str hash salt unlike this process's
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": seed}, cwd=os.getcwd()).stdout
    i, w = Featurizer()(text)
    assert out == f"{i.tolist()} {[round(float(x), 6) for x in w]}\n"


def test_featurizer_weights_and_tail():
    f = Featurizer(max_words=4)
    assert f.tail("One two\nthree   FOUR five") == "¶ three four five"  # a line break is a word
    i, w = f("the cat the cat the cat sat")
    assert i.dtype == np.int64 and w.dtype == np.float32 and (i >= 0).all() and (i < f.buckets).all()
    assert np.dot(w, w) == pytest.approx(1.0, abs=1e-5)  # two views, each of norm sqrt(1/2)
    assert f.tail("x" * 10_000) == "x" * 64  # one huge unspaced "word" is capped at 16 chars per word
    assert f("")[0].size >= 1 and f("日本語のテキスト")[0].size > 10  # CJK featurizes through character n-grams


def test_featurizer_positions_tell_which_request_comes_first():
    """Word unigrams are also tagged with the quarter of the text they stand in: two requests in either order
    share every untagged word, but not those features. A router saved before positions existed (no "positions"
    in its settings) featurizes exactly as it did."""
    first, second = "reverse the word cat .", "convert ten meters to centimeters ."
    on, off = Featurizer(), Featurizer(positions=0)

    def tagged(text):  # the buckets the positions add
        return set(on(text)[0].tolist()) - set(off(text)[0].tolist())

    assert on.positions == 4 and tagged(first + " " + second)
    assert tagged(first + " " + second) != tagged(second + " " + first)
    old = Featurizer.from_settings({k: v for k, v in on.settings.items() if k != "positions"})
    assert old.positions == 0
    assert all(np.array_equal(a, b) for a, b in zip(old(first), off(first)))
    for bad in (-1, "4", 17, True):
        with pytest.raises(RouterError, match="positions must be an integer from 0 to 16"):
            Featurizer.check_settings({**on.settings, "positions": bad})


def test_featurizer_parts_are_a_weighted_sum_of_unit_norm():
    f = Featurizer()
    one = f("convert ten meters")
    assert all(np.array_equal(a, b) for a, b in zip(f([("convert ten meters", 1.0)]), one))
    i, w = f([("reverse the word cat", 0.3), ("convert ten meters", 1.0)])
    assert np.dot(w, w) == pytest.approx(1.0, abs=1e-5) and len(np.unique(i)) == len(i)
    dense = np.zeros(f.buckets)
    for text, weight in (("reverse the word cat", 0.3), ("convert ten meters", 1.0)):
        ti, tw = f(text)
        np.add.at(dense, ti, weight * tw)
    assert np.allclose(dense[i] / np.linalg.norm(dense), w, atol=1e-6)  # the parts' weighted sum, renormalised
    assert f([("", 0.0)])[0].size >= 1  # nothing of weight: featurized as empty text


def test_parameter_budget_and_layers():
    for n in (2, 33, 100):
        net = RouterNet(Featurizer().buckets, n)
        assert param_count(net) <= 5_000_000
    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Linear, torch.nn.EmbeddingBag))]
    assert len(layers) == 4  # the paper's 4-layer MLP, the first layer an EmbeddingBag over sparse n-grams


# ---------------------------------------------------------------------- training
def test_trains_to_high_heldout_accuracy(router, data):
    train, test = data
    rep = router.report
    assert router.adapters == TASKS and router.labels == TASKS + [BASE] and router.base
    assert rep["accuracy"] >= 0.99 and _accuracy(router, test) >= 0.99
    assert rep["labels"] == TASKS + [BASE]
    assert rep["n_train"] + rep["n_heldout"] == 40 * len(TASKS) + MIN_BASE_EXAMPLES  # 40 a task: the floor applies
    assert rep["n_heldout"] == 4 * len(TASKS) + 20  # 10% of each label's examples
    assert np.array(rep["confusion"]).sum() == rep["n_heldout"] and set(rep["per_adapter"]) == set(TASKS)
    assert rep["base"] >= 0.99
    p = router.probs(test["translate_de"][0])
    assert p.dtype == np.float32 and p.shape == (len(TASKS) + 1,) and p.sum() == pytest.approx(1.0, abs=1e-5)


def test_small_talk_routes_to_the_base_model(router):
    """Abstention: general chat it was not trained on (another seed of the generator) selects the base model alone."""
    chat = general_chat(100, seed=7)
    alone = [router.route(text).selected == {BASE: 1.0} for text in chat]
    assert sum(alone) / len(alone) >= 0.9
    assert router.route("Thanks a lot, that helped!").selected == {BASE: 1.0}


def test_without_base_class(data):
    small = {a: ps[:12] for a, ps in data[0].items()}
    r = Router.train(small, base=False, epochs=3)
    assert r.labels == TASKS and not r.base and "base model" not in r.route("Hello!").selected
    with pytest.raises(RouterError, match="named 'base model'"):
        Router.train({**small, BASE: ["x"]})


def test_deterministic_for_a_seed(data):
    small = {a: ps[:12] for a, ps in data[0].items()}
    a, b, c = (Router.train(small, seed=s, epochs=3) for s in (7, 7, 8))
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k
    assert not torch.equal(a.net.fc1.weight, c.net.fc1.weight)
    assert a.report["confusion"] == b.report["confusion"]


def test_progress_and_cancel(data):
    small = {a: ps[:12] for a, ps in data[0].items()}
    calls = []
    Router.train(small, epochs=3, progress=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(isinstance(c[2], float) and 0.0 <= c[3] <= 1.0 for c in calls)
    seen = []
    assert Router.train(small, epochs=3, progress=lambda *a: seen.append(a), cancel=lambda: len(seen) >= 1) is None
    assert len(seen) == 1  # stopped inside the second epoch


def test_head_only_retrain_adds_an_adapter(router, data):
    new = make_tasks(40, 30, seed=4, tasks=["language_identification"])
    train = {**data[0], **new[0]}
    test = {**data[1], **new[1]}
    again = router.retrain(train)
    assert again.adapters == TASKS + ["language_identification"]
    for k in ("embed.weight", "fc1.weight", "fc2.weight"):  # layers 1-3 frozen
        assert torch.equal(again.net.state_dict()[k], router.net.state_dict()[k])
    old = {a: ps for a, ps in test.items() if a in TASKS}
    # old tasks keep their accuracy: with the base class, 2 of the 180 (short code questions that name a
    # programming language) move to language_identification; without it none do
    n_old = sum(map(len, old.values()))
    assert _accuracy(again, old) >= _accuracy(router, old) - 2 / n_old - 1e-9
    assert _accuracy(again, {"language_identification": test["language_identification"]}) >= 0.9  # new one learned
    assert router.adapters == TASKS  # the old router is untouched
    assert not torch.equal(again.net.head.weight[-1], router.net.head.weight[-1])  # the base row is refit
    assert again.labels[-1] == BASE and again.route("Hello, how are you?").selected == {BASE: 1.0}


def test_head_only_retrain_of_a_router_without_base_class_adds_it(data):
    small = {a: ps[:20] for a, ps in data[0].items()}
    old = Router.train(small, base=False, epochs=10)
    again = old.retrain(small)
    assert again.labels == TASKS + [BASE] and torch.equal(again.net.fc1.weight, old.net.fc1.weight)
    chat = general_chat(50, seed=7)
    assert sum(max(again.route(t).selected, key=again.route(t).selected.get) == BASE for t in chat) >= 40


def test_head_only_retrain_removes_an_adapter_and_full_retrain(router, data):
    train = {a: ps for a, ps in data[0].items() if a != "gsm8k"}
    test = {a: ps for a, ps in data[1].items() if a != "gsm8k"}
    head = router.retrain(train)
    assert head.adapters == TASKS[1:] and _accuracy(head, test) >= 0.99
    full = router.retrain(train, full=True, epochs=10)  # 5 epochs were too few once the base class was in
    assert full.adapters == TASKS[1:] and not torch.equal(full.net.fc1.weight, router.net.fc1.weight)
    assert _accuracy(full, test) >= 0.95


def test_bad_training_input():
    with pytest.raises(RouterError, match="no adapters"):
        Router.train({})
    with pytest.raises(RouterError, match=r"no example prompts for adapter\(s\) \['b'\]"):
        Router.train({"a": ["x"], "b": []})


# ---------------------------------------------------------------------- files
def test_save_load_round_trip(router, data, tmp_path):
    path = tmp_path / "r.safetensors"
    router.save(path)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["adapters"] == TASKS and meta["featurizer"]["kind"] == "hash" and meta["date"]
    assert meta["featurizer"]["max_words"] == 256 and meta["report"]["accuracy"] == router.report["accuracy"]
    assert meta["version"] == 2 and meta["base"] is True
    loaded = Router.load(path, adapters=TASKS)
    for p in data[1]["gsm8k"][:5] + ["", "一二三"]:
        assert np.array_equal(loaded.probs(p), router.probs(p))
    assert loaded.report == router.report
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.safetensors"]  # no temp files left behind


def test_version_1_router_without_base_class_still_loads_and_routes(data, tmp_path):
    """A router saved before the base class existed: version 1, no "base" in its sidecar."""
    small = {a: ps[:12] for a, ps in data[0].items()}
    r = Router.train(small, base=False, epochs=3)
    path = tmp_path / "old.safetensors"
    r.save(path)
    meta = json.loads(sidecar_path(path).read_text())
    del meta["base"]
    meta["version"] = 1
    meta["settings_sha256"] = _settings_sha256(meta)
    sidecar_path(path).write_text(json.dumps(meta))
    old = Router.load(path, adapters=TASKS)
    assert old.labels == TASKS and not old.base
    event = old.route(data[1]["gsm8k"][0])
    assert list(event.probs) == TASKS and BASE not in event.selected and sum(event.selected.values()) == pytest.approx(1)
    sidecar_path(path).write_text(json.dumps({**meta, "version": 3}))
    with pytest.raises(RouterError, match="version 3, this app reads 1 and 2"):
        Router.load(path)


def test_load_refuses_other_adapters(router, tmp_path):
    path = tmp_path / "r.safetensors"
    router.save(path)
    with pytest.raises(RouterError) as e:
        Router.load(path, adapters=TASKS[:-1] + ["poetry"])
    msg = str(e.value)
    assert "['poetry']" in msg and "['strategyqa']" in msg and "retrain" in msg
    with pytest.raises(RouterError, match="another order.*retrain"):
        Router.load(path, adapters=TASKS[::-1])


def test_load_refuses_missing_or_corrupt_files(router, tmp_path):
    path = tmp_path / "r.safetensors"
    with pytest.raises(RouterError, match="not found"):
        Router.load(path)
    router.save(path)
    side = sidecar_path(path)
    good_side, good_blob = side.read_text(), path.read_bytes()
    side.write_text("{not json")
    with pytest.raises(RouterError, match="corrupt router sidecar"):
        Router.load(path)
    side.write_text(good_side)
    path.write_bytes(good_blob[: len(good_blob) // 2])
    with pytest.raises(RouterError, match="do not match"):
        Router.load(path)
    path.write_bytes(good_blob)
    side.write_text(json.dumps({**json.loads(good_side), "net": {"dim": 7, "hidden": 3}}))
    with pytest.raises(RouterError, match="settings were changed after training"):
        Router.load(path)
    side.unlink()
    with pytest.raises(RouterError, match="r.json: router file not found"):
        Router.load(path)


def test_tokenizer_featurizer(llama_dir, data, tmp_path):
    small = {a: ps[:20] for a, ps in data[0].items()}
    r = Router.train(small, tokenizer_dir=llama_dir)
    assert r.featurizer.settings["kind"] == "tokenizer" and r.report["accuracy"] >= 0.9
    path = tmp_path / "t.safetensors"
    r.save(path)
    text = data[1]["gsm8k"][0]
    assert np.array_equal(Router.load(path).probs(text), r.probs(text))
    meta = json.loads(sidecar_path(path).read_text())
    meta["featurizer"]["tokenizer_dir"] = str(tmp_path / "gone")
    sidecar_path(path).write_text(json.dumps(meta))
    with pytest.raises(RouterError, match="gone: cannot load a tokenizer"):
        Router.load(path)


# ---------------------------------------------------------------------- routing rules
NAMES = ["a", "b", "c", "d"]


@pytest.fixture
def fixed():
    r = Router(RouterNet(16, 4), Featurizer(buckets=16), NAMES, {})
    r.probs = lambda text: np.array([0.5, 0.3, 0.15, 0.05], np.float32)
    return r


@pytest.mark.parametrize("kw, expected", [
    ({}, {"a": 0.625, "b": 0.375}),
    ({"top_p": 0.4}, {"a": 1.0}),
    ({"top_p": 1.0}, {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}),
    ({"max_adapters": 1}, {"a": 1.0}),
    ({"muted": ["a"]}, {"b": 2 / 3, "c": 1 / 3}),                    # renormalised without a: .6 .3 .1
    ({"enabled": ["c", "d"]}, {"c": 0.75, "d": 0.25}),
    ({"enabled": ["b", "c", "d"], "muted": ["b"]}, {"c": 0.75, "d": 0.25}),
    ({"pinned": ["d"]}, {"a": 0.5 / (0.8 + 1 / 3), "b": 0.3 / (0.8 + 1 / 3), "d": (1 / 3) / (0.8 + 1 / 3)}),
    ({"pinned": ["a"]}, {"a": 0.625, "b": 0.375}),                   # already selected: max(0.5, 1/2) = 0.5
    ({"pinned": ["d"], "max_adapters": 1}, {"a": 0.5, "d": 0.5}),    # the cap applies before pins join
    ({"pinned": ["c", "d"], "top_p": 0.4}, {"a": 0.5 / (0.5 + 2 / 3), "c": (1 / 3) / (0.5 + 2 / 3),
                                            "d": (1 / 3) / (0.5 + 2 / 3)}),
    ({"pinned": ["b"], "muted": ["b"]}, {"a": 0.5 / 0.65, "c": 0.15 / 0.65}),  # mute wins
    ({"muted": ["a", "b", "c", "d"]}, {}),
    ({"muted": ["not-loaded"]}, {"a": 0.625, "b": 0.375}),
])
def test_route_rules(fixed, kw, expected):
    r = fixed.route("anything", **kw)
    assert r.selected == pytest.approx(expected)
    assert r.probs == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05})  # raw, all adapters
    assert r.latency_ms >= 0.0


def test_route_refuses_unknown_pin(fixed):
    with pytest.raises(RouterError, match="cannot pin \\['zeta'\\]"):
        fixed.route("x", pinned=["zeta"])


@pytest.fixture
def with_base():
    r = Router(RouterNet(16, 4), Featurizer(buckets=16), NAMES[:3], {}, base=True)
    r.probs = lambda text: np.array([0.3, 0.15, 0.05, 0.5], np.float32)  # a, b, c, base
    return r


@pytest.mark.parametrize("kw, expected", [
    ({}, {BASE: 0.625, "a": 0.375}),                                 # top-p over adapters + base
    ({"top_p": 0.5}, {BASE: 1.0}),                                   # abstains: the base model alone
    ({"top_p": 1.0}, {BASE: 0.5, "a": 0.3, "b": 0.15, "c": 0.05}),
    ({"max_adapters": 1}, {BASE: 1.0}),                              # the base model counts as one choice
    ({"muted": [BASE]}, {"a": 2 / 3, "b": 1 / 3}),                   # muting the base model: adapters only
    ({"enabled": ["c"], "top_p": 1.0}, {BASE: 0.5 / 0.55, "c": 0.05 / 0.55}),  # `enabled` names adapters only
    ({"pinned": ["c"]}, {"a": 0.6 / (0.9 + 1 / 3), "b": 0.3 / (0.9 + 1 / 3), "c": (1 / 3) / (0.9 + 1 / 3)}),
    ({"pinned": ["c"], "top_p": 0.5}, {"a": 0.6 / 1.1, "c": 0.5 / 1.1}),  # a pin rules the base model out
    ({"muted": ["a", "b", "c"]}, {BASE: 1.0}),
])
def test_route_rules_with_base_class(with_base, kw, expected):
    r = with_base.route("anything", **kw)
    assert r.selected == pytest.approx(expected)
    assert r.probs == pytest.approx({"a": 0.3, "b": 0.15, "c": 0.05, BASE: 0.5})  # the base model is the last bar


def test_route_refuses_pinning_the_base_model(with_base):
    with pytest.raises(RouterError, match="cannot pin \\['base model'\\]"):
        with_base.route("x", pinned=[BASE])


def test_route_with_trained_router(router, data):
    r = router.route(data[1]["code_questions"][0], top_p=0.8)
    assert list(r.probs) == TASKS + [BASE] and max(r.selected, key=r.selected.get) == "code_questions"
    assert sum(r.selected.values()) == pytest.approx(1.0)


# ---------------------------------------------------------------------- CLI
def _cli(*argv):
    """The exit status of `switchboard router ARGV` (argparse refuses bad flag values itself)."""
    p = Parser()
    router_cmd.add_parser(p.add_subparsers(dest="command"))
    try:
        return router_cmd.run(p.parse_args(["router", *argv]))
    except SystemExit as e:
        return e.code


def test_cli_train_and_eval(data, tmp_path, capsys):
    write_folder({a: ps[:20] for a, ps in data[0].items()}, tmp_path / "train")
    write_folder(data[1], tmp_path / "test")
    out = tmp_path / "cli.safetensors"
    assert _cli("train", "--examples", str(tmp_path / "train"), "--out", str(out), "--epochs", "40") == 0
    text = capsys.readouterr().out
    assert "epoch 40/40" in text
    # 10% held out: 12 of the adapters' examples and 20 of the base class's 200 general-chat prompts
    assert float(re.search(r"held-out accuracy: (\d\.\d{4}) on 32 examples", text)[1]) >= 0.9
    assert _cli("eval", "--router", str(out), "--examples", str(tmp_path / "test")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"accuracy: \d\.\d{4}", lines[-1]) and float(lines[-1].split()[1]) >= 0.95
    assert any(line.startswith("gsm8k") for line in lines)


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jsonl").write_text('{"prompt": "x"}\n{oops\n')
    assert _cli("train", "--examples", str(tmp_path / "bad"), "--out", str(tmp_path / "r.safetensors")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.jsonl:2: invalid JSON" in err
    assert _cli("eval", "--router", str(tmp_path / "none.safetensors"), "--examples", str(tmp_path / "bad")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "router file not found" in err
