"""The bundled demo (resources/demo, built by packaging/build_demo.py) loads and answers its tasks: alone, as
follow-ups in a conversation, and two in one message (one per line, the router switching adapters between them);
small talk goes to the base model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
TASKS = sorted(p.stem for p in (DEMO / "tasks").glob("*.jsonl"))
PER_TASK = 10  # held-out prompts checked per task
EXACT = 0.9  # the share of them answered exactly (the bundle's README: 0.93-1.00 per task on all 100)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def chat_prompt(tok, prompt):
    """The text the app sends for a one-turn chat."""
    return tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)


@torch.no_grad()
def greedy(model, tok, prompt, max_new_tokens=40):
    ids = tok(chat_prompt(tok, prompt), add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def load_bundle(root):
    """Base model (float32) with every adapter of the bundle loaded through PEFT, and the tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(root / "model")
    base = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.float32).eval()
    names = sorted(p.name for p in (root / "adapters").iterdir())
    model = PeftModel.from_pretrained(base, root / "adapters" / names[0], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(root / "adapters" / name, adapter_name=name)
    return model.eval(), tok, names


@pytest.fixture(scope="module")
def demo():
    return load_bundle(DEMO)


def test_bundle_has_every_part_and_fits_in_25_mb():
    assert 5 <= len(TASKS) <= 8, TASKS
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json"):
        assert (DEMO / "model" / name).is_file(), name
    for task in TASKS:
        for name in ("adapter_config.json", "adapter_model.safetensors", "examples.jsonl"):
            assert (DEMO / "adapters" / task / name).is_file(), f"{task}/{name}"
    assert json.loads((DEMO / "router.json").read_text())["adapters"] == TASKS
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"demo bundle is {size / 2**20:.1f} MB"


@pytest.mark.parametrize("task", TASKS)
def test_examples_and_held_out_prompts_are_disjoint(task):
    examples = [row["prompt"] for row in read_jsonl(DEMO / "adapters" / task / "examples.jsonl")]
    held_out = read_jsonl(DEMO / "tasks" / f"{task}.jsonl")
    assert len(examples) >= 100 and len(held_out) >= 100
    assert all(row["prompt"] and row["response"] for row in held_out)
    assert not set(examples) & {row["prompt"] for row in held_out}


def test_chat_template_ends_turns_with_eos(demo):
    _, tok, _ = demo
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                   tokenize=False)
    assert text == f"<|user|>hi{tok.eos_token}<|assistant|>yo{tok.eos_token}"
    assert chat_prompt(tok, "hi").endswith("<|assistant|>")


@pytest.mark.parametrize("task", TASKS)
def test_adapter_answers_held_out_prompts(demo, task):
    model, tok, _ = demo
    model.set_adapter(task)
    rows = read_jsonl(DEMO / "tasks" / f"{task}.jsonl")[:PER_TASK]
    wrong = [(row["prompt"], got) for row in rows if (got := greedy(model, tok, row["prompt"])) != row["response"]]
    assert len(rows) - len(wrong) >= EXACT * len(rows), wrong


def test_base_model_does_not_solve_the_tasks(demo):
    model, tok, _ = demo
    rows = [row for task in TASKS for row in read_jsonl(DEMO / "tasks" / f"{task}.jsonl")[:PER_TASK]]
    with model.disable_adapter():
        hits = sum(greedy(model, tok, row["prompt"]) == row["response"] for row in rows)
    assert hits <= len(rows) // 3, f"base model solved {hits} of {len(rows)}"


@pytest.fixture(scope="module")
def eng():
    """The app's path: Engine.load + add_adapter + load_router."""
    from engine import Engine

    eng = Engine.load(DEMO / "model", device="cpu", dtype="float32")
    for task in TASKS:
        eng.add_adapter(DEMO / "adapters" / task)
    eng.load_router(DEMO / "router.safetensors")
    return eng


def leader(routing):
    return max(routing.selected, key=routing.selected.get)


def test_engine_answers_held_out_prompts_when_routed(eng):
    """Each row routed by the router (top-p 0.8): every one to its task's adapter first."""
    for task in TASKS:
        rows = read_jsonl(DEMO / "tasks" / f"{task}.jsonl")[:PER_TASK]
        out = eng.generate_batch([[{"role": "user", "content": row["prompt"]}] for row in rows], max_new_tokens=40)
        for row, got in zip(rows, out):
            assert leader(got["routing"][0]) == task, (row["prompt"], got["routing"][0].selected)
        wrong = [(row["prompt"], got["text"]) for row, got in zip(rows, out) if got["text"].strip() != row["response"]]
        assert len(rows) - len(wrong) >= EXACT * len(rows), wrong


def test_bundle_has_two_task_prompts_small_talk_and_a_base_class():
    assert json.loads((DEMO / "router.json").read_text())["base"] is True
    assert len(read_jsonl(DEMO / "small_talk.jsonl")) >= 20
    two = read_jsonl(DEMO / "two_tasks.jsonl")
    assert {tuple(r["tasks"]) for r in two} == {(a, b) for a in TASKS for b in TASKS if a != b}
    from engine.router import Router

    assert Router.load(DEMO / "router.safetensors").labels == TASKS + ["base model"]


