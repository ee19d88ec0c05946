"""Quantized base models on the CPU: int8 / int4 layers quantize within half a step, a quantized model with fused
adapters equals (its dequantized weights + PEFT's deltas, applied unmerged) in float32, switching reuses its
buffers, and bad requests are refused."""
import copy

import pytest
import torch

from engine import Engine, ModelError, SwitchboardError
from engine.quant import Int4Linear, Int8Linear, QuantizedLinear, quantized_linear
from engine.transformer import FUSED

from test_lora import MIXES, engine_with, hf_base, peft_model, reference_logits, rel_err  # noqa: F401 - fixtures


def dequantized(module: QuantizedLinear) -> torch.Tensor:
    """The float weight [out, in] the module computes with."""
    if isinstance(module, Int8Linear):
        return module.qweight.float() * module.scale.float()[:, None]
    eye = torch.eye(module.in_features, dtype=module.compute_dtype, device=module.device)
    return module.matmul(eye).float().T  # column j is W @ e_j: the kernel's own dequantization


def step(module: QuantizedLinear) -> torch.Tensor:
    """The quantization step of every weight [out, in]."""
    if isinstance(module, Int8Linear):
        return module.scale.float()[:, None].expand(module.out_features, module.in_features)
    return module.scales_zeros[..., 0].float().T.repeat_interleave(module.group, dim=1)


@pytest.mark.parametrize("kind, d_in, d_out, layer, group", [
    ("int8", 64, 48, Int8Linear, None), ("int4", 4096, 64, Int4Linear, 128), ("int4", 192, 32, Int4Linear, 64),
    ("int4", 96, 16, Int4Linear, 32), ("int4", 128, 263, Int8Linear, None), ("int4", 48, 32, Int8Linear, None)])
def test_layers_round_every_weight_to_its_nearest_level(kind, d_in, d_out, layer, group):
    torch.manual_seed(0)
    w = torch.randn(d_out, d_in) * torch.rand(d_out, 1)  # rows of different scales
    m = quantized_linear(kind, d_in, d_out, True, torch.float32, torch.device("cpu"))
    assert type(m) is layer and getattr(m, "group", None) == group  # int4 falls back to int8 where no kernel fits
    rows = [(16, w[16:]), (0, w[:16])]  # the parts of a fused weight arrive in any order
    m.load_rows(*rows[0])
    assert not m.loaded
    m.load_rows(*rows[1])
    assert m.loaded and not m._rows  # the float rows are dropped once quantized
    err = (dequantized(m) - w).abs()
    assert (err <= step(m) / 2 * (1 + 1e-4) + 1e-6).all()  # nearest level: within half a step of the weight
    torch.nn.init.normal_(m.bias)
    x = torch.randn(2, 3, d_in)
    assert rel_err(m(x), x @ dequantized(m).T + m.bias) <= 1e-5


def dequantized_hf(hf_base, engine):
    """The Hugging Face model with each linear weight, lm_head included, replaced by the engine's dequantized one."""
    model = copy.deepcopy(hf_base)
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            for fused, (parent, _) in FUSED.items():
                w = dequantized(engine.bank.lora_linear(i, fused).base_layer)
                for kind, row, n in engine.model.args.parts(fused):
                    getattr(getattr(layer, parent), kind).weight.copy_(w[row:row + n])
        model.lm_head.weight = torch.nn.Parameter(dequantized(engine.model.lm_head))
    return model.eval()


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_fused_logits_equal_quantized_base_plus_peft_deltas(kind, llama_dir, llama_adapters, hf_base, peft_model):
    eng = engine_with(llama_dir, llama_adapters, quantize=kind)
    assert eng.quantize == kind and eng.dtype == torch.float32
    assert all(isinstance(eng.bank.lora_linear(0, f).base_layer, QuantizedLinear) for f in FUSED)
    reference = dequantized_hf(hf_base, eng)
    ids = torch.randint(0, hf_base.config.vocab_size, (2, 13), generator=torch.Generator().manual_seed(0))
    float_logits = hf_base(ids).logits
    for mix in MIXES + MIXES[::-1]:
        got = eng.logits(ids, mix)
        assert rel_err(got, reference_logits(reference, peft_model, ids, mix)) <= 1e-5, mix
        assert eng.bank.mode == ("gathered" if mix else "base")  # integer weights: always the unmerged path
        assert 1e-4 < rel_err(got, reference_logits(hf_base, peft_model, ids, mix)) < (0.1 if kind == "int8" else 0.8)
    rows = [MIXES[0], None, MIXES[3]]  # and per-row mixes in one batch
    got = eng.logits(ids[:1].repeat(3, 1), rows)
    for r, mix in enumerate(rows):
        assert rel_err(got[r], reference_logits(reference, peft_model, ids[:1], mix)[0]) <= 1e-5
    assert rel_err(eng.logits(ids), hf_base(ids).logits) < (0.1 if kind == "int8" else 0.8)
    assert rel_err(float_logits, eng.logits(ids)) > 1e-4  # the weights really are quantized


