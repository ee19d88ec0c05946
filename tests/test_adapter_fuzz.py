"""Property-based fuzzing of adapter_io: every input is read or refused with AdapterError, never anything else."""
import io
import json
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from engine.adapter_io import LoraWeights, read_adapter
from engine.errors import AdapterError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
patterns = st.dictionaries(st.sampled_from(["v_proj", "q_proj", "proj", r"layers\.1\..*", "(", "[a-", "*", "^model"])
                           | st.text(max_size=6), st.integers(-1, 8) | json_values, max_size=3)
FIELDS = {
    "peft_type": st.sampled_from(["LORA", "lora", "IA3", "LOHA"]) | json_values,
    "r": st.integers(-1, 9) | json_values,
    "lora_alpha": st.integers(-4, 32) | st.floats() | json_values,
    "use_rslora": st.booleans() | json_values,
    "rank_pattern": patterns | json_values,
    "alpha_pattern": patterns | json_values,
    "init_lora_weights": st.sampled_from([True, False, "gaussian", "pissa", "olora", "eva", "loftq"]) | json_values,
}
OTHER_FIELDS = ["fan_in_fan_out", "use_dora", "lora_bias", "modules_to_save", "trainable_token_indices",
                "layer_replication", "target_parameters", "target_modules", "bias", "use_qalora", "task_type"]


@pytest.fixture(scope="module")
def good(llama_adapters):
    """(config dict, config bytes, safetensors bytes) of a valid r=4 q_proj/v_proj adapter."""
    d = Path(llama_adapters["alpha"])
    config = (d / "adapter_config.json").read_bytes()
    return json.loads(config), config, (d / "adapter_model.safetensors").read_bytes()


