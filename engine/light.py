"""Reading a Llama folder without importing transformers, where that reads exactly what transformers would.

Importing any transformers configuration or tokenizer class takes ~2.5 s on a 2-core CPU, longer than the
demo model needs to answer. A folder qualifies when its config.json states every field the engine reads
(Llama, plain RoPE) and its tokenizer is declared as transformers' generic `TokenizersBackend`, whose
behaviour is tokenizer.json itself; then the config is used as written, the tokenizer is `tokenizers`'
own and the chat template is rendered with jinja2 the way transformers renders it (engine/template.py).
Anything else goes through transformers. tests/test_light.py checks both readings agree on the bundled demo and the test models.
"""
import json
from pathlib import Path
from types import SimpleNamespace

import torch

CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "head_dim", "intermediate_size", "rms_norm_eps", "max_position_embeddings", "attention_bias",
                 "tie_word_embeddings")
TOKENIZER_KEYS = {"backend", "tokenizer_class", "bos_token", "eos_token", "unk_token", "pad_token",
                  "model_max_length", "chat_template"}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def plain_rope_theta(rope: dict | None, theta) -> float | None:
    """RoPE's theta when the config asks for plain RoPE, else None. rope: transformers 5's rope_parameters, or
    transformers 4's rope_scaling (then theta is the config's own rope_theta)."""
    rope = {"rope_theta": theta, "rope_type": "default", **(rope or {})}
    plain = set(rope) == {"rope_theta", "rope_type"} and rope["rope_type"] == "default"
    return float(rope["rope_theta"]) if plain and isinstance(rope["rope_theta"], (int, float)) else None


def light_config(raw: dict):
    """config.json's dict -> the fields the engine reads, or None when it needs transformers' defaults."""
    theta = plain_rope_theta(raw.get("rope_parameters") or raw.get("rope_scaling"), raw.get("rope_theta"))
    if (raw.get("model_type") != "llama" or any(f not in raw for f in CONFIG_FIELDS) or theta is None
            or raw.get("hidden_act", "silu") != "silu"):
        return None
    return SimpleNamespace(**{f: raw[f] for f in CONFIG_FIELDS}, model_type="llama", rope_theta=theta,
                           dtype=DTYPES.get(raw.get("dtype")))


def rope_table(head_dim: int, theta: float, factors: torch.Tensor | None = None):
    """-> fn(n) giving (n, 2, head_dim) cos/sin in float32 for plain RoPE, computed as transformers does;
    `factors` [head_dim / 2] divide the frequencies (a GGUF file's rope_freqs: Llama 3.1's scaled RoPE)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if factors is not None:
        inv_freq = inv_freq / factors.float()

    def table(n: int) -> torch.Tensor:
        freqs = torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None, :]   # (n, hd/2), exact products
        emb = torch.cat((freqs, freqs), dim=-1)
        return torch.stack([emb.cos(), emb.sin()], dim=1)

    return table


class LightTokenizer:
    """The part of a transformers tokenizer the engine uses, over the `tokenizers` object it would wrap."""

    def __init__(self, tokenizer, config: dict, chat_template: str | None, name_or_path: str = ""):
        self._tok = tokenizer
        self.chat_template = chat_template
        self.name_or_path = name_or_path
        self.special_tokens = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if k in config}
        self.added_tokens_decoder = tokenizer.get_added_tokens_decoder()     # {id: AddedToken(.special)}
        self.eos_token_id, self.pad_token_id, self.bos_token_id = (
            tokenizer.token_to_id(self.special_tokens[k]) if k in self.special_tokens else None
            for k in ("eos_token", "pad_token", "bos_token"))

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": self._tok.encode(text, add_special_tokens=add_special_tokens).ids}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, token_id: int):
        return self._tok.id_to_token(int(token_id))

    def apply_chat_template(self, messages, add_generation_prompt: bool = False, tokenize: bool = True):
        """As transformers renders it (engine/template.py), within bounds of time and size."""
        from .template import render

        text = render(self.chat_template, f"the chat template of {self.name_or_path}", messages=messages,
                               tools=None, documents=None, add_generation_prompt=add_generation_prompt,
                               **self.special_tokens)
        return self(text, add_special_tokens=False)["input_ids"] if tokenize else text


def light_tokenizer(model_dir: Path):
    """-> LightTokenizer, or None when the folder's tokenizer needs transformers."""
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(config, dict) or config.get("tokenizer_class") != "TokenizersBackend"
            or set(config) - TOKENIZER_KEYS or not (model_dir / "tokenizer.json").is_file()
            or not all(isinstance(config.get(k, ""), str) for k in TOKENIZER_KEYS - {"model_max_length"})):
        return None
    template_file = model_dir / "chat_template.jinja"
    source = template_file.read_text(encoding="utf-8") if template_file.is_file() else config.get("chat_template")
    from tokenizers import Tokenizer

    try:
        return LightTokenizer(Tokenizer.from_file(str(model_dir / "tokenizer.json")), config, source, str(model_dir))
    except Exception:  # noqa: BLE001 - transformers then loads it and reports what is wrong
        return None