def test_switching_rewrites_the_same_slot_buffers(llama_dir, llama_adapters):
    eng = engine_with(llama_dir, llama_adapters, quantize="int8")
    ids = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(1))
    eng.logits(ids, {"alpha": 0.5, "beta": 0.3, "delta": 0.2})  # the largest mix sizes the slots
    key, ptrs = eng.bank.graph_key(), [t.data_ptr() for s in eng.bank.slots.values() for g in s for t in (g.A_sel, g.B_sel)]
    outputs = []
    for mix in [{"gamma": 1.0}, {"alpha": 0.7, "delta": 0.3}, None, {"beta": 1.0}, {"gamma": 1.0}]:
        outputs.append(eng.logits(ids, mix))
        if mix:  # a captured decode graph reads these buffers: same tensors, same key, across every switch
            assert eng.bank.graph_key() == key
            assert [t.data_ptr() for s in eng.bank.slots.values() for g in s for t in (g.A_sel, g.B_sel)] == ptrs
    assert torch.equal(outputs[0], outputs[-1]) and rel_err(outputs[0], outputs[1]) > 1e-3


def test_slots_hold_only_the_targeted_kinds(llama_dir, llama_adapters):
    eng = Engine.load(llama_dir, device="cpu", quantize="int8")
    eng.add_adapter(llama_adapters["alpha"], name="alpha")  # q_proj, v_proj, rank 4
    eng.apply_mix({"alpha": 1.0})
    assert set(eng.bank.slots) == {"qkv_proj"}
    rows, k = eng.bank.slot_shape
    a_sel = eng.bank.slots["qkv_proj"][0].A_sel
    assert a_sel.shape == (2, rows, 2 * k * 4, 64)  # (layers, rows, 2 kinds x K x r, in): no block for k_proj


def test_generate_on_quantized_models(llama_dir, llama_adapters):
    eng = engine_with(llama_dir, llama_adapters, quantize="int8")
    convs = [[{"role": "user", "content": "hello there"}], [{"role": "user", "content": "Sort the list 5, 3."}]]
    mixes = [{"alpha": 1.0}, {"beta": 0.5, "gamma": 0.5}]
    batch = eng.generate_batch(convs, mixes=mixes, max_new_tokens=24, ignore_eos=True)
    single = [eng.generate_batch([c], mixes=[m], max_new_tokens=24, ignore_eos=True)[0] for c, m in zip(convs, mixes)]
    assert [r["text"] for r in batch] == [r["text"] for r in single] and all(r["tokens"] == 24 for r in batch)


def test_quantized_weights_replace_the_float_ones(llama_dir):
    float_eng = Engine.load(llama_dir, device="cpu")
    for kind, ratio in (("int8", 0.25), ("int4", 0.125)):
        eng = Engine.load(llama_dir, device="cpu", quantize=kind)
        assert eng.module_shapes() == float_eng.module_shapes()  # what the adapter library checks shapes against
        linear = [m for m in eng.model.modules() if isinstance(m, QuantizedLinear)]
        assert len(linear) == 4 * 2 + 1 and all(m.loaded for m in linear)  # every fused linear and lm_head
        floats = {n for n, p in eng.model.named_parameters() if p.dim() == 2}
        assert floats == {"model.embed_tokens.weight"}  # no float copy of a linear weight is kept
        packed = sum(b.numel() * b.element_size() for m in linear for b in (m.qweight,))
        assert packed == ratio * sum(p.numel() * 4 for n, p in float_eng.model.named_parameters()
                                     if p.dim() == 2 and n != "model.embed_tokens.weight")


