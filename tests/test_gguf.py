"""GGUF files: tiny ones written in-process with the gguf package (llama.cpp's naming, q/k row order and
metadata) from the test models' weights load and answer like the safetensors model; bad files are refused."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine import Engine, ModelError

from conftest import make_model_dir

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType
SHAPE = dict(hidden_size=128, intermediate_size=256, head_dim=32)  # int4 with 128-wide groups fits
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Add 2 and 3, then multiply by 4.", "今天天气很好。"]


def write_gguf(model_dir, path, qtype=Q.F32, name="tiny", arch=None, rope_freqs=None):
    """Write the model in `model_dir` as llama.cpp's converter would: its tensor names, q/k rows permuted for
    Llama, 2-D weights in `qtype` (norms and biases F32), config and tokenizer as metadata."""
    cfg = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    model_arch = gguf.MODEL_ARCH.QWEN2 if cfg["model_type"] == "qwen2" else gguf.MODEL_ARCH.LLAMA
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = gguf.GGUFWriter(path, arch or gguf.MODEL_ARCH_NAMES[model_arch])
    w.add_name(name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    tokens = [t for t, _ in sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])]
    special = {a["id"] for a in tok["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if model_arch == gguf.MODEL_ARCH.QWEN2 else "default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))])
    w.add_token_merges([" ".join(m) for m in tok["model"]["merges"]])
    ids = {t: i for i, t in enumerate(tokens)}
    w.add_bos_token_id(ids[tok_cfg["bos_token"]])
    w.add_eos_token_id(ids[tok_cfg["eos_token"]])
    w.add_pad_token_id(ids[tok_cfg["pad_token"]])
    w.add_add_bos_token(False)
    w.add_chat_template((model_dir / "chat_template.jinja").read_text())
    names = gguf.get_tensor_name_map(model_arch, cfg["num_hidden_layers"])
    for key, t in load_file(model_dir / "model.safetensors").items():
        data = t.float().numpy()
        if model_arch == gguf.MODEL_ARCH.LLAMA and key.endswith(("q_proj.weight", "k_proj.weight")):
            h = heads if "q_proj" in key else kv_heads  # llama.cpp's rotary layout: the halves interleaved
            data = data.reshape(h, 2, data.shape[0] // h // 2, -1).swapaxes(1, 2).reshape(data.shape)
        gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if data.ndim == 2 and qtype != Q.F32:
            w.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(gguf_name, data)
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", rope_freqs.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{arch: (safetensors folder, {qtype name: .gguf path})} for a tiny Llama, Mistral and Qwen2."""
    out = {}
    for arch, qtypes in (("llama", (Q.F32, Q.F16, Q.Q8_0, Q.Q4_0)), ("mistral", (Q.F32,)), ("qwen2", (Q.F32, Q.Q8_0))):
        root = tmp_path_factory.mktemp(f"gguf_{arch}")
        model_dir = make_model_dir(root / "hf", arch, **SHAPE)
        if arch == "qwen2":
            qwen2_pretokenizer(model_dir / "tokenizer.json")
        out[arch] = (model_dir, {q.name: write_gguf(model_dir, root / f"tiny-{arch}.{q.name}.gguf", q) for q in qtypes})
    return out


def qwen2_pretokenizer(path):
    """Split text as Qwen2's tokenizer does (one digit at a time, NFC): what a Qwen2 GGUF's `pre` says."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer.from_file(str(path))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), "isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.save(str(path))


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


IDS = torch.randint(4, 400, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
def test_float_gguf_answers_exactly_like_its_safetensors_model(arch, models):
    model_dir, files = models[arch]
    ref, eng = Engine.load(model_dir, device="cpu"), Engine.load(files["F32"], device="cpu")
    assert eng.quantize is None and eng.model_name == f"tiny-{arch}.F32.gguf"
    assert rel_err(eng.logits(IDS), ref.logits(IDS)) <= 1e-6
    for text in TEXTS:
        assert eng.tokenizer(text)["input_ids"] == ref.tokenizer(text)["input_ids"]
    assert eng.tokenizer.chat_template == ref.tokenizer.chat_template  # from the file's metadata
    assert eng.eos_ids == ref.eos_ids
    special = ("bos_token_id", "eos_token_id", "pad_token_id")
    assert [getattr(eng.tokenizer, k) for k in special] == [getattr(ref.tokenizer, k) for k in special]
    chat = [{"role": "user", "content": TEXTS[1]}]
    assert eng.generate_batch([chat], max_new_tokens=20)[0]["text"] == ref.generate_batch([chat], max_new_tokens=20)[0]["text"]
    assert eng.module_shapes() == ref.module_shapes()  # the adapter library checks shapes against these


@pytest.mark.parametrize("arch, qtype, kind, bound", [("llama", "F16", None, 5e-3), ("llama", "Q8_0", "int8", 0.1),
                                                      ("llama", "Q4_0", "int4", 1.0), ("qwen2", "Q8_0", "int8", 0.1)])
def test_quantized_gguf_is_requantized_to_its_own_precision(arch, qtype, kind, bound, models):
    """auto picks the engine's precision from the file's; the answer is the file's weights within quantization
    error: the engine's requantization of a file loaded in float adds no more than quantizing its float weights."""
    model_dir, files = models[arch]
    eng = Engine.load(files[qtype], device="cpu")
    assert eng.quantize == kind
    ref = Engine.load(model_dir, device="cpu").logits(IDS)
    assert rel_err(eng.logits(IDS), ref) <= bound
    if kind:
        as_float = Engine.load(files[qtype], device="cpu", quantize=None).logits(IDS)
        requantized = rel_err(eng.logits(IDS), as_float)
        own = rel_err(Engine.load(model_dir, device="cpu", quantize=kind).logits(IDS), ref)
        assert 0 < requantized <= 1.5 * own


