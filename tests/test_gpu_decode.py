"""GPU only (marked `gpu`): the decode path under real chats. Sampling inside captured CUDA graphs at real
vocabulary sizes follows the distribution and a seed reproduces it; a conversation that crosses several cache
sizes and batches of other sizes compile nothing after warm-up and equal eager; prefill in bf16 equals Hugging
Face's within its own bf16 error; an out-of-memory error mid-reply ends the reply and leaves the engine usable."""
import pytest
import torch

from engine import DoneEvent, Engine, TokenEvent
from engine.decode import Decoder
from engine.sampling import Sampling, sample
from engine.workloads import synthetic_tokenizer

from conftest import make_adapter_dir, make_model_dir
from test_decode import conversation_and_batches, expected, fixed_logits

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def vocab_model(path, arch, vocab):
    """Two small layers, a real vocabulary, and a tokenizer of exactly that size."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    cfg_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
    cfg = cfg_cls(vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=1,
                  eos_token_id=2, pad_token_id=3, tie_word_embeddings=arch == "qwen2")
    torch.manual_seed(0)
    model_cls(cfg).save_pretrained(path)
    synthetic_tokenizer(vocab).save_pretrained(path)
    return path


@pytest.mark.parametrize("vocab", [128_256, 151_936])
def test_sampling_inside_a_captured_graph_follows_the_distribution(vocab):
    logits, hot = fixed_logits(vocab)
    rows, replays = 256, 80
    x = logits.cuda().expand(rows, vocab).contiguous()
    for temperature, top_k, top_p in ((1.0, 0, 1.0), (0.7, 8, 0.9), (1.0, 0, 0.8)):
        params = Sampling(temperature, top_k, top_p).tensors("cuda")
        out = torch.zeros(rows, dtype=torch.long, device="cuda")
        graph = torch.cuda.CUDAGraph()
        sample(x, None, params, greedy=False)  # warm outside the capture
        with torch.cuda.graph(graph):
            out.copy_(sample(x, None, params, greedy=False))
        torch.manual_seed(5)
        counts = torch.zeros(vocab, dtype=torch.float64, device="cuda")
        for _ in range(replays):
            graph.replay()
            counts += torch.bincount(out, minlength=vocab)
        freq = (counts / (rows * replays)).cpu()
        ref = expected(logits, temperature, top_k, top_p)
        assert freq[ref == 0].sum() == 0
        f, r = grouped(freq, ref)
        se = (r * (1 - r) / (rows * replays)).sqrt()
        assert ((f - r).abs() <= 4.5 * se + 1e-4).all(), (temperature, top_k, top_p)


def grouped(freq, ref):
    """-> (freq, ref) summed per group: each token of probability >= 1e-3 alone, the other kept ones (here tens
    of thousands, each drawn a few times at most: a bound per token fails for a perfect sampler about a third of
    the time) in 8 groups of equal size by probability, the last of them at top-p's boundary."""
    order = ref.argsort(descending=True)
    order = order[ref[order] > 0]
    rest = order[ref[order] < 1e-3]
    groups = [t[None] for t in order[ref[order] >= 1e-3]] + [g for g in torch.tensor_split(rest, 8) if len(g)]
    return torch.stack([freq[g].sum() for g in groups]), torch.stack([ref[g].sum() for g in groups])


@pytest.mark.parametrize("vocab", [128_256, 151_936])
def test_sampling_draws_exactly_the_top_k_top_p_set(vocab):
    """Nuclei of a few to a few hundred tokens among a real vocabulary, each kept token likely enough to be drawn
    in 8,192 draws: the tokens drawn are exactly the set the sorted textbook form keeps."""
    gen = torch.Generator().manual_seed(vocab)
    for temperature, top_k, top_p, spread in ((1.0, 0, 0.9, 0.5), (0.7, 0, 0.6, 1.0), (1.0, 40, 0.99, 0.2),
                                              (1.3, 7, 1.0, 1.0), (0.9, 0, 0.3, 2.0)):
        logits = torch.randn(vocab, generator=gen) * spread - 30.0
        logits[torch.randperm(vocab, generator=gen)[:300]] = torch.randn(300, generator=gen) * spread
        ref = expected(logits, temperature, top_k, top_p)
        assert ref[ref > 0].min() * 8192 > 12  # every kept token expected a dozen times: missed with p < 1e-5
        params = Sampling(temperature, top_k, top_p).tensors("cuda")
        drawn = torch.zeros(vocab, dtype=torch.bool)
        for _ in range(4):
            drawn[sample(logits.cuda().expand(2048, vocab).contiguous(), None, params, greedy=False).cpu()] = True
        assert torch.equal(drawn, ref > 0), (temperature, top_k, top_p, int(drawn.sum()), int((ref > 0).sum()))


