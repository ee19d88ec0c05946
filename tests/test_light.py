"""Folders read without transformers (engine/light.py) read exactly as transformers reads them."""
import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer

from app.paths import DEMO_DIR
from engine.chat import render
from engine.light import light_config, light_tokenizer, plain_rope_theta
from engine.model import make_rope_table, read_config, resolve_dtype
from engine.transformer import ModelArgs

DEMO_MODEL = DEMO_DIR / "model"


def conversations():
    """Every held-out demo prompt as a one-turn chat, plus multi-turn ones with a system prompt and answers."""
    rows = [json.loads(line) for f in sorted((DEMO_DIR / "tasks").glob("*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines()]
    convs = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    for a, b in zip(rows[::50], rows[1::50]):
        convs.append([{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": a["prompt"]},
                      {"role": "assistant", "content": a["response"]}, {"role": "user", "content": b["prompt"]}])
    return convs, [r["response"] for r in rows]


@pytest.fixture(params=["demo", "llama", "llama_plain"])
def folder(request):
    return DEMO_MODEL if request.param == "demo" else request.getfixturevalue(f"{request.param}_dir")


def test_light_tokenizer_equals_transformers(folder):
    light, hf = light_tokenizer(folder), AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert light is not None
    convs, responses = conversations()
    for conv in convs:  # the chat template (or the plain fallback) and the encoding
        assert render(light, conv) == render(hf, conv)
    for text in responses + ["Dr. Smith — 3.14 «quoted» 今天 \n\n  spaces", ""]:
        ids = hf(text, add_special_tokens=True)["input_ids"]
        assert light(text)["input_ids"] == ids
        for skip in (True, False):
            assert light.decode(ids + [hf.eos_token_id], skip_special_tokens=skip) == \
                hf.decode(ids + [hf.eos_token_id], skip_special_tokens=skip)
    vocab = len(hf)
    assert [light.convert_ids_to_tokens(i) for i in range(vocab + 2)] == \
        [hf.convert_ids_to_tokens(i) for i in range(vocab)] + [None, None]  # past the vocabulary: None
    assert {i: (t.content, t.special) for i, t in light.added_tokens_decoder.items()} == \
        {i: (t.content, t.special) for i, t in hf.added_tokens_decoder.items()}
    assert (light.eos_token_id, light.pad_token_id, light.bos_token_id) == \
        (hf.eos_token_id, hf.pad_token_id, hf.bos_token_id)
    assert bool(light.chat_template) == bool(hf.chat_template)


def test_light_config_equals_transformers(folder):
    cfg, hf = read_config(folder), AutoConfig.from_pretrained(folder, local_files_only=True)
    assert not isinstance(cfg, type(hf))  # read without transformers
    assert ModelArgs.from_hf(cfg) == ModelArgs.from_hf(hf)
    for device in (torch.device("cpu"), torch.device("cuda")):  # resolve_dtype only reads the config for CUDA
        assert resolve_dtype("auto", device, cfg) == resolve_dtype("auto", device, hf)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_rope_table_equals_transformers(arch, request):
    import importlib

    cfg = AutoConfig.from_pretrained(request.getfixturevalue(f"{arch}_dir"), local_files_only=True)
    prefix = {"llama": "Llama", "qwen2": "Qwen2"}[arch]
    module = importlib.import_module(f"transformers.models.{arch}.modeling_{arch}")
    cos, sin = getattr(module, f"{prefix}RotaryEmbedding")(config=cfg)(torch.empty(0), torch.arange(300)[None])
    table = make_rope_table(cfg)(300)
    assert torch.equal(table[:, 0], cos[0]) and torch.equal(table[:, 1], sin[0])


def test_folders_that_need_transformers_are_left_to_it(tmp_path, qwen2_dir, llama_dir):
    raw = json.loads((llama_dir / "config.json").read_text())
    assert light_config(raw) is not None
    assert light_config(json.loads((qwen2_dir / "config.json").read_text())) is None
    assert light_config({k: v for k, v in raw.items() if k != "head_dim"}) is None          # a default needed
    assert light_config({**raw, "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}}) is None
    assert light_config({**raw, "hidden_act": "gelu"}) is None
    # transformers 5 writes rope_parameters; transformers 4 a top-level rope_theta and rope_scaling for scaled RoPE
    assert plain_rope_theta({"rope_theta": 1e4, "rope_type": "default"}, None) == 1e4
    assert plain_rope_theta(None, 5e5) == 5e5
    assert plain_rope_theta({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}, 5e5) is None
    assert plain_rope_theta({"type": "linear", "factor": 2.0}, 1e4) is None
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (tmp_path / name).write_bytes((llama_dir / name).read_bytes())
    assert light_tokenizer(tmp_path) is not None
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    for changed in ({**config, "add_bos_token": True}, {**config, "tokenizer_class": "LlamaTokenizer"},
                    {**config, "eos_token": {"content": "</s>"}}):
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(changed))
        assert light_tokenizer(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer.json").write_text("{not json")
    assert light_tokenizer(tmp_path) is None  # transformers then reports the broken file


def test_the_demo_answers_without_importing_transformers():
    """On the CPU (a GPU compiles the decode step, which imports torch._dynamo by design)."""
    code = ("import sys; from engine import Engine; e = Engine.load(sys.argv[1], device='cpu'); "
            "r = e.generate_batch([[{'role': 'user', 'content': 'Reverse the word apple.'}]], max_new_tokens=8); "
            "print(r[0]['text']); assert 'transformers' not in sys.modules and 'torch._dynamo' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code, str(DEMO_MODEL)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
