"""engine.adapter_io: PEFT's own delta weights as the oracle, and one crafted bad adapter per refusal."""
import json
import math
import os
import pickle
import shutil
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_adapter_dir
from engine import adapter_io
from engine.adapter_io import LoraWeights, read_adapter
from engine.errors import AdapterError

Q0 = "model.layers.0.self_attn.q_proj"
V0 = "model.layers.0.self_attn.v_proj"
KEY = "base_model.model.{}.lora_{}.weight"


@pytest.fixture(scope="module")
def epsilon_dir(tmp_path_factory, llama_dir):
    """rsLoRA with regex rank/alpha patterns, two of which match the same module (the first in file order wins)."""
    return make_adapter_dir(tmp_path_factory.mktemp("eps") / "epsilon", llama_dir, r=3, alpha=5, seed=7,
                            targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                            use_rslora=True,
                            rank_pattern={r"layers\.1\.self_attn\.(q|k)_proj": 5, "^model.layers.0.mlp.up_proj": 2,
                                          "o_proj": 4, "q_proj": 6, "mlp.gate": 7},  # PEFT anchors keys at the end
                            alpha_pattern={"k_proj": 7.5, "layers.0.mlp.down_proj": 1, "proj": 100})


@pytest.fixture
def good(tmp_path, llama_adapters):
    """A private copy of the r=4, alpha=8 (q_proj, v_proj) adapter, free to break."""
    return shutil.copytree(llama_adapters["alpha"], tmp_path / "good")


def peft_deltas(llama_dir, adapter_dir):
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir)
    return {name: m.get_delta_weight("default").detach() for name, m in model.base_model.model.named_modules()
            if isinstance(m, LoraLayer) and "default" in m.lora_A}


def rel_err(x, y):
    return ((x - y).norm() / y.norm()).item()


def zip_dir(src, dest, folder=""):
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(os.listdir(src)):
            zf.write(os.path.join(src, f), folder + f)
    return dest


def edit_config(d, **changes):
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg.update(changes)
    (d / "adapter_config.json").write_text(json.dumps(cfg))


def edit_weights(d, fn):
    path = d / "adapter_model.safetensors"
    sd = load_file(path)
    fn(sd)
    save_file(sd, path)


def refused(path, module_shapes, *expected, **kw):
    with pytest.raises(AdapterError) as e:
        read_adapter(path, module_shapes, **kw)
    for s in expected:
        assert str(s) in str(e.value), f"{s!r} not in {str(e.value)!r}"
    return str(e.value)


# -- oracle --------------------------------------------------------------------------------------------------

def test_equals_peft_get_delta_weight(llama_dir, llama_adapters, epsilon_dir, module_shapes, tmp_path):
    for name, d in {**llama_adapters, "epsilon": epsilon_dir}.items():
        lw = read_adapter(d, module_shapes)
        deltas = peft_deltas(llama_dir, d)
        assert lw.name == name and lw.source == str(d)
        assert set(lw.modules) == set(deltas), name
        for module, (a, b) in lw.modules.items():
            assert a.dtype == b.dtype == torch.float32 and a.device.type == "cpu"
            assert a.shape == (lw.ranks[module], module_shapes[module][0])
            assert b.shape == (module_shapes[module][1], lw.ranks[module])
            assert rel_err(b @ a, deltas[module]) <= 1e-6, (name, module)
        # the zip round trip gives exactly the same tensors, with files at the root or in one folder
        for folder in ("", f"{name}/"):
            z = read_adapter(zip_dir(d, tmp_path / f"{name}{len(folder)}.zip", folder), module_shapes, name=name)
            assert z.name == name and z.ranks == lw.ranks and z.config == lw.config and z.nbytes == lw.nbytes
            assert all(torch.equal(x, y) for m in lw.modules for x, y in zip(z.modules[m], lw.modules[m]))


def test_patterns_ranks_and_summary(epsilon_dir, llama_adapters, module_shapes):
    eps = read_adapter(epsilon_dir, module_shapes)
    # PEFT saves the config with sorted keys; the first matching key of that order wins
    assert eps.ranks["model.layers.1.self_attn.q_proj"] == 5 and eps.ranks["model.layers.0.self_attn.q_proj"] == 6
    assert eps.ranks["model.layers.0.mlp.up_proj"] == 2 and eps.ranks["model.layers.1.mlp.up_proj"] == 3
    assert eps.ranks["model.layers.0.mlp.gate_proj"] == 3
    assert eps.rank == 6 and eps.targets == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                    "down_proj"])
    gamma = read_adapter(llama_adapters["gamma"], module_shapes)
    assert gamma.ranks[V0] == 6 and gamma.ranks["model.layers.0.mlp.up_proj"] == 2 and gamma.rank == 6
    assert gamma.targets == ["down_proj", "gate_proj", "up_proj", "v_proj"]
    assert gamma.nbytes == sum(4 * (a.numel() + b.numel()) for a, b in gamma.modules.values())


