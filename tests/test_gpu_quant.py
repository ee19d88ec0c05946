"""GPU only (marked `gpu`, skipped without CUDA): quantized models decode through the captured CUDA graph exactly as
eagerly, also across in-place adapter switches; their fused logits equal the dequantized reference; loading
quantizes layer by layer; the quantized bench rows run."""
import pytest
import torch

from engine import Engine
from engine.bench import engine_decode, run

from test_gpu import engines
from test_lora import MIXES, reference_logits, rel_err
from test_quant import dequantized_hf

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
KINDS = ["int8", "int4"]


@pytest.mark.parametrize("kind", KINDS)
def test_quantized_decode_through_the_graph_equals_eager(llama_dir, kind):
    compiled, eager = engines(llama_dir, quantize=kind)
    prompt = torch.randint(0, 300, (1, 16), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    assert engine_decode(compiled, prompt, 64)[3] == engine_decode(eager, prompt, 64)[3]
    rows = prompt.repeat(3, 1)  # several rows: the int8 layers take their matmul form
    assert engine_decode(compiled, rows, 32)[3] == engine_decode(eager, rows, 32)[3]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [1, 3])
def test_switches_on_a_quantized_model_inside_the_graph_equal_eager(llama_dir, llama_adapters, kind, rows):
    compiled, eager = engines(llama_dir, llama_adapters.items(), quantize=kind)
    names = list(llama_adapters)
    prompt = torch.randint(0, 300, (rows, 16), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    if rows == 1:
        mixes = [{names[i % 4]: 0.6, names[(i + 1) % 4]: 0.4} for i in range(9)] + [None, {names[2]: 1.0}]
    else:
        mixes = [[{names[(i + r) % 4]: 1.0} for r in range(rows)] for i in range(11)]
    a = engine_decode(compiled, prompt, 64, list(mixes), switch_every=6)[3]
    b = engine_decode(eager, prompt, 64, list(mixes), switch_every=6)[3]
    assert a == b
    assert a != engine_decode(eager, prompt, 64)[3]  # the switches really changed the output
    assert compiled.bank.mode == "gathered"


@pytest.mark.parametrize("kind, tol", [("int8", 1e-4), ("int4", 2e-2)])  # int4's kernel takes bf16 activations
def test_fused_logits_equal_the_dequantized_reference_on_cuda(llama_dir, llama_adapters, kind, tol):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    eng = Engine.load(llama_dir, device="cuda", dtype="float32", quantize=kind)
    for name, path in llama_adapters.items():
        eng.add_adapter(path, name=name)
    def hf():
        return AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).cuda().eval()

    names = list(llama_adapters)
    # PEFT wraps the model it is given in place: the reference starts from a model of its own
    peft_model = PeftModel.from_pretrained(hf(), llama_adapters[names[0]], adapter_name=names[0])
    for n in names[1:]:
        peft_model.load_adapter(llama_adapters[n], adapter_name=n)
    reference = dequantized_hf(hf(), eng)
    ids = torch.randint(0, 300, (2, 13), device="cuda", generator=torch.Generator("cuda").manual_seed(2))
    for mix in MIXES:
        assert rel_err(eng.logits(ids, mix), reference_logits(reference, peft_model, ids, mix)) <= tol, mix


def test_loading_never_holds_the_float_model_on_the_gpu(tmp_path):
    from conftest import make_model_dir

    model_dir = make_model_dir(tmp_path / "m", "llama", hidden_size=512, intermediate_size=1024, num_hidden_layers=16)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    eng = Engine.load(model_dir, device="cuda", dtype="float32", quantize="int8")
    peak = torch.cuda.max_memory_allocated() - start
    float_bytes = 4 * sum(i * o for i, o in eng.module_shapes().values())  # the layers' linears in float32
    assert eng.quantize == "int8" and peak < float_bytes / 2  # int8 is a quarter; one fused weight in float on top


def test_quantized_bench_rows():
    res = run("tiny", adapters=4, runs=1, prompt_len=16, new=24, batch=2, peft=False, quantize=tuple(KINDS),
              log=lambda m: None)
    for kind in KINDS:
        row = res["quantized"][kind]
        for key in ("base_ms", "fused_ms", "switch_ms", "weights_bytes", "bank_bytes", "kv_bytes_8k",
                    "cuda_held_bytes_8k", "cuda_peak_bytes_8k", "batch_tok_s"):
            assert row[key] > 0, (kind, key)
        assert row["cuda_peak_bytes_8k"] >= row["cuda_held_bytes_8k"] >= row["weights_bytes"] + row["kv_bytes_8k"]
