"""Engine foundation: loading (and refusing) model folders, logits and greedy decoding equal Hugging Face's,
streaming controls (cancel, stop strings, max tokens) and context truncation."""
import json
import shutil
import subprocess
import sys
import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine import DoneEvent, Engine, ModelError, RoutingEvent, TokenEvent
from engine.errors import SwitchboardError
from engine.chat import build_prompt, render

from conftest import make_model_dir


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def reply(engine, messages, **kw):
    events = list(engine.generate(messages, **kw))
    assert isinstance(events[-1], DoneEvent)
    return "".join(e.text for e in events if isinstance(e, TokenEvent)), events[-1].stats, events


@pytest.fixture(scope="module")
def llama(llama_dir):
    return Engine.load(llama_dir, device="cpu")


# ---- loading -------------------------------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Engine.load(tmp_path / "nope")


def test_no_config(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        Engine.load(tmp_path)


def test_unsupported_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelError, match="unsupported architecture 'gpt2'"):
        Engine.load(tmp_path)


def test_pickle_weights_refused_unless_allowed(tmp_path, llama_dir):
    d = tmp_path / "m"
    shutil.copytree(llama_dir, d)
    state = AutoModelForCausalLM.from_pretrained(d).state_dict()
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    with pytest.raises(ModelError, match="pickle"):
        Engine.load(d, device="cpu")
    eng = Engine.load(d, device="cpu", allow_pickle=True)  # loaded with weights_only=True
    ref = Engine.load(llama_dir, device="cpu")
    ids = torch.arange(5)[None]
    assert torch.equal(eng.logits(ids), ref.logits(ids))


def test_broken_tokenizer(tmp_path, llama_dir):
    d = tmp_path / "m"
    shutil.copytree(llama_dir, d)
    (d / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="tokenizer"):
        Engine.load(d, device="cpu")


def test_truncated_weights(tmp_path, llama_dir):
    d = tmp_path / "m"
    shutil.copytree(llama_dir, d)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="safetensors"):
        Engine.load(d, device="cpu")