@pytest.mark.parametrize("vocab", [128_256, 151_936])
def test_argmax_kernel_is_torch_argmax_and_sampling_skips_impossible_tokens(vocab):
    """The first largest value, as torch.argmax, ties included; rows where most of the vocabulary is -inf
    (a masked vocabulary) sample only from the rest."""
    from engine.argmax import argmax

    x = torch.randn(6, vocab, device="cuda") * 4
    x[1, [7, vocab - 1]] = 100.0                    # a tie: the first wins
    x[2, [vocab - 2, vocab - 1]] = 100.0
    x[3, 1000:] = float("-inf")
    assert torch.equal(argmax(x), x.argmax(-1))
    allowed = torch.zeros(vocab, dtype=torch.bool, device="cuda")
    allowed[torch.randperm(vocab, device="cuda")[:50]] = True
    masked = torch.where(allowed, torch.randn(vocab, device="cuda"), float("-inf")).expand(512, vocab).contiguous()
    for settings in (Sampling(1.0), Sampling(0.7, top_k=40, top_p=0.95), Sampling(1.5, top_p=0.5)):
        assert allowed[sample(masked, None, settings.tensors("cuda"), greedy=False)].all()


@pytest.mark.parametrize("arch,vocab", [("llama", 128_256), ("qwen2", 151_936)])
def test_sampled_replies_at_real_vocabularies_are_seeded(tmp_path, arch, vocab):
    eng = Engine.load(vocab_model(tmp_path / arch, arch, vocab), device="cuda", dtype="bfloat16")
    eng.warmup()
    msgs = [{"role": "user", "content": "hello there"}]
    for kw in (dict(temperature=0.7), dict(temperature=1.0, top_k=40), dict(temperature=0.8, sample_top_p=0.9),
               dict(temperature=0.9, top_k=50, sample_top_p=0.95, repetition_penalty=1.2)):
        a, b, c = ("".join(e.text for e in eng.generate(msgs, max_new_tokens=48, ignore_eos=True, seed=s, **kw)
                           if isinstance(e, TokenEvent)) for s in (1, 1, 2))
        assert a == b and a != c, kw


def test_growing_conversation_compiles_nothing_after_warm_up_and_equals_eager(tmp_path):
    from torch._dynamo.utils import counters

    d = make_model_dir(tmp_path / "m", "llama", max_position_embeddings=2048)
    pair = []
    for compiled in (True, False):
        eng = Engine.load(d, device="cuda", dtype="float32")
        if not compiled:
            eng.decoder = Decoder(eng.device, compiled=False, graphs=False)
        for i, name in enumerate("ab"):
            eng.add_adapter(make_adapter_dir(tmp_path / f"{name}{compiled}", d, seed=i), name=name)
        pair.append(eng)
    compiled, eager = pair
    compiled.warmup()
    graphs = counters["stats"]["unique_graphs"]
    assert conversation_and_batches(compiled) == conversation_and_batches(eager)
    assert counters["stats"]["unique_graphs"] == graphs


def test_demo_chats_in_bf16_through_the_compiled_step_answer_as_float32_on_the_cpu():
    """bf16 runs the decode attention kernel (engine/decode_attention.py), in the compiled layer's graphs. On the
    trained demo model greedy choices are clear (random weights tie too often for bf16 to agree with float32);
    four-turn chats cross the 256-slot attention view."""
    from engine import evaluate
    from test_demo import DEMO, TASKS, read_jsonl

    rows = {t: read_jsonl(DEMO / "tasks" / f"{t}.jsonl") for t in TASKS}
    chats = [[(a, rows[a][i]), (b, rows[b][i]), (a, rows[a][i + 1]), (b, rows[b][i + 1])]
             for i, (a, b) in enumerate(zip(TASKS, TASKS[1:] + TASKS[:1]))]
    replies = []  # per engine: every turn's reply
    for device, dtype in (("cuda", "bfloat16"), ("cpu", "float32")):
        eng = Engine.load(DEMO / "model", device=device, dtype=dtype)
        for task in TASKS:
            eng.add_adapter(DEMO / "adapters" / task)
        eng.load_router(DEMO / "router.safetensors")
        eng.warmup()
        turns = evaluate.converse(eng, chats, "routed", batch=1)
        replies.append([r["text"].strip() for chat in turns for r in chat])
        if device == "cuda":  # slots filled by the last turn
            assert max(r["stats"]["prompt_tokens"] + r["stats"]["tokens"] for chat in turns for r in chat) > 256
    # where float32 answers right the logits are clear and bf16 must answer the same; a failing reply runs into
    # a loop of near ties ("millllili..."), where any rounding picks another letter
    right = [i for i, ((_, ex), got) in enumerate(zip((t for chat in chats for t in chat), replies[1]))
             if got == ex["response"]]
    assert len(right) >= len(replies[1]) // 2
    assert [replies[0][i] for i in right] == [replies[1][i] for i in right]