def test_bad_quantization_requests_are_refused(llama_dir, llama_adapters):
    with pytest.raises(ModelError, match="unknown quantization 'int3'"):
        Engine.load(llama_dir, device="cpu", quantize="int3")
    with pytest.raises(SwitchboardError, match="strategy 'merged'.*int8"):
        Engine.load(llama_dir, device="cpu", quantize="int8", strategy="merged")
    eng = engine_with(llama_dir, {"alpha": llama_adapters["alpha"]}, quantize="int4")
    with pytest.raises(SwitchboardError, match="cannot merge"):
        eng.bank.merge({"alpha": 1.0})


def test_loading_holds_at_most_one_layer_in_float(llama_dir, monkeypatch):
    """Each fused weight is quantized as soon as its parts are in, so the float rows waiting at any time are
    fewer than one layer's (the safetensors file lists a layer's tensors together)."""
    staged, peak = set(), [0]
    load_rows = QuantizedLinear.load_rows

    def recording(self, row, w):
        staged.add(self)
        load_rows(self, row, w)
        peak[0] = max(peak[0], sum(p.numel() for m in staged for p in m._rows.values()))

    monkeypatch.setattr(QuantizedLinear, "load_rows", recording)
    eng = Engine.load(llama_dir, device="cpu", quantize="int8")
    layer = sum(i * o for i, o in eng.module_shapes().values()) // eng.model.args.n_layers
    assert 0 < peak[0] < layer


@pytest.mark.slow
def test_command_line_quantize(llama_dir, tmp_path, capsys):
    from app.cli import main

    assert main(["chat", "--model", str(llama_dir), "--quantize", "int8", "--max-new-tokens", "8", "hello"]) == 0
    assert "(cpu, float32, int8 weights, 0 adapters)" in capsys.readouterr().err
    out = tmp_path / "bench.json"
    assert main(["bench", "--shape", "tiny", "--adapters", "4", "--runs", "1", "--prompt", "32", "--new", "24",
                 "--no-peft", "--quantize", "int8,int4", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "engine, int8 weights" in table and "engine, int4 weights" in table and "KV at 8192 tokens" in table
    import json
    rows = json.loads(out.read_text())["quantized"]
    for kind in ("int8", "int4"):
        row = rows[kind]
        assert row["base_ms"] > 0 and row["fused_ms"] > 0 and row["switch_ms"] > 0 and 0 <= row["top1_agreement"] <= 1
        assert row["kv_bytes_8k"] == 2 * 4 * 2 * 64 * 8192 * 4  # k and v x 4 layers x 2 kv heads x head_dim 64, fp32
    assert rows["int4"]["weights_bytes"] < rows["int8"]["weights_bytes"]
    with pytest.raises(SystemExit) as e:
        main(["bench", "--shape", "tiny", "--quantize", "int5"])
    assert e.value.code == 2 and "unknown kind 'int5'" in capsys.readouterr().err
    assert main(["bench", "--workload", "cold", "--quantize", "int8"]) == 2
    assert "--quantize adds rows to the decode table" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quantized_layers_compile_once_and_equal_eager(kind, tmp_path):
    """Inductor's decode layer on the CPU traces the quantized linears with symbolic batch and cache sizes: after
    warm-up no conversation length, batch size or gathered mix compiles again, and the tokens equal eager's."""
    from torch._dynamo.utils import counters

    from conftest import make_adapter_dir, make_model_dir
    from engine.decode import Decoder
    from test_decode import conversation_and_batches

    model_dir = make_model_dir(tmp_path / "m", "llama", max_position_embeddings=2048)
    adapters = {n: make_adapter_dir(tmp_path / n, model_dir, seed=i) for i, n in enumerate("ab")}
    engines = []
    for compiled in (True, False):
        eng = Engine.load(model_dir, device="cpu", quantize=kind)
        eng.decoder = Decoder(eng.device, compiled=compiled, graphs=False)
        for name, path in adapters.items():
            eng.add_adapter(path, name=name)
        engines.append(eng)
    compiled, eager = engines
    compiled.warmup()
    assert compiled.decoder.compile_error is None
    graphs = counters["stats"]["unique_graphs"]
    try:
        assert conversation_and_batches(compiled) == conversation_and_batches(eager)
        assert counters["stats"]["unique_graphs"] == graphs
    finally:
        from torch._inductor.async_compile import shutdown_compile_workers
        shutdown_compile_workers()
