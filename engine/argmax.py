"""argmax over a vocabulary on CUDA: the first largest value of each row, in two small Triton kernels.

torch's argmax reduces a row of 128,256 float32 logits in 26 us on an H200 (8.4 us at 151,936: it splits that
length better); this takes 3-4 us at both (docs/PERFORMANCE.md, "Sampling"). The decode step runs it once per
token: for the greedy choice and for the exponential race of a sampled one.
"""
import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs use torch.argmax
    triton = None

CHUNKS = 128        # programs per row, one chunk of the row each
BLOCK = 1024        # values per step


def argmax(x):
    """x: [B, V] float32 -> [B] int64, the index of the first largest value in each row (as torch.argmax)."""
    if triton is None or not x.is_cuda:
        return x.argmax(-1)
    B, V = x.shape
    x = x.contiguous()
    best = torch.empty(B, CHUNKS, 2, dtype=torch.float32, device=x.device)   # per chunk: its largest, where
    out = torch.empty(B, dtype=torch.int64, device=x.device)
    _chunk_max[(B, CHUNKS)](x, best, V, -(-V // (CHUNKS * BLOCK)) * BLOCK, NC=CHUNKS, BLOCK=BLOCK)
    _pick[(B,)](best, out, NC=CHUNKS)
    return out


if triton is not None:
    @triton.jit
    def _chunk_max(x, best, V, chunk, NC: tl.constexpr, BLOCK: tl.constexpr):
        # program (row b, chunk c): the chunk's largest value and its first position
        b, c = tl.program_id(0), tl.program_id(1)
        top = tl.full([], float("-inf"), tl.float32)
        at = tl.zeros([], tl.int32)
        for i in range(c * chunk, tl.minimum(c * chunk + chunk, V), BLOCK):
            offs = i + tl.arange(0, BLOCK)
            s = tl.load(x + b * V + offs, mask=offs < V, other=float("-inf"))
            m = tl.max(s, 0)
            at = tl.where(m > top, i + tl.argmax(s, 0), at)     # strictly larger: the first position on ties
            top = tl.maximum(top, m)
        tl.store(best + (b * NC + c) * 2, top)
        tl.store(best + (b * NC + c) * 2 + 1, at.to(tl.float32))  # exact: positions stay below 2**24

    @triton.jit
    def _pick(best, out, NC: tl.constexpr):
        # one program per row: the first chunk holding the row's largest value
        b = tl.program_id(0)
        c = tl.arange(0, NC)
        top = tl.load(best + (b * NC + c) * 2)
        at = tl.load(best + (b * NC + c) * 2 + 1)
        tl.store(out + b, tl.sum(tl.where(c == tl.argmax(top, 0), at, 0.0), 0).to(tl.int64))
