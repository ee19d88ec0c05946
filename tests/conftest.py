"""Shared fixtures: tiny random Hugging Face models and PEFT adapters built in the test session.

Everything is made in-process and saved to tmp, then loaded back through the real loading path.
"""
import os
import threading
import weakref

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
torch.set_num_threads(2)

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It was 3.14 degrees outside!",
    "Dr. Smith said: \"Add 2 and 3, then multiply by 4.\" Why? Because it works...",
    "def add(a, b):\n    return a + b\n",
    "Translate to French: cat, dog, house. Sort the list 5, 3, 9, 1.",
    "Reverse the word hello. Spell the word world. Convert 10 km to miles.",
    "User: hi there\nAssistant: hello, how can I help you today?\n",
    "今天天气很好。我们去公园吧！",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _tokenizer(with_template):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    if with_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model_dir(path, arch="llama", with_template=True, seed=0, **overrides):
    """Save a tiny random causal LM of `arch` ('llama' | 'qwen2' | 'mistral') with its tokenizer to `path`."""
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM)

    tok = _tokenizer(with_template)
    cfg_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
                          "mistral": (MistralConfig, MistralForCausalLM)}[arch]
    kw = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
              tie_word_embeddings=(arch == "qwen2"))
    kw.update(overrides)
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**kw)).float().eval()
    with torch.no_grad():  # larger weights than the default init, so greedy decoding is not one token repeated
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_adapter_dir(path, model_dir, r=4, alpha=8, targets=("q_proj", "v_proj"), seed=0, **config):
    """Save a random PEFT LoRA adapter for the model in `model_dir` (B non-zero so it changes outputs)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), **config))
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.2)
    peft_model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="session")
def llama_plain_dir(tmp_path_factory):
    """A Llama whose tokenizer has no chat template."""
    return make_model_dir(tmp_path_factory.mktemp("llama_plain"), "llama", with_template=False)


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("qwen2"), "qwen2")


@pytest.fixture(scope="session")
def llama_adapters(tmp_path_factory, llama_dir):
    """Four adapters of different ranks, targets and scalings for the tiny Llama: {name: dir}."""
    root = tmp_path_factory.mktemp("adapters")
    specs = {
        "alpha": dict(r=4, alpha=8, targets=("q_proj", "v_proj")),
        "beta": dict(r=8, alpha=16, targets=("q_proj", "k_proj", "v_proj", "o_proj"), use_rslora=True),
        "gamma": dict(r=2, alpha=4, targets=("gate_proj", "up_proj", "down_proj", "v_proj"),
                      rank_pattern={"v_proj": 6}, alpha_pattern={"v_proj": 3}),
        "delta": dict(r=6, alpha=6, targets=("q_proj", "o_proj", "down_proj")),
    }
    return {name: make_adapter_dir(root / name, llama_dir, seed=i, **spec)
            for i, (name, spec) in enumerate(specs.items())}


@pytest.fixture(scope="session")
def module_shapes(llama_dir):
    """The tiny Llama's linear layers, (in, out) by module name, read from the Hugging Face model itself."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
    return {name: (m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and name != "lm_head"}


@pytest.fixture(scope="session")
def bad(tmp_path_factory, llama_adapters):
    """Crafted bad adapters, copies of `alpha`: {kind: path}, plus the key of the widened tensor."""
    import shutil
    import zipfile
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("bad")
    alpha = Path(llama_adapters["alpha"])
    corrupt = shutil.copytree(alpha, root / "corrupt")
    data = (corrupt / "adapter_model.safetensors").read_bytes()
    (corrupt / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    pickled = shutil.copytree(alpha, root / "pickled")
    (pickled / "adapter_model.safetensors").unlink()
    torch.save(load_file(alpha / "adapter_model.safetensors"), pickled / "adapter_model.bin")
    wide = shutil.copytree(alpha, root / "wide")  # lora_A of one module takes 32 inputs, the model has 64
    sd = load_file(wide / "adapter_model.safetensors")
    key = sorted(k for k in sd if "lora_A" in k)[0]
    sd[key] = torch.randn(sd[key].shape[0], 32)
    save_file(sd, wide / "adapter_model.safetensors")
    evil = root / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        for f in alpha.iterdir():
            zf.write(f, f.name)
        zf.writestr(zipfile.ZipInfo("../evil.txt"), b"owned")
    return {"corrupt": corrupt, "pickled": pickled, "wide": wide, "evil": evil, "wide_key": key}


@pytest.fixture
def worker():
    """A started EngineWorker (the app's engine thread) recording its events in `worker.events`; stopped, and
    checked stopped, after the test."""
    from app.worker import EngineWorker

    events = []
    w = EngineWorker(events.append)
    w.events = events
    w.start()
    yield w
    w.stop()
    assert not w._thread.is_alive()


# Every QThread started during a test is recorded, so the check below costs nothing for tests without Qt.
_started_qthreads = []
try:
    from PySide6.QtCore import QThread

    _qthread_start = QThread.start

    def _recording_start(self, *args, **kwargs):
        _started_qthreads.append(weakref.ref(self))
        return _qthread_start(self, *args, **kwargs)

    QThread.start = _recording_start
except ImportError:  # no Qt installed: nothing to record
    pass


@pytest.fixture(autouse=True)
def _no_leaked_threads():
    """Fail a test that leaves a QThread (or any non-daemon Python thread) running."""
    before = set(threading.enumerate())
    _started_qthreads.clear()
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    for t in leaked:  # transformers' weight loader shuts its pool down without waiting: give it a moment
        t.join(timeout=2.0)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"test left threads running: {leaked}"
    running = [t for t in (ref() for ref in _started_qthreads) if t is not None and _is_running(t)]
    assert not running, f"test left QThreads running: {running}"


def _is_running(thread):
    try:
        return thread.isRunning()
    except RuntimeError:  # C++ object already deleted
        return False
