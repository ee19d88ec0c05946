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
from torch.nn.attention import SDPBackend, sdpa_kernel

from . import decode_attention
from .silu_mul import silu_mul

# with a mask (left-padded rows, a sliding window), cuDNN's attention built a plan for every new shape: 0.6-0.9 s
# each on an H200, and batches seldom repeat a shape
MASKED_BACKENDS = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
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
        # torch's fused kernel works in float32 and rounds to x's dtype before the weight, as Hugging Face does
        # (whose written-out form is seven passes over a long prompt's activations)
        return self.weight * torch.rms_norm(x, (x.shape[-1],), eps=self.eps)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


SPLITS = 16  # p @ v in this many slices of the cache: one long reduction per head would use a few SMs


def attention(q, k, v, mask):
    """Decode attention: on CUDA in half precision a flash-decoding kernel (engine/decode_attention.py), else
    written out. q: (B, nh, 1, hd); k, v: (B, nkv, S, hd), S a multiple of SPLITS; mask: (B, 1, 1, S) bool."""
    if decode_attention.usable(q):
        return decode_attention.decode_attention(q, k, v, mask)
    B, nh, T, hd = q.shape
    nkv, S = k.shape[1], k.shape[2]
    g = nh // nkv                                     # query heads per kv head (head h uses kv h // g)
    scores = (q.reshape(B, nkv, g, hd) @ k.transpose(-1, -2)).float() * hd ** -0.5        # (B, nkv, g, S)
    p = scores.masked_fill(~mask, float("-inf")).softmax(-1).to(q.dtype)
    # the weighted sum of V, slice by slice, then the slices added in float32
    p = p.view(B, nkv, g, SPLITS, S // SPLITS).transpose(2, 3)                           # (B, nkv, SPLITS, g, S/SPLITS)
    y = (p @ v.view(B, nkv, SPLITS, S // SPLITS, hd)).float().sum(2)                      # (B, nkv, g, hd)
    return y.to(q.dtype).reshape(B, nh, T, hd)


def prefill_attention(q, k, v, mask):
    """Many queries: SDPA's flash / memory-efficient kernels, so memory stays linear in the prompt (the scores
    are never materialised). q: (B, nh, T, hd); k, v: (B, nkv, S, hd); mask: the int S (causal: the queries are
    slots S - T .. S - 1 and each sees every slot up to its own; a whole prompt, or on CUDA a chat's new tokens
    after its cached ones) or (B, 1, T, S) bool (left padding, a sliding window, cached tokens on the CPU)."""
    T = q.shape[2]
    whole = isinstance(mask, int) and mask == T   # a whole prompt: any kernel (cuDNN's is the fastest on Hopper)
    # CUDA runs float32 on the memory-efficient kernel, which has no GQA (SDPA would fall back to the math one)
    if whole and not (q.is_cuda and q.dtype == torch.float32):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)   # (B, nh, S, hd): these kernels want equal heads
    if whole:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if isinstance(mask, int):  # new tokens after cached ones: flash's bottom-right causal, no mask tensor
        from torch.nn.attention.bias import causal_lower_right  # imports torch._dynamo, as CUDA's decode step does
        return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(T, mask))
    with sdpa_kernel(MASKED_BACKENDS):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.qkv_proj = nn.Linear(*args.fused_shape("qkv_proj"), bias=args.attention_bias)
        self.o_proj = nn.Linear(*args.fused_shape("o_proj"), bias=False)

    def forward(self, x, cos, sin, mask, input_pos, cache):
        # x: (B, T, dim); input_pos: [T] cache slots; cache: (k, v) each (B, nkv, S_alloc, hd), written in place
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
        k_cache, v_cache = cache
        k_cache.index_copy_(2, input_pos, k)
        v_cache.index_copy_(2, input_pos, v)
        S = mask if isinstance(mask, int) else mask.shape[-1]                     # the slots attended to
        k, v = k_cache[:, :, :S], v_cache[:, :, :S]                               # (B, nkv, S, hd)
        y = attention(q, k, v, mask) if T == 1 else prefill_attention(q, k, v, mask)   # (B, nh, T, hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, a.n_heads * a.head_dim))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gate_up_proj = nn.Linear(*args.fused_shape("gate_up_proj"), bias=False)
        self.down_proj = nn.Linear(*args.fused_shape("down_proj"), bias=False)

    def forward(self, x):
        return self.down_proj(silu_mul(self.gate_up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.self_attn = Attention(args)
        self.mlp = MLP(args)
        self.input_layernorm = RMSNorm(args.dim, args.norm_eps)
        self.post_attention_layernorm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x, cos, sin, mask, input_pos, cache):
        h, m = self.halves(x, cos, sin, mask, input_pos, cache)
        return h + m

    def halves(self, x, cos, sin, mask, input_pos, cache):
        """-> (h, m): the residual stream after attention and the MLP's output, not yet added (the decode step
        adds them in the next layer, see decode.layer_step)."""
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, input_pos, cache)
        return h, self.mlp(self.post_attention_layernorm(h))


class Backbone(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        # no random init (the loader fills every weight); on the meta device normal_ would import torch._dynamo (~1 s)
        self.embed_tokens = nn.Embedding.from_pretrained(torch.empty(args.vocab_size, args.dim))
        self.layers = nn.ModuleList(DecoderLayer(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs, rope_table=None):
        super().__init__()
        self.args = args
        self.model = Backbone(args)
        self.lm_head = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.rope_table = rope_table  # fn(n) -> (n, 2, hd) float32 cos and sin of positions 0..n-1 (engine/model.py)
        self.register_buffer("rope", torch.empty(0), persistent=False)   # rope_table(slots), on the first device
        # kind -> [(first layer, [n, out, in] row slice of a fused stack)], filled by engine/model.py's build
        self.kind_stacks: dict[str, list[tuple[int, torch.Tensor]]] = {}
        self.quantize: str | None = None  # "int8" | "int4": weight-only linears (engine/quant.py), set by build
        self.caches: list[tuple[torch.Tensor, torch.Tensor]] = []   # per layer (k, v): (B, nkv, S_alloc, hd)
        self.cache_shape = (0, 0)  # (batch, slots) of the allocated KV caches
        self.cache_version = 0     # bumped when the caches are reallocated (captured graphs point at them)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (a quantized lm_head holds integers: engine/quant.py)."""
        return self.model.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        """Where the final norm and lm_head run (the last layer's device)."""
        return self.model.norm.weight.device

    def kv_bytes(self, tokens: int) -> int:
        """Bytes of one row's KV cache of `tokens` tokens over all layers."""
        a = self.args
        return 2 * a.n_layers * a.n_kv_heads * a.head_dim * tokens * self.dtype.itemsize

    def setup_caches(self, batch: int, slots: int):
        """KV caches for `batch` rows of `slots` tokens. A request that fits keeps them; another reallocates them
        to its size and copies what fits of what they held (a chat's KV is kept across turns). One slot more
        than asked for: the attention views (decode.attention_view) are then always a strict prefix of the
        cache, which keeps the compiled decode layer to one graph for every view."""
        if batch <= self.cache_shape[0] and slots < self.cache_shape[1]:
            return
        slots = -(-slots // SPLITS) * SPLITS + 1  # every attention view (a multiple of SPLITS) fits below the end
        a = self.args
        old, self.caches = self.caches, []
        for i, layer in enumerate(self.model.layers):
            device = layer.input_layernorm.weight.device
            kv = tuple(torch.zeros(batch, a.n_kv_heads, slots, a.head_dim, dtype=self.dtype,
                                   device=device) for _ in range(2))
            if old:
                b, s = min(batch, old[i][0].shape[0]), min(slots, old[i][0].shape[2])
                for new, was in zip(kv, old[i]):
                    new[:b, :, :s] = was[:b, :, :s]
                old[i] = None  # free each layer's old cache as soon as it is copied
            self.caches.append(kv)
        if self.rope.shape[0] < slots:
            self.rope = self.rope_table(slots).to(self.device)
        self.cache_shape = (batch, slots)
        self.cache_version += 1

    def drop_caches(self):
        """Free the KV caches (after an out-of-memory error: the next request allocates them again)."""
        self.caches, self.cache_shape = [], (0, 0)
        self.cache_version += 1

    def rope_at(self, pos):
        # pos: (B, T) positions -> cos, sin: (B, T, hd) in the model's dtype, each contiguous (as the compiled
        # decode layer was traced)
        dtype = self.dtype
        return self.rope[:, 0][pos].to(dtype), self.rope[:, 1][pos].to(dtype)

    def attention_mask(self, input_pos, S: int, pad):
        """(B, 1, T, S) bool: query slot input_pos[t] may see key slot s. Causal, left padding hidden (pad: [B]),
        the sliding window applied; a pad query sees itself, so no row is all -inf (no NaN)."""
        q_slot = input_pos[None, :, None]                                          # (1, T, 1)
        k_slot = torch.arange(S, device=input_pos.device)[None, None, :]           # (1, 1, S)
        allowed = (k_slot <= q_slot) & (k_slot >= pad[:, None, None])
        if self.args.sliding_window:
            allowed &= q_slot - k_slot < self.args.sliding_window
        return (allowed | (k_slot == q_slot)).unsqueeze(1)

    def run_layers(self, x, cos, sin, mask, input_pos, layer_fn=None):
        """x: (B, T, dim) through every layer; layer_fn(layer, x, cos, sin, mask, input_pos, k, v) replaces the
        plain call (the decode step passes its compiled one, whose x is a pair of tensors: decode.layer_step)."""
        B = cos.shape[0]
        for layer, (k, v) in zip(self.model.layers, self.caches):
            dev = layer.input_layernorm.weight.device
            if dev != input_pos.device:  # a model split across GPUs: hand the activations to the next one
                x = tuple(t.to(dev) for t in x) if isinstance(x, tuple) else x.to(dev)
                cos, sin, input_pos = (t.to(dev) for t in (cos, sin, input_pos))
                mask = mask if isinstance(mask, int) else mask.to(dev)
            if layer_fn is None:
                x = layer(x, cos, sin, mask, input_pos, (k[:B], v[:B]))
            else:
                x = layer_fn(layer, x, cos, sin, mask, input_pos, k[:B], v[:B])
        return x

    def forward(self, idx, start: int = 0, pad=None, last_only: bool = False):
        """idx: [B, T] tokens for cache slots start..start+T-1; pad: [B] left padding per row (None: none).
        -> logits [B, T, V] in the model's dtype ([B, 1, V], the last position only, with last_only)."""
        B, T = idx.shape
        input_pos = torch.arange(start, start + T, device=idx.device)
        pos = input_pos[None, :] if pad is None else (input_pos[None, :] - pad[:, None]).clamp(min=0)   # (B|1, T)
        cos, sin = self.rope_at(pos.expand(B, T))
        window = self.args.sliding_window
        if T > 1 and pad is None and not (window and start + T > window) and (start == 0 or idx.is_cuda):
            mask = start + T                                                       # causal: no mask tensor
        else:  # one token attends over a view of whole SPLITS (decode attention); the slots past it are masked
            S = start + T if T > 1 else -(-(start + 1) // SPLITS) * SPLITS
            mask = self.attention_mask(input_pos, S, pad if pad is not None else idx.new_zeros(B))
        x = self.run_layers(self.model.embed_tokens(idx), cos, sin, mask, input_pos)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.model.norm(x).to(self.device))