def test_the_adapter_library_loads_into_a_gguf_model(llama_adapters, bad, tmp_path):
    """Adapters trained for the safetensors model import into its GGUF's engine through the library (shapes
    checked against the GGUF model) and apply unmerged on the int8 weights."""
    from app.library import Library

    small = make_model_dir(tmp_path / "hf", "llama")  # the shape of the llama_adapters fixture's model
    eng = Engine.load(write_gguf(small, tmp_path / "small.Q8_0.gguf", Q.Q8_0), device="cpu")
    results = Library(tmp_path / "lib").import_paths([llama_adapters["alpha"], bad["wide"], llama_adapters["gamma"]],
                                                     engine=eng)
    assert [r.ok for r in results] == [True, False, True] and "takes 64 inputs" in results[1].message
    base, mixed = eng.logits(IDS[:, :8]), eng.logits(IDS[:, :8], {"alpha": 0.6, "gamma": 0.4})
    assert eng.adapters == ["alpha", "gamma"] and eng.bank.mode == "gathered" and rel_err(mixed, base) > 1e-3


def test_llama31_rope_frequency_factors_are_applied(tmp_path):
    """Llama 3.1 GGUFs carry scaled RoPE as rope_freqs.weight (frequency divisors); transformers' config does not
    read it, the engine applies it: the file answers like the safetensors model with its llama3 rope scaling."""
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    model_dir = make_model_dir(tmp_path / "hf", "llama", rope_parameters=rope, **SHAPE)
    cfg = LlamaConfig.from_pretrained(model_dir)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")                      # [head_dim / 2]
    plain = 1.0 / (10000.0 ** (torch.arange(0, 32, 2, dtype=torch.int64).float() / 32))
    file = write_gguf(model_dir, tmp_path / "llama31.gguf", rope_freqs=(plain / scaled).float())
    ids = torch.randint(4, 400, (1, 64), generator=torch.Generator().manual_seed(3))
    ref, eng = Engine.load(model_dir, device="cpu").logits(ids), Engine.load(file, device="cpu").logits(ids)
    assert rel_err(eng, ref) <= 1e-5
    plain_file = write_gguf(model_dir, tmp_path / "plain.gguf")
    assert rel_err(Engine.load(plain_file, device="cpu").logits(ids), ref) > 1e-3  # the factors matter here


def test_a_folder_holding_one_gguf_loads_two_are_refused(models, tmp_path):
    _, files = models["llama"]
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(files["Q8_0"], folder)
    assert Engine.load(folder, device="cpu").quantize == "int8"
    shutil.copy(files["Q4_0"], folder)
    with pytest.raises(ModelError, match="holds 2 GGUF files .*tiny-llama.Q4_0.gguf.*choose one"):
        Engine.load(folder, device="cpu")


def test_truncated_missing_and_foreign_files_are_refused(models, tmp_path):
    with pytest.raises(ModelError, match="GGUF file not found: .*missing.gguf"):
        Engine.load(tmp_path / "missing.gguf", device="cpu")
    data = models["llama"][1]["Q4_0"].read_bytes()
    for name, content in (("cut.gguf", data[: len(data) * 2 // 3]), ("header.gguf", data[:100]),
                          ("text.gguf", b"not a model\n" * 10)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelError, match=f"{name} is not a readable GGUF file .*truncated"):
            Engine.load(tmp_path / name, device="cpu")


def test_unknown_architecture_and_tensor_types_are_named(models, tmp_path):
    model_dir = models["llama"][0]
    with pytest.raises(ModelError, match="GGUF architecture 'phi3' is not supported; supported: llama .*qwen2"):
        Engine.load(write_gguf(model_dir, tmp_path / "phi.gguf", arch="phi3"), device="cpu")
    odd = gguf.GGUFWriter(tmp_path / "odd.gguf", "llama")
    odd.add_tensor("blk.0.attn_q.weight", np.zeros((128, 128), dtype=np.int8), raw_dtype=Q.I8)
    odd.write_header_to_file()
    odd.write_kv_data_to_file()
    odd.write_tensors_to_file()
    odd.close()
    with pytest.raises(ModelError, match="tensor blk.0.attn_q.weight is stored as I8"):
        Engine.load(tmp_path / "odd.gguf", device="cpu")
