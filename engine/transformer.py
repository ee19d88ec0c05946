"""A Llama-family decoder (Llama, Mistral, Qwen2) with a static KV cache, written for fast decoding.

Decoding one token is a chain of matrix-vector products, so the layer's q, k, v projections are one
Linear (qkv_proj) and gate, up are one (gate_up_proj): fewer, larger GEMVs run closer to memory
bandwidth. Every fused kind is stored as one stacked weight [n_layers, out, in] per device and each layer's
Linear holds a view of it; the Hugging Face kinds (q_proj, ...) are row slices of those stacks, so HF
weights and PEFT adapters (which name q_proj, ...) map onto it, and a LoRA switch can rewrite all layers
of a kind with one batched matmul (engine/lora.py).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ATTN_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_KINDS = ("gate_proj", "up_proj", "down_proj")
LINEAR_KINDS = ATTN_KINDS + MLP_KINDS
# fused module -> (parent, the Hugging Face kinds it holds, in row order)
FUSED = {"qkv_proj": ("self_attn", ("q_proj", "k_proj", "v_proj")), "o_proj": ("self_attn", ("o_proj",)),
         "gate_up_proj": ("mlp", ("gate_proj", "up_proj")), "down_proj": ("mlp", ("down_proj",))}


@dataclass
class ModelArgs:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float
    max_position_embeddings: int
    attention_bias: bool = False      # Qwen2: biases on q, k, v
    tie_word_embeddings: bool = False
    sliding_window: int | None = None

    @classmethod
    def from_hf(cls, cfg) -> "ModelArgs":
        use_window = getattr(cfg, "use_sliding_window", True)  # Qwen2 ships a window but leaves it off
        window = getattr(cfg, "sliding_window", None) if use_window else None
        return cls(
            vocab_size=cfg.vocab_size, dim=cfg.hidden_size, n_layers=cfg.num_hidden_layers,
            n_heads=cfg.num_attention_heads,
            n_kv_heads=getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            intermediate_size=cfg.intermediate_size, norm_eps=cfg.rms_norm_eps,
            max_position_embeddings=cfg.max_position_embeddings,
            attention_bias=bool(getattr(cfg, "attention_bias", cfg.model_type == "qwen2")),
            tie_word_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
            sliding_window=window,
        )

    def linear_shape(self, kind: str) -> tuple[int, int]:
        """(in_features, out_features) of one layer's linear of this Hugging Face kind."""
        q, kv, d, f = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.dim, self.intermediate_size
        return {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d),
                "gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d)}[kind]

    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """Targetable linear layers: Hugging Face module name -> (in_features, out_features)."""
        return {f"model.layers.{i}.{'mlp' if k in MLP_KINDS else 'self_attn'}.{k}": self.linear_shape(k)
                for i in range(self.n_layers) for k in LINEAR_KINDS}

    def parts(self, fused: str) -> list[tuple[str, int, int]]:
        """[(kind, first row, rows)] of a fused module's output."""
        out, row = [], 0
        for kind in FUSED[fused][1]:
            n = self.linear_shape(kind)[1]
            out.append((kind, row, n))
            row += n
        return out

    def fused_shape(self, fused: str) -> tuple[int, int]:
        kind, row, n = self.parts(fused)[-1]
        return self.linear_shape(kind)[0], row + n


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # in float32 and cast back before the weight, exactly as Hugging Face does
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class KVCache(nn.Module):
    def __init__(self, batch: int, n_kv_heads: int, max_seq: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, n_kv_heads, max_seq, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos, k, v):
        # input_pos: [T] cache slots; k, v: [B, nkv, T, hd] for the first B rows of the cache
        rows = k.shape[0]
        self.k[:rows].index_copy_(2, input_pos, k)
        self.v[:rows].index_copy_(2, input_pos, v)
        return self.k[:rows], self.v[:rows]


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def attention(q, k, v, mask):
    """Grouped-query attention written out, so Inductor fuses it (measured faster than SDPA's kernels at
    decode on an H200). q: (B, nh, T, hd); k, v: (B, nkv, S, hd); mask: (B, 1, T, S) bool."""
    B, nh, T, hd = q.shape
    nkv, S = k.shape[1], k.shape[2]
    g = nh // nkv                                     # query heads per kv head (head h uses kv h // g)
    scores = (q.reshape(B, nkv, g * T, hd) @ k.transpose(-1, -2)).float() * hd ** -0.5   # (B, nkv, g*T, S)
    mask = mask.unsqueeze(2).expand(B, 1, g, T, S).reshape(B, 1, g * T, S)
    p = scores.masked_fill(~mask, float("-inf")).softmax(-1).to(q.dtype)
    return (p @ v).reshape(B, nh, T, hd)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.qkv_proj = nn.Linear(*args.fused_shape("qkv_proj"), bias=args.attention_bias)
        self.o_proj = nn.Linear(*args.fused_shape("o_proj"), bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x, cos, sin, mask, input_pos):
        a = self.args
        B, T, _ = x.shape
        q, k, v = self.qkv_proj(x).split([a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim,
                                          a.n_kv_heads * a.head_dim], dim=-1)
        q = q.view(B, T, a.n_heads, a.head_dim).transpose(1, 2)                   # (B, nh, T, hd)
        k = k.view(B, T, a.n_kv_heads, a.head_dim).transpose(1, 2)                # (B, nkv, T, hd)
        v = v.view(B, T, a.n_kv_heads, a.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)                             # (B, 1, T, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = self.kv_cache.update(input_pos, k, v)                              # (B, nkv, S, hd)
        y = attention(q, k, v, mask)                                              # (B, nh, T, hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, a.n_heads * a.head_dim))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gate_up_proj = nn.Linear(*args.fused_shape("gate_up_proj"), bias=False)
        self.down_proj = nn.Linear(*args.fused_shape("down_proj"), bias=False)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.self_attn = Attention(args)
        self.mlp = MLP(args)
        self.input_layernorm = RMSNorm(args.dim, args.norm_eps)
        self.post_attention_layernorm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x, cos, sin, mask, input_pos):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, input_pos)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        # no random init (the loader fills every weight); on the meta device normal_ would import torch._dynamo (~1 s)
        self.embed_tokens = nn.Embedding.from_pretrained(torch.empty(args.vocab_size, args.dim))
        self.layers = nn.ModuleList(DecoderLayer(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.model = Backbone(args)
        self.lm_head = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.register_buffer("rope", torch.empty(0), persistent=False)  # (P, 2, hd) cos and sin, float32
        self.cache_shape = (0, 0)  # (batch, max_seq) of the allocated KV caches
        self.cache_version = 0     # bumped when the caches are reallocated (captured graphs point at them)

    def setup_caches(self, batch: int, max_seq: int, rope_table_fn):
        """Allocate KV caches for `batch` rows of up to `max_seq` tokens; kept while a request fits."""
        if batch <= self.cache_shape[0] and max_seq <= self.cache_shape[1]:
            return
        batch, max_seq = max(batch, self.cache_shape[0]), max(max_seq, self.cache_shape[1])
        a = self.args
        dtype = self.model.norm.weight.dtype  # the compute dtype (a quantized lm_head holds integers)
        for layer in self.model.layers:
            device = layer.input_layernorm.weight.device
            layer.self_attn.kv_cache = KVCache(batch, a.n_kv_heads, max_seq, a.head_dim, dtype, device)
        if self.rope.shape[0] < max_seq:
            self.rope = rope_table_fn(max_seq).to(self.model.norm.weight.device)
        self.cache_shape = (batch, max_seq)
        self.cache_version += 1

    def forward(self, idx, input_pos, pad):
        # idx: [B, T] token ids; input_pos: [T] cache slots; pad: [B] left-padding per row (0 for a chat)
        S = self.cache_shape[1]
        pos = (input_pos[None, :] - pad[:, None]).clamp(min=0)                      # (B, T) rope positions
        rope = self.rope[pos].to(self.model.norm.weight.dtype)                       # (B, T, 2, hd)
        cos, sin = rope[:, :, 0], rope[:, :, 1]
        slots = torch.arange(S, device=idx.device)
        q_slot, k_slot = input_pos[None, :, None], slots[None, None, :]              # (1, T, 1), (1, 1, S)
        allowed = (k_slot <= q_slot) & (k_slot >= pad[:, None, None])
        if self.args.sliding_window:
            allowed &= q_slot - k_slot < self.args.sliding_window
        mask = (allowed | (k_slot == q_slot)).unsqueeze(1)  # (B, 1, T, S); a pad query sees itself: no NaN rows
        x = self.model.embed_tokens(idx)
        for layer in self.model.layers:
            dev = layer.input_layernorm.weight.device
            if dev != x.device:  # a model split across GPUs: hand the activations to the next one
                x, cos, sin, mask, input_pos = (t.to(dev) for t in (x, cos, sin, mask, input_pos))
            x = layer(x, cos, sin, mask, input_pos)
        x = self.model.norm(x)
        return self.lm_head(x)  # the final norm and lm_head share the last device