def test_scaling_is_alpha_over_r_or_sqrt_r(good, module_shapes):
    stored = load_file(good / "adapter_model.safetensors")
    b = stored[KEY.format(Q0, "B")]
    assert torch.equal(read_adapter(good, module_shapes).modules[Q0][1], b * (8 / 4))
    edit_config(good, use_rslora=True)
    assert torch.equal(read_adapter(good, module_shapes).modules[Q0][1], b * (8 / math.sqrt(4)))


def test_defaults_are_peft_defaults():
    from peft import LoraConfig
    assert (adapter_io.R_DEFAULT, adapter_io.ALPHA_DEFAULT) == (LoraConfig().r, LoraConfig().lora_alpha)


def test_other_key_spellings_and_bf16(good, module_shapes):
    ref = read_adapter(good, module_shapes)
    sd = load_file(good / "adapter_model.safetensors")
    for rename in (lambda k: k.replace(".weight", ".default.weight"),     # adapter name kept in the key
                   lambda k: k.removeprefix("base_model.model.")):         # transformers' own adapter saving
        save_file({rename(k): v for k, v in sd.items()}, good / "adapter_model.safetensors")
        lw = read_adapter(good, module_shapes)
        assert all(torch.equal(x, y) for m in ref.modules for x, y in zip(lw.modules[m], ref.modules[m]))
    save_file({k: v.bfloat16() for k, v in sd.items()}, good / "adapter_model.safetensors")
    lw = read_adapter(good, module_shapes)
    assert lw.nbytes == ref.nbytes // 2 and lw.modules[Q0][0].dtype == torch.float32
    assert torch.equal(lw.modules[Q0][0], sd[KEY.format(Q0, "A")].bfloat16().float())


def test_fan_in_fan_out_is_ignored_like_peft(good, module_shapes):
    ref = read_adapter(good, module_shapes)
    edit_config(good, fan_in_fan_out=True)
    with pytest.warns(UserWarning, match="fan_in_fan_out"):
        lw = read_adapter(good, module_shapes)
    assert torch.equal(lw.modules[Q0][1], ref.modules[Q0][1])


def test_pickle_only_weights(good, module_shapes, tmp_path):
    ref = read_adapter(good, module_shapes)
    torch.save(load_file(good / "adapter_model.safetensors"), good / "adapter_model.bin")
    os.remove(good / "adapter_model.safetensors")
    refused(good, module_shapes, str(good / "adapter_model.bin"), "pickle")
    lw = read_adapter(good, module_shapes, allow_pickle=True)
    assert torch.equal(lw.modules[Q0][1], ref.modules[Q0][1])
    refused(zip_dir(good, tmp_path / "bin.zip"), module_shapes, "bin.zip/adapter_model.bin", "pickle")

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (good / "adapter_model.bin").write_bytes(pickle.dumps({"x": Evil()}))
    refused(good, module_shapes, str(good / "adapter_model.bin"), "weights_only=True", allow_pickle=True)
    assert not marker.exists()


# -- refusals: files ------------------------------------------------------------------------------------------

def test_refuses_missing_and_unreadable_files(good, module_shapes, tmp_path):
    refused(tmp_path / "nope", module_shapes, str(tmp_path / "nope"), "no such adapter")
    refused(good / "adapter_model.safetensors", module_shapes, "not a PEFT adapter folder or .zip")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(empty, module_shapes, str(empty), "no adapter_config.json")
    only_config = shutil.copytree(good, tmp_path / "only_config")
    os.remove(only_config / "adapter_model.safetensors")
    refused(only_config, module_shapes, str(only_config), "no adapter_model.safetensors")


@pytest.mark.parametrize("data, expected", [
    (b'{"peft_type": "LORA",', "not valid JSON"),
    (b'{"peft_type": "LO\xffRA"}', "not valid JSON"),
    (b'["LORA"]', "expected a JSON object, got list"),
    (b"[" * 100_000, "not valid JSON"),
])
def test_refuses_bad_json(good, module_shapes, data, expected):
    (good / "adapter_config.json").write_bytes(data)
    refused(good, module_shapes, str(good / "adapter_config.json"), expected)


def test_refuses_corrupt_safetensors(good, module_shapes):
    path = good / "adapter_model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    refused(good, module_shapes, str(path), "corrupt or truncated safetensors")
    path.write_bytes(b"\xff" * 8 + b"{not a header")
    refused(good, module_shapes, str(path), "corrupt or truncated safetensors")