def read_or_refuse(path, module_shapes, **kw):
    """The property: a LoraWeights of finite float32 tensors matching the model, or an AdapterError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lw = read_adapter(path, module_shapes, **kw)
    except AdapterError as e:
        assert str(e)
        return None
    assert isinstance(lw, LoraWeights) and lw.modules
    for module, (a, b) in lw.modules.items():
        assert a.dtype == b.dtype == torch.float32
        assert (a.shape[1], b.shape[0]) == module_shapes[module] and a.shape[0] == b.shape[1] == lw.ranks[module]
        assert torch.isfinite(a).all() and torch.isfinite(b).all()
    return lw


def write_folder(root, config_bytes, weights_bytes, weights_name="adapter_model.safetensors"):
    d = Path(root) / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_bytes(config_bytes)
    (d / weights_name).write_bytes(weights_bytes)
    return d


@st.composite
def configs(draw, good_config):
    """adapter_config.json bytes: the good config with fields replaced / dropped / added, any JSON, or any bytes."""
    kind = draw(st.sampled_from(["edit", "edit", "edit", "json", "bytes"]))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64) | st.text(max_size=32).map(lambda s: s.encode("utf-16")))
    config = dict(good_config)
    for field in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3, unique=True)):
        config[field] = draw(FIELDS[field])
    for field in draw(st.lists(st.sampled_from(OTHER_FIELDS), max_size=2, unique=True)):
        config[field] = draw(json_values)
    for field in draw(st.lists(st.sampled_from(sorted(config)), max_size=2, unique=True)):
        del config[field]
    config.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return json.dumps(config).encode()


@FUZZ
@given(data=st.data())
def test_fuzz_config(good, module_shapes, data):
    good_config, _, weights = good
    config = data.draw(configs(good_config))
    with tempfile.TemporaryDirectory() as root:
        read_or_refuse(write_folder(root, config, weights), module_shapes)


MODULES = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.down_proj"]
KEY_FORMATS = ["base_model.model.{}.lora_{}.weight", "base_model.model.{}.lora_{}.default.weight", "{}.lora_{}.weight"]
ODD_MODULES = ["model.layers.7.self_attn.q_proj", "lm_head", "model.embed_tokens", "", "base_model.model"]
ODD_KEYS = ["base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
            "base_model.model.model.embed_tokens.lora_embedding_A", ".lora_A.weight", "lora_A.weight"]
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
ODD_DTYPES = [torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn]
SHAPES = st.lists(st.sampled_from([0, 1, 2, 4, 32, 64, 128]), min_size=0, max_size=3)
FLAWS = ["drop", "shape", "dtype", "nan", "inf", "huge", "module", "key"]


@st.composite
def states(draw, module_shapes):
    """A well-formed r=4 LoRA state dict for 1-3 modules, then up to two random flaws."""
    key = draw(st.sampled_from(KEY_FORMATS))
    state = {}
    for module in draw(st.lists(st.sampled_from(MODULES), min_size=1, max_size=3, unique=True)):
        in_features, out_features = module_shapes[module]
        state[key.format(module, "A")] = torch.randn(4, in_features).to(draw(st.sampled_from(FLOATS)))
        state[key.format(module, "B")] = torch.randn(out_features, 4).to(draw(st.sampled_from(FLOATS)))
    for flaw in draw(st.lists(st.sampled_from(FLAWS), max_size=2)):
        name = draw(st.sampled_from(sorted(state))) if state else None
        if flaw == "drop" and name:
            del state[name]
        elif flaw == "shape" and name:
            state[name] = torch.randn(draw(SHAPES))
        elif flaw == "dtype" and name:
            state[name] = state[name].to(draw(st.sampled_from(ODD_DTYPES)))
        elif flaw in ("nan", "inf", "huge") and name and state[name].numel() and state[name].is_floating_point():
            state[name].view(-1)[0] = {"nan": float("nan"), "inf": float("inf"), "huge": 1e38}[flaw]
        elif flaw == "module":
            module = draw(st.sampled_from(ODD_MODULES) | st.text(max_size=8))
            state[key.format(module, draw(st.sampled_from("AB")))] = torch.randn(draw(SHAPES))
        elif flaw == "key":
            state[draw(st.sampled_from(ODD_KEYS) | st.text(max_size=12))] = torch.randn(draw(SHAPES))
    return state


def damage(data, how, cut, noise):
    if how == "truncate":
        return data[: cut % (len(data) + 1)]
    if how == "flip" and data:
        i = cut % len(data)
        return data[:i] + bytes([data[i] ^ noise[0]]) + data[i + 1:]
    if how == "random":
        return noise
    return data


@FUZZ
@given(data=st.data(), how=st.sampled_from(["none", "none", "none", "truncate", "flip", "random"]),
       cut=st.integers(0, 10_000), noise=st.binary(min_size=1, max_size=64))
def test_fuzz_weights(good, module_shapes, data, how, cut, noise):
    """Random tensor names, shapes, dtypes and values, then random damage to the file's bytes, as safetensors
    and as a pickle-only adapter_model.bin read through torch.load(weights_only=True)."""
    _, config, _ = good
    state = data.draw(states(module_shapes))
    pickled = io.BytesIO()
    torch.save(state, pickled)
    with tempfile.TemporaryDirectory() as root:
        read_or_refuse(write_folder(root, config, damage(save(state), how, cut, noise)), module_shapes)
        (Path(root) / "pickled").mkdir()
        read_or_refuse(write_folder(Path(root) / "pickled", config, damage(pickled.getvalue(), how, cut, noise),
                                    "adapter_model.bin"), module_shapes, allow_pickle=True)


SEGMENTS = (st.sampled_from(["a", "sub", "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin",
                             "README.md"])
            | st.sampled_from(["..", ".", "", "C:", "..\\x", "/"]) | st.text(max_size=4))
MEMBER_NAMES = st.lists(SEGMENTS, min_size=1, max_size=4).map("/".join)


@FUZZ
@given(layout=st.sampled_from(["", "sub/", "a/b/", None]),
       extra=st.lists(st.tuples(MEMBER_NAMES, st.sampled_from(["config", "weights"]) | st.binary(max_size=32)),
                      max_size=4),
       method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
       how=st.sampled_from(["none"] * 5 + ["truncate", "flip", "random"]), cut=st.integers(0, 100_000),
       noise=st.binary(min_size=1, max_size=64))
def test_fuzz_archive(good, module_shapes, layout, extra, method, how, cut, noise):
    """Random member names (.., absolute, nested, duplicates, empty) and contents around a good adapter or
    none, then random damage to the archive's bytes."""
    _, config, weights = good
    contents = {"config": config, "weights": weights}
    members = [] if layout is None else [(layout + "adapter_config.json", config),
                                         (layout + "adapter_model.safetensors", weights)]
    members += [(name, contents.get(c, c)) for name, c in extra]
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate names
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "inner" / "adapter.zip"
        path.parent.mkdir()
        path.write_bytes(damage(buf.getvalue(), how, cut, noise))
        read_or_refuse(path, module_shapes, allow_pickle=True)
        assert sorted(p.name for p in Path(root).rglob("*")) == ["adapter.zip", "inner"]  # nothing extracted
