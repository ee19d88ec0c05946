"""One query's attention over the KV cache on CUDA (flash-decoding): the cache split into at most NSPLIT ranges,
each read once by its own program for all the query heads that share a KV head (_partials), then the ranges'
results merged by their log-sum-exp (_merge).

The written-out form (transformer.attention) is what Inductor can fuse, but its weighted sum of V needs the
cache view as one batch of equal slices, which a view into a longer cache is not: Inductor copied every
layer's V before the product, ~15 us per layer per token at 8K slots on an H200. This kernel reads K and V in
place, once.
"""
import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs never call it
    triton = None

NSPLIT = 64   # most programs per (row, KV head): with 8 KV heads 512, about four per SM of an H200
BLOCK = 64    # cache slots per inner step


def usable(q) -> bool:
    """The kernel takes CUDA half-precision tensors (float32 would run its products in TF32) and a head size
    that is a power of two from 16 (Triton's block shapes and matrix products)."""
    hd = q.shape[-1]
    return (triton is not None and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16)
            and hd >= 16 and hd & (hd - 1) == 0)


def decode_attention(q, k, v, mask):
    """q: (B, nh, 1, hd); k, v: (B, nkv, S, hd) views into the cache (last dim contiguous); mask: (B, 1, 1, S)
    bool, at least one slot per row allowed -> (B, nh, 1, hd)."""
    return torch.ops.switchboard.decode_attention(q, k, v, mask)


if triton is not None:
    # An opaque op to Inductor: traced as user-defined Triton kernels, the decode layer failed in Inductor's
    # scheduler on torch 2.11.
    @torch.library.custom_op("switchboard::decode_attention", mutates_args=())
    def _decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, nh, _, hd = q.shape
        nkv, S = k.shape[1], k.shape[2]
        g = nh // nkv
        nsplit = min(NSPLIT, -(-S // BLOCK))                         # a short view: fewer ranges, none empty
        split_len = -(-S // (nsplit * BLOCK)) * BLOCK                # slots per program, whole blocks
        o = torch.empty(B, nh, nsplit, hd, dtype=torch.float32, device=q.device)   # unnormalised sums per range
        ml = torch.empty(B, nh, nsplit, 2, dtype=torch.float32, device=q.device)   # its max score, sum of exp
        _partials[(B * nkv, nsplit)](
            q, k, v, mask, o, ml, S, split_len, nsplit, nkv, hd ** -0.5,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
            mask.stride(0), G=g, GP=max(16, triton.next_power_of_2(g)), HD=hd, BLOCK=BLOCK,
            num_warps=4, num_stages=2)
        y = torch.empty(B, nh, 1, hd, dtype=q.dtype, device=q.device)
        _merge[(B * nh,)](o, ml, y, nsplit, HD=hd, NP=NSPLIT, num_warps=4)
        return y

    @_decode.register_fake
    def _(q, k, v, mask):
        return q.new_empty(q.shape)

    # Lengths are not specialised on (Triton would compile a kernel per view length, range count or mask stride
    # that is or is not a multiple of 16): one compile per model serves every view a conversation reaches.
    # split_len is always whole blocks, so its specialisation never changes.
    @triton.jit(do_not_specialize=["S", "nsplit", "smb"])
    def _partials(q, k, v, mask, o, ml, S, split_len, nsplit, n_kv, scale,
                  sqb, sqh, skb, skh, sks, svb, svh, svs, smb,
                  G: tl.constexpr, GP: tl.constexpr, HD: tl.constexpr, BLOCK: tl.constexpr):
        bh, split = tl.program_id(0), tl.program_id(1)
        b, h = bh // n_kv, bh % n_kv
        g, d = tl.arange(0, GP), tl.arange(0, HD)
        heads = g < G                                             # the query heads of KV head h, padded to GP rows
        qt = tl.load(q + b * sqb + (h * G + g)[:, None] * sqh + d[None, :], mask=heads[:, None], other=0.0)
        m_i = tl.full([GP], float("-inf"), tl.float32)
        l_i = tl.zeros([GP], tl.float32)
        acc = tl.zeros([GP, HD], tl.float32)
        start = split * split_len
        end = tl.minimum(start + split_len, S)
        for s0 in range(start, end, BLOCK):
            s = s0 + tl.arange(0, BLOCK)
            inside = s < end
            keep = tl.load(mask + b * smb + s, mask=inside, other=0) != 0
            kt = tl.load(k + b * skb + h * skh + s[:, None] * sks + d[None, :], mask=inside[:, None], other=0.0)
            x = tl.dot(qt, tl.trans(kt)) * scale                  # (GP, BLOCK) float32
            x = tl.where(keep[None, :], x, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(x, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no allowed slot yet: exp(-inf) = 0, not NaN
            p = tl.exp(x - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            vt = tl.load(v + b * svb + h * svh + s[:, None] * svs + d[None, :], mask=inside[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(vt.dtype), vt)
            l_i = l_i * alpha + tl.sum(p, 1)
            m_i = m_new
        row = (bh * G + g) * nsplit + split                       # (b, query head h * G + g, split) in o and ml
        tl.store(o + row[:, None] * HD + d[None, :], acc, mask=heads[:, None])
        tl.store(ml + row * 2, m_i, mask=heads)
        tl.store(ml + row * 2 + 1, l_i, mask=heads)

    @triton.jit(do_not_specialize=["nsplit"])
    def _merge(o, ml, y, nsplit, HD: tl.constexpr, NP: tl.constexpr):
        # one program per (row, query head): its nsplit partial results (in NP = NSPLIT lanes, those past nsplit
        # masked: a loop over the ranges instead took 3 us more at 64 of them), weighted by exp(their max - the max)
        row = tl.program_id(0)                                    # b * nh + query head
        sp, d = tl.arange(0, NP), tl.arange(0, HD)
        live = sp < nsplit
        m = tl.load(ml + (row * nsplit + sp) * 2, mask=live, other=float("-inf"))   # no allowed slot: weight 0
        l = tl.load(ml + (row * nsplit + sp) * 2 + 1, mask=live, other=0.0)
        w = tl.exp(m - tl.max(m, 0))
        acc = tl.load(o + (row * nsplit + sp)[:, None] * HD + d[None, :], mask=live[:, None], other=0.0)
        tl.store(y + row * HD + d, (tl.sum(acc * w[:, None], 0) / tl.sum(l * w, 0)).to(y.dtype.element_ty))