# ---- numerics: equal to Hugging Face ---------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["llama_dir", "qwen2_dir"])
def test_logits_equal_hf(arch, request):
    d = request.getfixturevalue(arch)
    eng = Engine.load(d, device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ids = torch.randint(0, hf.config.vocab_size, (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(ids).logits
    assert rel_err(eng.logits(ids, None), ref) <= 1e-5


def test_mistral_sliding_window_loads(tmp_path):
    d = make_model_dir(tmp_path / "mistral", "mistral", sliding_window=8)
    eng = Engine.load(d, device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ids = torch.randint(0, hf.config.vocab_size, (1, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(ids).logits
    assert rel_err(eng.logits(ids), ref) <= 1e-5


@pytest.mark.parametrize("arch", ["llama_dir", "llama_plain_dir", "qwen2_dir"])
def test_greedy_equals_hf_generate(arch, request):
    d = request.getfixturevalue(arch)
    eng = Engine.load(d, device="cpu")
    tok = AutoTokenizer.from_pretrained(d)
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "Translate to French: cat, dog, house."}]
    ids = build_prompt(tok, messages, 10_000)[0]
    if arch == "llama_plain_dir":
        assert ids == tok("User: Translate to French: cat, dog, house.\n\nAssistant:")["input_ids"]
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=30, do_sample=False)[0, len(ids):]
    text, stats, _ = reply(eng, messages, max_new_tokens=30)
    assert text == tok.decode(out, skip_special_tokens=True)
    assert stats["tokens"] == len([t for t in out.tolist() if t != tok.eos_token_id])


def test_batch_rows_equal_single_rows(llama):
    convs = [[{"role": "user", "content": "hi there"}],
             [{"role": "user", "content": "Reverse the word hello. Spell the word world, please."}]]
    single = [reply(llama, c, max_new_tokens=12)[0] for c in convs]
    batch = llama.generate_batch(convs, max_new_tokens=12)
    assert [r["text"] for r in batch] == single


# ---- streaming controls ------------------------------------------------------------------------------------
def test_events_and_stats(llama):
    text, stats, events = reply(llama, [{"role": "user", "content": "hello"}], max_new_tokens=16, ignore_eos=True)
    assert isinstance(events[0], RoutingEvent) and events[0].selected == {}
    assert stats["tokens"] == 16 and stats["stop_reason"] == "length"
    assert stats["ttft_ms"] > 0 and stats["tokens_per_s"] > 0


def test_cancel_from_another_thread(llama):
    events = llama.generate([{"role": "user", "content": "hello"}], max_new_tokens=200, ignore_eos=True)
    seen = 0
    for ev in events:
        if isinstance(ev, TokenEvent):
            seen += 1
            if seen == 3:
                t = threading.Thread(target=llama.cancel)
                t.start()
                t.join()
        if isinstance(ev, DoneEvent):
            break
    assert ev.stats["stop_reason"] == "cancel"
    assert ev.stats["tokens"] < 10  # promptly: far before max_new_tokens=200


def test_stop_string(llama):
    msgs = [{"role": "user", "content": "hello"}]
    full, _, _ = reply(llama, msgs, max_new_tokens=40, ignore_eos=True)
    stop = full[10:13]
    assert len(stop) == 3
    text, stats, _ = reply(llama, msgs, max_new_tokens=40, ignore_eos=True, stop=[stop])
    assert stats["stop_reason"] == "stop"
    assert text == full[: full.find(stop)]


def test_sampling_is_seeded_and_differs_from_greedy(llama):
    msgs = [{"role": "user", "content": "hello"}]
    kw = dict(max_new_tokens=24, ignore_eos=True, temperature=1.5, top_k=50, sample_top_p=0.95,
              repetition_penalty=1.3)
    a, _, _ = reply(llama, msgs, seed=1, **kw)
    b, _, _ = reply(llama, msgs, seed=1, **kw)
    g, _, _ = reply(llama, msgs, max_new_tokens=24, ignore_eos=True)
    assert a == b and a != g


# ---- context truncation ------------------------------------------------------------------------------------
def test_overflow_drops_oldest_turns(llama):
    tok = llama.tokenizer
    turns = [{"role": "system", "content": "be brief"}]
    for i in range(12):
        turns += [{"role": "user", "content": f"question {i} about the quick brown fox"},
                  {"role": "assistant", "content": f"answer {i} about the lazy dog"}]
    turns.append({"role": "user", "content": "last question"})
    budget = len(render(tok, turns)) // 3
    ids, dropped = build_prompt(tok, turns, budget)
    kept = [turns[0]] + turns[1 + dropped:]
    assert dropped > 0 and len(ids) <= budget and ids == render(tok, kept)
    assert kept[1]["role"] == "user" and kept[-1]["content"] == "last question"
    old = llama.context_len
    llama.context_len = budget + 8
    try:
        _, stats, _ = reply(llama, turns, max_new_tokens=8)
    finally:
        llama.context_len = old
    assert stats["dropped_turns"] == dropped


def test_continuing_a_reply_ends_the_prompt_with_the_reply_so_far(llama):
    tok = llama.tokenizer
    turns = [{"role": "user", "content": "Count to ten."}, {"role": "assistant", "content": "One, two, three,"}]
    ids, dropped = build_prompt(tok, turns, 10_000, continue_reply=True)
    assert dropped == 0
    assert ids == render(tok, turns[:1]) + tok("One, two, three,", add_special_tokens=False)["input_ids"]
    with pytest.raises(SwitchboardError, match="ends with the assistant's reply"):
        build_prompt(tok, turns[:1], 10_000, continue_reply=True)
    text, stats, _ = reply(llama, turns, max_new_tokens=4, continue_reply=True)
    assert stats["tokens"] >= 1 and stats["prompt_tokens"] == len(ids)


def test_engine_never_imports_qt():
    code = ("import importlib, pkgutil, sys, engine\n"
            "for m in pkgutil.iter_modules(engine.__path__): importlib.import_module('engine.' + m.name)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph')]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_bad_fixed_mix_is_refused_before_any_event(llama):
    from engine import AdapterError

    for mix, message in (({"nosuch": 1.0}, "nosuch"), ({}, None)):
        if message is None:  # an empty mix is the base model
            assert isinstance(next(iter(llama.generate([{"role": "user", "content": "hi"}], mix=mix,
                                                       max_new_tokens=8))), RoutingEvent)
            continue
        with pytest.raises(AdapterError, match=message):
            next(iter(llama.generate([{"role": "user", "content": "hi"}], mix=mix, max_new_tokens=8)))


@pytest.mark.parametrize("device,message", [("bogus", "unknown device"), ("mps", "not supported"),
                                            ("cuda:7", "CUDA")])
def test_bad_devices_are_refused_clearly(llama_dir, device, message):
    with pytest.raises(ModelError, match=message):
        Engine.load(llama_dir, device=device)