# -- refusals: config -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, expected", [
    ({"peft_type": "IA3"}, "peft_type is 'IA3'"),
    ({"use_dora": True}, "DoRA"),
    ({"lora_bias": True}, "lora_bias"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"trainable_token_indices": [1, 2]}, "trainable_token_indices"),
    ({"layer_replication": [[0, 2]]}, "layer replication"),
    ({"target_parameters": ["mlp.experts.gate_up_proj"]}, "target_parameters"),
    ({"alora_invocation_tokens": [5]}, "alora_invocation_tokens"),
    ({"init_lora_weights": "pissa_niter_4"}, "rewrites the base weights"),
    ({"r": 0}, "r is 0; a LoRA rank must be at least 1"),
    ({"r": "eight"}, "r must be a positive integer, got 'eight'"),
    ({"r": 4.0}, "r must be a positive integer"),
    ({"lora_alpha": "sixteen"}, "lora_alpha must be a number, got 'sixteen'"),
    ({"lora_alpha": float("nan")}, "lora_alpha must be a finite number"),
    ({"rank_pattern": {"v_proj": 0}}, "rank_pattern['v_proj'] is 0"),
    ({"rank_pattern": ["v_proj"]}, "rank_pattern must be an object"),
    ({"alpha_pattern": {"v_proj": None}}, "alpha_pattern['v_proj'] must be a number"),
    ({"rank_pattern": {"(": 4}}, "rank_pattern key '(' is not a valid regular expression"),
    ({"use_rslora": "yes"}, "use_rslora must be true or false"),
    ({"r": 6}, "lora_A has shape [4, 64], rank 4, but"),
])
def test_refuses_config(good, module_shapes, changes, expected):
    edit_config(good, **changes)
    refused(good, module_shapes, str(good / "adapter_config.json"), expected)


# -- refusals: tensors ----------------------------------------------------------------------------------------

def _set(module, ab, value):
    return lambda sd: sd.__setitem__(KEY.format(module, ab), value)


@pytest.mark.parametrize("edit, expected", [
    (_set(Q0, "A", torch.randn(4, 32)), f"{Q0}.lora_A has shape [4, 32] but the base layer takes 64 inputs"),
    (_set(V0, "B", torch.randn(64, 4)), f"{V0}.lora_B has shape [64, 4] but the base layer has 32 outputs"),
    (_set(Q0, "B", torch.randn(64, 3)), f"{Q0}.lora_B has shape [64, 3] but lora_A has shape [4, 64]"),
    (lambda sd: sd.update({KEY.format(Q0, "A"): torch.randn(6, 64), KEY.format(Q0, "B"): torch.randn(64, 6)}),
     f"{Q0}.lora_A has shape [6, 64], rank 6, but"),
    (lambda sd: sd.update({KEY.format(Q0, "A"): torch.randn(0, 64), KEY.format(Q0, "B"): torch.randn(64, 0)}),
     f"{Q0}.lora_A has shape [0, 64]: rank 0"),
    (_set(Q0, "A", torch.randn(4, 64, 1)), f"{Q0}.lora_A has shape [4, 64, 1]; expected a matrix"),
    (_set(Q0, "A", torch.zeros(4, 64, dtype=torch.int32)), f"{Q0}.lora_A has dtype torch.int32"),
    (lambda sd: sd.pop(KEY.format(V0, "B")), f"{V0} has lora_A but no lora_B"),
    (lambda sd: sd.pop(KEY.format(V0, "A")), f"{V0} has lora_B but no lora_A"),
    (lambda sd: sd[KEY.format(Q0, "A")].__setitem__((1, 2), float("nan")), f"{Q0}.lora_A has 1 NaN/Inf values"),
    (lambda sd: sd[KEY.format(V0, "B")].__setitem__((0, 0), float("inf")), f"{V0}.lora_B has 1 NaN/Inf values"),
    (_set("model.layers.5.self_attn.q_proj", "A", torch.randn(4, 64)),
     "targets model.layers.5.self_attn.q_proj, which the model does not have (it has 2 such layers"),
    (_set("model.layers.0.self_attn.qkv_proj", "A", torch.randn(4, 64)),
     "targets model.layers.0.self_attn.qkv_proj, which is not a linear layer of this model"),
    (_set("lm_head", "A", torch.randn(4, 64)), "lm_head adapters are not supported"),
    (lambda sd: sd.update({f"base_model.model.{Q0}.lora_magnitude_vector": torch.ones(64)}),
     f"unexpected tensor 'base_model.model.{Q0}.lora_magnitude_vector' [64]"),
    (lambda sd: sd.update({f"base_model.model.{Q0}.lora_B.bias": torch.ones(64)}),
     f"unexpected tensor 'base_model.model.{Q0}.lora_B.bias'"),
    (lambda sd: sd.update({"base_model.model.model.embed_tokens.lora_embedding_A": torch.ones(4, 400)}),
     "unexpected tensor 'base_model.model.model.embed_tokens.lora_embedding_A' [4, 400]"),
    (lambda sd: sd.update({"base_model.model.lm_head.weight": torch.ones(400, 64)}),
     "unexpected tensor 'base_model.model.lm_head.weight'"),
    (lambda sd: sd.update({f"base_model.model.{Q0}.lora_A.other.weight": torch.ones(4, 64)}),
     "holds more than one adapter"),
    (lambda sd: sd.clear(), "no LoRA tensors (empty adapter)"),
])
def test_refuses_tensors(good, module_shapes, edit, expected):
    edit_weights(good, edit)
    refused(good, module_shapes, str(good / "adapter_model.safetensors"), expected)


