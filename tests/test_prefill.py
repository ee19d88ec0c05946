"""Prefill at long context and the KV cache kept across a chat's turns (float32, CPU): logits equal Hugging
Face's for long and left-padded prompts, a follow-up prefills only its new tokens and replies as a full
prefill would, and the cache is dropped whenever it cannot be right."""
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine import DoneEvent, Engine, TokenEvent

from app.paths import DEMO_DIR
from conftest import make_model_dir


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("long"), "llama", max_position_embeddings=4096)


@pytest.fixture(scope="module")
def engine(long_dir):
    return Engine.load(long_dir, device="cpu")


@pytest.fixture(scope="module")
def demo():
    """The demo model, base only: a trained model whose replies are real words (a random model's byte soup does
    not survive decode + re-encode, so its follow-ups share little with the cache by construction)."""
    return Engine.load(DEMO_DIR / "model", device="cpu")


def reply(engine, messages, **kw):
    events = list(engine.generate(messages, **kw))
    assert isinstance(events[-1], DoneEvent)
    return "".join(e.text for e in events if isinstance(e, TokenEvent)), events[-1].stats


def test_long_prompt_logits_equal_hf(engine, long_dir):
    hf = AutoModelForCausalLM.from_pretrained(long_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    ids = torch.randint(0, hf.config.vocab_size, (1, 3000), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(ids).logits
    assert rel_err(engine.logits(ids), ref) <= 1e-5


def test_left_padded_batch_equals_hf(engine, long_dir):
    """Eval's batches: rows of different lengths, left-padded; each row's real positions equal HF's."""
    hf = AutoModelForCausalLM.from_pretrained(long_dir, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(4, hf.config.vocab_size, (n,), generator=g) for n in (700, 260, 5)]
    convs_ids = [r.tolist() for r in rows]
    longest = max(map(len, convs_ids))
    pad = torch.tensor([longest - len(r) for r in convs_ids])
    ids = torch.tensor([[0] * (longest - len(r)) + r for r in convs_ids])
    engine.model.setup_caches(len(rows), longest)
    with torch.inference_mode():
        got = engine.model(ids, 0, pad).float()
    for i, r in enumerate(rows):
        with torch.no_grad():
            ref = hf(r[None]).logits[0]
        assert rel_err(got[i, pad[i]:], ref) <= 1e-5


def test_follow_up_reuses_the_cache_and_replies_like_a_full_prefill(demo):
    fresh = Engine.load(DEMO_DIR / "model", device="cpu")
    turn1 = [{"role": "user", "content": "Reverse the word 'garden'."}]
    text1, s1 = reply(demo, turn1, max_new_tokens=20, reuse_cache=False)
    assert s1["cached_tokens"] == 0
    turn2 = turn1 + [{"role": "assistant", "content": text1},
                     {"role": "user", "content": "What is 47 kilometers in meters?"}]
    text2, s2 = reply(demo, turn2, max_new_tokens=20)
    ref2, r2 = reply(fresh, turn2, max_new_tokens=20, reuse_cache=False)
    assert text2 == ref2 and r2["cached_tokens"] == 0
    # the first turn's prompt and reply are reused; the last token of each is fed again (its KV is not cached)
    assert s1["prompt_tokens"] + s1["tokens"] - 3 <= s2["cached_tokens"] < s2["prompt_tokens"]
    # a third turn reuses the second
    turn3 = turn2 + [{"role": "assistant", "content": text2}, {"role": "user", "content": "Sort 3, 1, 2."}]
    _, s3 = reply(demo, turn3, max_new_tokens=8)
    assert s3["cached_tokens"] >= s2["prompt_tokens"]


def test_cache_dropped_after_regenerate_edit_and_adapter_change(demo):
    turn1 = [{"role": "user", "content": "Sort 5, 3, 9, 1."}]
    text1, _ = reply(demo, turn1, max_new_tokens=12, reuse_cache=False)
    turn2 = turn1 + [{"role": "assistant", "content": text1}, {"role": "user", "content": "Reverse the word hello."}]
    assert reply(demo, turn2, max_new_tokens=12)[1]["cached_tokens"] > 0             # the follow-up reuses
    assert reply(demo, turn2, max_new_tokens=12)[1]["cached_tokens"] == 0            # regenerate
    edited = [turn2[0], turn2[1], {"role": "user", "content": "Spell the word world."}]
    assert reply(demo, edited, max_new_tokens=12)[1]["cached_tokens"] == 0           # the last message edited
    text3, _ = reply(demo, edited, max_new_tokens=12)
    follow = edited + [{"role": "assistant", "content": text3}, {"role": "user", "content": "hi"}]
    demo.add_adapter(DEMO_DIR / "adapters" / "sort")
    try:
        assert reply(demo, follow, max_new_tokens=12)[1]["cached_tokens"] == 0       # the bank changed
    finally:
        demo.remove_adapter("sort")


def test_batch_calls_invalidate_the_chat_cache(demo):
    turn1 = [{"role": "user", "content": "Sort 5, 3, 9, 1."}]
    text1, _ = reply(demo, turn1, max_new_tokens=8, reuse_cache=False)
    demo.generate_batch([turn1, [{"role": "user", "content": "hi"}]], max_new_tokens=4)
    turn2 = turn1 + [{"role": "assistant", "content": text1}, {"role": "user", "content": "Reverse the word hello."}]
    assert reply(demo, turn2, max_new_tokens=4)[1]["cached_tokens"] == 0


def test_a_reply_abandoned_halfway_leaves_nothing_to_reuse(demo):
    turn1 = [{"role": "user", "content": "Sort 5, 3, 9, 1."}]
    text1, _ = reply(demo, turn1, max_new_tokens=12, reuse_cache=False)
    turn2 = turn1 + [{"role": "assistant", "content": text1}, {"role": "user", "content": "Reverse the word hello."}]
    for ev in demo.generate(turn2, max_new_tokens=12):  # a client that goes away mid-reply
        if isinstance(ev, TokenEvent):
            break
    assert reply(demo, turn2, max_new_tokens=12)[1]["cached_tokens"] == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU peak is read from /proc")
def test_long_workload_measures_time_and_memory_on_the_cpu(engine, long_dir):
    from engine.workloads import long

    hf = AutoModelForCausalLM.from_pretrained(long_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    row = long(engine, lambda: hf, lengths=(1024,), runs=1, log=lambda m: None)["lengths"][0]
    # a 1,024-token prompt's KV cache alone is 2 x layers x kv heads x head_dim x 1,024 float32 values
    a = engine.model.args
    kv = 2 * a.n_layers * a.n_kv_heads * a.head_dim * 1024 * 4 / 2**30
    assert row["engine_peak_extra_gib"] >= kv and row["hf_peak_extra_gib"] >= kv
    assert row["memory_ratio"] > 0 and row["ttft_ratio"] > 0