@pytest.fixture(scope="module")
def chats(eng):
    """Chats A, B, A with the model's own replies, one chat after another as the app runs them (each turn's
    earlier turns come from the KV cache, computed under their own adapters); the issue's example first
    (reverse, then units). -> [(chat, replies)]"""
    from engine import evaluate

    rows = {t: read_jsonl(DEMO / "tasks" / f"{t}.jsonl") for t in TASKS}
    garden = [("reverse", {"prompt": "Reverse the word 'garden'.", "response": "nedrag"}),
              ("units", {"prompt": "What is 47 kilometers in meters?", "response": "47000 meters"})]
    chats = [garden] + [[(a, rows[a][i]), (b, rows[b][i]), (a, rows[a][i + 1])]
                        for i, (a, b) in enumerate([("units", "arithmetic"), ("sort", "translate"),
                                                    ("dates", "number_words")])]
    return list(zip(chats, evaluate.converse(eng, chats, "routed", batch=1)))


def test_follow_ups_on_another_task_and_back_are_routed_on_their_own_turn(chats):
    """The default routing context: each turn is routed on its own message, not outvoted by the turn before."""
    for chat, turns in chats:
        for i, ((task, ex), reply) in enumerate(zip(chat, turns)):
            assert leader(reply["routing"][0]) == task and reply["routing"][0].context == ex["prompt"], chat
            assert (reply["stats"]["cached_tokens"] > 0) == (i > 0)


def test_follow_ups_on_another_task_and_back_are_answered(chats):
    for chat, turns in chats:
        for (task, ex), reply in zip(chat, turns):
            assert reply["text"].strip() == ex["response"], (chat, ex["prompt"], reply["text"])


def test_two_tasks_in_one_message_switch_adapters_at_the_line_break(eng):
    """The router leads with the first task's adapter and switches to the second's at the line break (the
    position features tell which request comes first); routed per sentence, the whole two-line answer is exact
    far more often than under the first sentence's routing kept for the whole reply (docs/PERFORMANCE.md: 0.33
    against 0.00 on these 126 prompts)."""
    from engine import BASE

    two = read_jsonl(DEMO / "two_tasks.jsonl")
    convs = [[{"role": "user", "content": r["prompt"]}] for r in two]
    out = eng.generate_batch(convs, max_new_tokens=48)
    switched = [[leader(r) for r in got["routing"][:2]] == row["tasks"] for row, got in zip(two, out)]
    assert sum(switched) >= 0.95 * len(two)
    once = eng.generate_batch(convs, max_new_tokens=48, mixes=[
        {k: w for k, w in got["routing"][0].selected.items() if k != BASE} for got in out])
    exact, exact_once = (sum(got["text"].strip() == row["response"] for row, got in zip(two, o)) for o in (out, once))
    assert exact >= 0.25 * len(two) and exact - exact_once >= 0.2 * len(two), (exact, exact_once)


def test_small_talk_is_answered_by_the_base_model(eng):
    """Abstention: the demo's small talk (prompts unlike the router's base-class training set,
    engine/general_chat.py) is answered as the base model answers it, at least 80 % of it: the router picks the
    base model alone for most, and a mix whose reply is still the base model's for some."""
    from engine import BASE

    talk = [[{"role": "user", "content": r["prompt"]}] for r in read_jsonl(DEMO / "small_talk.jsonl")]
    routed = eng.generate_batch(talk, max_new_tokens=40)
    base = eng.generate_batch(talk, mixes=[None] * len(talk), max_new_tokens=40)
    same = [r["text"] == b["text"] for r, b in zip(routed, base)]
    alone = [r["routing"][0].selected == {BASE: 1.0} for r in routed]
    assert sum(same) >= 0.8 * len(talk) and sum(alone) >= 0.6 * len(talk)
    assert all(s for s, a in zip(same, alone) if a)


def test_router_sends_held_out_prompts_to_their_adapter():
    from engine.router import Router

    router = Router.load(DEMO / "router.safetensors", adapters=TASKS)
    for task in TASKS:
        for row in read_jsonl(DEMO / "tasks" / f"{task}.jsonl")[:PER_TASK]:
            probs = router.route(row["prompt"]).probs
            assert max(probs, key=probs.get) == task, (row["prompt"], probs)


@pytest.mark.slow
def test_quick_build_writes_a_loadable_bundle(tmp_path):
    """`build_demo.py --quick` (what CI runs, under 2 minutes) writes a bundle that transformers + PEFT load."""
    out = tmp_path / "demo"
    subprocess.run([sys.executable, str(ROOT / "packaging" / "build_demo.py"), "--quick", "--out", str(out)],
                   check=True, cwd=ROOT, capture_output=True, text=True)
    model, tok, names = load_bundle(out)
    assert 5 <= len(names) <= 8 and names == sorted(p.stem for p in (out / "tasks").glob("*.jsonl"))
    assert sorted(json.loads((out / "router.json").read_text())["adapters"]) == names
    assert (out / "README.md").is_file() and (out / "router.safetensors").is_file()
    assert read_jsonl(out / "two_tasks.jsonl") and read_jsonl(out / "small_talk.jsonl")
    for name in names:
        assert read_jsonl(out / "tasks" / f"{name}.jsonl") and read_jsonl(out / "adapters" / name / "examples.jsonl")
    ids = tok(chat_prompt(tok, "Hello!"), return_tensors="pt")["input_ids"]
    model.set_adapter(names[0])
    with torch.no_grad():
        adapted = model(input_ids=ids).logits  # [1, T, V]
        with model.disable_adapter():
            base = model(input_ids=ids).logits
    assert adapted.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(adapted).all()
    assert not torch.allclose(adapted, base)  # the trained adapter changes the model
