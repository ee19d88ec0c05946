"""GPU only (marked `gpu`, skipped without CUDA): CUDA-graph decode equals eager, also across in-place switches."""
import pytest
import torch

import engine.engine
from engine import Engine, RoutingEvent, TokenEvent
from engine.bench import engine_decode, run
from engine.context import router_context
from engine.decode import Decoder
from engine.router import Router

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def engines(model_dir, adapters=(), **load):
    """Two engines on the same float32 weights: one with the compiled step in CUDA graphs, one eager.
    Separate engines, so each has its own KV cache filled by its own prefill. load: more Engine.load options."""
    pair = []
    for compiled in (True, False):
        eng = Engine.load(model_dir, device="cuda", dtype="float32", **load)
        if not compiled:
            eng.decoder = Decoder(eng.device, compiled=False, graphs=False)
        for name, path in adapters:
            eng.add_adapter(path, name=name)
        if compiled:
            eng.warmup()
        pair.append(eng)
    return pair


def test_compiled_decode_equals_eager(llama_dir):
    compiled, eager = engines(llama_dir)
    prompt = torch.randint(0, 300, (1, 16), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    a = engine_decode(compiled, prompt, 64)[3]
    b = engine_decode(eager, prompt, 64)[3]
    assert a == b


@pytest.mark.parametrize("rows", [1, 3])
def test_switches_inside_cuda_graph_decode_equal_eager(llama_dir, llama_adapters, rows):
    compiled, eager = engines(llama_dir, llama_adapters.items())
    names = list(llama_adapters)
    prompt = torch.randint(0, 300, (rows, 16), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    if rows == 1:  # merged: weights rewritten in place between graph replays
        mixes = [{names[i % 4]: 0.6, names[(i + 1) % 4]: 0.4} for i in range(9)] + [None, {names[2]: 1.0}]
    else:  # gathered: per-row slot buffers rewritten in place
        mixes = [[{names[(i + r) % 4]: 1.0} for r in range(rows)] for i in range(11)]
    a = engine_decode(compiled, prompt, 64, list(mixes), switch_every=6)[3]
    b = engine_decode(eager, prompt, 64, list(mixes), switch_every=6)[3]
    assert a == b
    base = engine_decode(eager, prompt, 64)[3]
    assert a != base  # the switches really changed the output


def test_graphs_follow_penalty_batches_and_reallocated_caches(llama_dir):
    """generate() through captured graphs equals eager: with the repetition penalty (its seen-set is advanced
    inside the graph), for two rows, and after the KV caches were reallocated (graphs of the old caches are dropped)."""
    compiled, eager = engines(llama_dir)
    short = [{"role": "user", "content": "hello there"}]
    other = [{"role": "user", "content": "Sort the list 5, 3, 9, 1."}]
    for convs, kw in (([short], dict(repetition_penalty=1.3)), ([short, other], {}), ([short], {}),
                      ([other, short], dict(repetition_penalty=1.2))):
        a, b = (e.generate_batch(convs, max_new_tokens=40, ignore_eos=True, **kw) for e in (compiled, eager))
        assert [r["text"] for r in a] == [r["text"] for r in b]
    assert compiled.model.cache_version == 2  # the second request's two rows reallocated the caches


def test_replayed_switches_equal_the_cpu_engine(llama_dir, llama_adapters):
    """Merged switches on one GPU replay a captured graph per mix size: the logits after each switch (new
    sizes, replays, an adapter added in between) equal a CPU engine's under the same mix."""
    names = list(llama_adapters)
    gpu, cpu = (Engine.load(llama_dir, device=d, dtype="float32") for d in ("cuda", "cpu"))
    for eng in (gpu, cpu):
        for name in names[:3]:
            eng.add_adapter(llama_adapters[name], name=name)
    ids = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(2))
    mixes = [{names[0]: 1.0}, {names[1]: 0.7, names[2]: 0.3}, {names[0]: 0.2, names[2]: 0.8},
             {names[2]: 1.0}, "add", {names[3]: 0.5, names[0]: 0.5}, {names[1]: 0.3, names[3]: 0.7}]
    for mix in mixes:
        if mix == "add":
            for eng in (gpu, cpu):
                eng.add_adapter(llama_adapters[names[3]], name=names[3])
            continue
        a, b = gpu.logits(ids, mix).cpu(), cpu.logits(ids, mix)
        assert ((a - b).norm() / b.norm()).item() <= 1e-5, mix
    assert list(gpu.bank._switch_graphs) == [(2, gpu.bank.version)]  # graphs of the bank before the add: dropped


def test_routing_while_the_gpu_runs_equals_routing_afresh(llama_dir, llama_adapters, monkeypatch):
    """On CUDA a token's events are handed out after the next step is queued, and the router is run on the reply
    so far while the step runs (here at every step, however short): every sentence is still routed on its own
    context, as routing it afresh does."""
    monkeypatch.setattr(engine.engine, "WARM_WAIT", 0.0)
    eng = Engine.load(llama_dir, device="cuda", dtype="float32")
    for name, path in llama_adapters.items():
        eng.add_adapter(path, name=name)
    eng.router = Router.train({n: [f"{n} {w} question {i}" for i in range(12) for w in ("cat", "sum", "loop")]
                               for n in llama_adapters}, seed=0, epochs=10)
    eng.warmup()
    calls, probs = [], eng.router.probs
    eng.router.probs = lambda context: calls.append(context) or probs(context)
    messages = [{"role": "user", "content": " ".join(("cat", "dog", "sum", "loop", "the")[i % 5] for i in range(40))}]
    for seed in range(20):
        calls.clear()
        text, routed = "", []
        for ev in eng.generate(messages, max_new_tokens=100, ignore_eos=True, temperature=1.0, seed=seed):
            if isinstance(ev, RoutingEvent):
                expected = eng.router.route(router_context("turn", messages, text))
                routed.append(max(abs(ev.probs[n] - expected.probs[n]) for n in eng.router.labels))
            elif isinstance(ev, TokenEvent):
                text += ev.text
        if len(routed) >= 3:
            break
    assert len(routed) >= 3 and max(routed) < 1e-6
    assert len(calls) > 2 * len(routed)  # more than the engine's and this test's route of each sentence


def test_bench_smoke():
    res = run("tiny", adapters=4, runs=1, prompt_len=16, new=24, batch=2, log=lambda m: None)
    for key in ("engine_base_ms", "engine_fused_ms", "hf_eager_ms", "peft_single_ms", "switch_ms",
                "engine_batch_gathered_tok_s", "peft_batch_adapter_names_tok_s"):
        assert res[key] > 0, key


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("chosen", [3, 40])  # 40 x rank 12: more columns than one block of the kernel
def test_triton_merge_equals_reference(dtype, tol, chosen):
    from engine.merge import merge_into

    g = torch.Generator("cuda").manual_seed(0)
    stack = torch.randn(3, 700, 300, device="cuda", generator=g).to(dtype)   # a fused stack; write rows 100:612
    out = stack[:, 100:612]
    W0 = torch.randn(3, 512, 300, device="cuda", generator=g).to(dtype)
    B = torch.randn(3, 50, 512, 12, device="cuda", generator=g).to(dtype)    # 50 adapters of (padded) rank 12
    A = torch.randn(3, 50, 12, 300, device="cuda", generator=g).to(dtype)
    idx = torch.randperm(50, generator=torch.Generator().manual_seed(1))[:chosen].float().cuda()
    w = torch.rand(chosen, generator=torch.Generator().manual_seed(2)).cuda()
    w = w / w.sum()
    before = stack.clone()
    merge_into(out, W0, B, A, idx, w)
    ref = W0.double() + sum(wk * B[:, int(i)].double() @ A[:, int(i)].double() for i, wk in zip(idx.tolist(), w.tolist()))
    assert ((out.double() - ref).norm() / ref.norm()).item() <= tol
    assert torch.equal(stack[:, :100], before[:, :100]) and torch.equal(stack[:, 612:], before[:, 612:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_silu_mul_equals_torch(dtype):
    from engine.silu_mul import silu_mul

    h = (4 * torch.randn(2, 300, 2 * 1500, device="cuda", generator=torch.Generator("cuda").manual_seed(0))).to(dtype)
    gate, up = h.chunk(2, dim=-1)
    ref = torch.nn.functional.silu(gate) * up
    out = silu_mul(h)
    assert out.shape == ref.shape and out.dtype == dtype
    # Triton's exp is not bit-equal to torch's: float32 within a few ulps; bf16 at most one rounding step apart
    # where the float32 values straddle a rounding boundary, which nearly none do
    torch.testing.assert_close(out, ref, rtol=2 ** -7 if dtype == torch.bfloat16 else 1e-5, atol=1e-6)
    if dtype == torch.bfloat16:
        assert (out == ref).float().mean().item() > 0.99