@pytest.mark.parametrize("g", [1, 4, 6])
@pytest.mark.parametrize("rows,view", [(1, 256), (1, 8192), (3, 1040)])
def test_decode_attention_kernel_within_the_written_out_forms_error(monkeypatch, rows, view, g):
    """The kernel against float64, next to the written-out form it replaces: views into a longer cache, rows
    with left padding and rows that see a few slots only."""
    from engine import decode_attention
    from engine.transformer import attention

    gen = torch.Generator("cuda").manual_seed(view + g)
    nkv, hd = 2, 128
    q = torch.randn(rows, nkv * g, 1, hd, device="cuda", generator=gen).bfloat16()
    k_cache, v_cache = (torch.randn(rows, nkv, view + 17, hd, device="cuda", generator=gen).bfloat16()
                        for _ in range(2))
    k, v = k_cache[:, :, :view], v_cache[:, :, :view]
    first, last = torch.tensor([0, 7, 0][:rows]), torch.tensor([view - 5, view // 3, 2][:rows])
    s = torch.arange(view)
    mask = ((s >= first[:, None]) & (s <= last[:, None]))[:, None, None].cuda()    # (rows, 1, 1, view)
    kk, vv = (t.double().repeat_interleave(g, 1) for t in (k, v))
    scores = (q.double() @ kk.transpose(-1, -2) * hd ** -0.5).masked_fill(~mask, float("-inf"))
    ref = scores.softmax(-1) @ vv                                                   # (rows, nh, 1, hd)
    err = lambda y: ((y.double() - ref).norm() / ref.norm()).item()  # noqa: E731
    kernel = decode_attention.decode_attention(q, k, v, mask)
    assert kernel.shape == q.shape and kernel.dtype == q.dtype
    monkeypatch.setattr(decode_attention, "usable", lambda q: False)
    written = attention(q, k, v, mask)
    assert err(kernel) <= 1.1 * err(written) + 1e-4, (err(kernel), err(written))


def test_decode_attention_compiles_once_for_every_view_length():
    """Triton would compile its kernels again for a view length, range count or mask stride that is or is not a
    multiple of 16 (and the merge for each power of two of the ranges): a conversation reaching a new view would
    wait for a compile. After the first call no other length compiles anything."""
    from engine import decode_attention

    nkv, g, hd = 2, 3, 64  # a head layout no other test uses: its kernels are compiled here first
    kernels = (decode_attention._partials, decode_attention._merge)
    compiled = lambda: [sum(len(c[0]) for c in k.device_caches.values()) for k in kernels]  # noqa: E731
    cache = torch.randn(2, nkv, 8192 + 16, hd, device="cuda").bfloat16()
    before = None
    for rows, view in [(1, 256), (1, 511), (2, 1040), (1, 2047), (2, 4096), (1, 8191)]:
        q = torch.randn(rows, nkv * g, 1, hd, device="cuda").bfloat16()
        mask = torch.ones(rows, 1, 1, view, dtype=torch.bool, device="cuda")
        decode_attention.decode_attention(q, cache[:rows, :, :view], cache[:rows, :, :view], mask)
        before = before or compiled()
        assert compiled() == before, (rows, view)


@pytest.mark.parametrize("arch", ["llama_dir", "qwen2_dir"])
def test_bf16_prefill_within_hf_own_bf16_error(arch, tmp_path):
    from transformers import AutoModelForCausalLM

    d = make_model_dir(tmp_path / arch, arch.removesuffix("_dir"), max_position_embeddings=4096)
    ids = torch.randint(4, 400, (1, 3000), generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).cuda().eval()(ids).logits[0, -1]
        hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16).cuda().eval()(ids).logits[0, -1].float()
    eng = Engine.load(d, device="cuda", dtype="bfloat16")
    ours = eng.logits(ids)[0, -1]
    hf_err = ((hf - ref).norm() / ref.norm()).item()
    assert ((ours - ref).norm() / ref.norm()).item() <= max(1.5 * hf_err, 1e-2)


def test_out_of_memory_mid_reply_ends_the_reply_and_keeps_the_engine(tmp_path):
    d = vocab_model(tmp_path / "m", "llama", 128_256)
    eng = Engine.load(d, device="cuda", dtype="bfloat16")
    msgs = [{"role": "user", "content": "hello there"}]
    ok = list(eng.generate(msgs, max_new_tokens=8))[-1]
    assert ok.stats["stop_reason"] in ("length", "eos")
    total = torch.cuda.get_device_properties(0).total_memory
    used = torch.cuda.memory_allocated()
    torch.cuda.set_per_process_memory_fraction((used + 64 * 2**20) / total)   # 64 MiB of room
    try:
        rows = [msgs] * 64
        out = eng.generate_batch(rows, max_new_tokens=2000, ignore_eos=True)  # a 64-row KV cache of 2K tokens
        assert all(r["stop_reason"] == "error" and "out of memory" in r["stats"]["error"] for r in out)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    again = list(eng.generate(msgs, max_new_tokens=8))
    assert isinstance(again[-1], DoneEvent) and again[-1].stats["stop_reason"] in ("length", "eos")

