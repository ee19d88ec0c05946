"""GPU only (marked `gpu`, skipped without CUDA): CUDA-graph decode equals eager, also across in-place switches."""
import pytest
import torch

from engine import Engine
from engine.bench import engine_decode, run
from engine.decode import decode_one_token

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def engines(model_dir, adapters=()):
    """Two engines on the same float32 weights: one with the compiled (CUDA-graph) step, one eager.
    Separate engines, so each has its own KV cache filled by its own prefill."""
    pair = []
    for compiled in (True, False):
        eng = Engine.load(model_dir, device="cuda", dtype="float32")
        if not compiled:
            eng._step = decode_one_token
        for name, path in adapters:
            eng.add_adapter(path, name=name)
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


def test_bench_smoke():
    res = run("tiny", adapters=4, runs=1, prompt_len=16, new=24, batch=2, log=lambda m: None)
    for key in ("engine_base_ms", "engine_fused_ms", "hf_eager_ms", "peft_single_ms", "switch_ms",
                "engine_batch_gathered_tok_s", "peft_batch_adapter_names_tok_s"):
        assert res[key] > 0, key


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2)])
def test_triton_merge_equals_baddbmm(dtype, tol):
    from engine.merge import merge_into

    g = torch.Generator("cuda").manual_seed(0)
    stack = torch.randn(3, 700, 300, device="cuda", generator=g).to(dtype)   # a fused stack; write rows 100:612
    out = stack[:, 100:612]
    W0 = torch.randn(3, 512, 300, device="cuda", generator=g).to(dtype)
    b = torch.randn(3, 512, 24, device="cuda", generator=g).to(dtype)
    a = torch.randn(3, 24, 300, device="cuda", generator=g).to(dtype)
    before = stack.clone()
    merge_into(out, W0, b, a)
    ref = torch.baddbmm(W0.double(), b.double(), a.double())
    assert ((out.double() - ref).norm() / ref.norm()).item() <= tol
    assert torch.equal(stack[:, :100], before[:, :100]) and torch.equal(stack[:, 612:], before[:, 612:])