def test_scaling_overflow_is_refused(good, module_shapes):
    edit_config(good, lora_alpha=1e300)
    refused(good, module_shapes, "lora_B has", "NaN/Inf values after the scaling")


# -- refusals: zip archives ----------------------------------------------------------------------------------

def test_zip_slip_refused_and_nothing_written(good, module_shapes, tmp_path):
    (tmp_path / "zips").mkdir()
    before = sorted(p for p in tmp_path.rglob("*"))
    for i, evil in enumerate(["../evil.txt", "/tmp/evil_abs.txt", "..\\evil.txt", "sub/../../evil.txt", "C:/evil"]):
        z = zip_dir(good, tmp_path / "zips" / f"{i}.zip")
        with zipfile.ZipFile(z, "a") as zf:
            zf.writestr(zipfile.ZipInfo(evil), b"owned")
        before.append(z)
        refused(z, module_shapes, str(z), repr(evil), "points outside the archive")
    assert sorted(tmp_path.rglob("*")) == sorted(before)
    assert not (tmp_path / "evil.txt").exists() and not os.path.exists("/tmp/evil_abs.txt")


def test_zip_layout_refusals(good, llama_adapters, module_shapes, tmp_path):
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        for name in ("alpha", "beta"):
            for f in ("adapter_config.json", "adapter_model.safetensors"):
                zf.write(llama_adapters[name] / f, f"{name}/{f}")
    refused(two, module_shapes, str(two), "holds 2 adapters", "alpha/adapter_config.json")
    refused(zip_dir(good, tmp_path / "deep.zip", "a/b/"), module_shapes, "a/b/adapter_config.json is nested too deep")
    none = tmp_path / "none.zip"
    with zipfile.ZipFile(none, "w") as zf:
        zf.writestr("README.md", "hi")
    refused(none, module_shapes, str(none), "no adapter_config.json")
    empty_name = zip_dir(good, tmp_path / "empty_name.zip")
    with zipfile.ZipFile(empty_name, "a") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"x")
    refused(empty_name, module_shapes, str(empty_name), "a member has an empty name")
    dup = zip_dir(good, tmp_path / "dup.zip")
    with pytest.warns(UserWarning), zipfile.ZipFile(dup, "a") as zf:
        zf.writestr("adapter_config.json", b"{}")
    refused(dup, module_shapes, str(dup), "'adapter_config.json' appears twice")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 this is not really a zip")
    refused(junk, module_shapes, str(junk), "cannot read the zip archive")
    truncated = zip_dir(good, tmp_path / "truncated.zip")
    truncated.write_bytes(truncated.read_bytes()[:300])
    refused(truncated, module_shapes, str(truncated), "cannot read the zip archive")


def test_zip_bomb_guards(good, module_shapes, tmp_path, monkeypatch):
    bomb = zip_dir(good, tmp_path / "bomb.zip")
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(4 << 20))
    refused(bomb, module_shapes, str(bomb), "'zeros.bin' expands", "zip bomb")
    big = zip_dir(good, tmp_path / "big.zip")
    monkeypatch.setattr(adapter_io, "MAX_ZIP_BYTES", 1000)
    refused(big, module_shapes, str(big), "bytes uncompressed, over the 1000 byte limit")


def test_zip_errors_name_the_member(good, module_shapes, tmp_path):
    edit_weights(good, _set(Q0, "A", torch.randn(4, 32)))
    z = zip_dir(good, tmp_path / "bad.zip", "bad/")
    refused(z, module_shapes, f"{z}/bad/adapter_model.safetensors: {Q0}.lora_A has shape [4, 32]")


def test_hand_built_weights_count_float32_bytes():
    lw = LoraWeights("x", "mem", {Q0: (torch.zeros(2, 64), torch.zeros(64, 2))}, {Q0: 2}, {})
    assert lw.nbytes == 4 * 256 and lw.rank == 2 and lw.targets == ["q_proj"]
