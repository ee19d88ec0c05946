"""W = W0 + sum_k w_k B_k A_k for every layer at once: the merged strategy's switch.

On the CPU this is index_select + torch.baddbmm(W0, b, a, out=W), which copies W0 into W and then adds
b @ a: four passes over the weights, plus copies of the chosen adapters. The switch is pure memory
traffic, so on CUDA one Triton kernel per kind reads W0 once and writes W once (two passes), gathering the
chosen adapters' rows straight from the bank and forming sum_k w_k B_k A_k as small matmuls per tile
(K * rank columns, up to 64 at a time).
"""
import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the baddbmm path below is used
    triton = None


TILE = dict(BLOCK_M=32, BLOCK_N=256, num_warps=4)  # the fastest on an H200: scripts/merge_probe.py


def merge_into(out, W0, B, A, idx, w, tile=None):
    """out[l] = W0[l] + sum_k w[k] * B[l, idx[k]] @ A[l, idx[k]], fp32 accumulation, one rounding.
    out, W0: [n, M, N] (out may be a row slice of a bigger stack); B: [n, cap, M, R]; A: [n, cap, R, N];
    idx: [K] (float32 holding integers, or long) and w: [K] float32, on the weights' device."""
    if triton is None or not out.is_cuda:
        n, M, N = out.shape
        idx = idx.long()
        a = A.index_select(1, idx).reshape(n, -1, N)                                        # [n, K*R, N]
        b = (B.index_select(1, idx) * w.to(B.dtype)[None, :, None, None]).permute(0, 2, 1, 3)  # [n, M, K, R]
        torch.baddbmm(W0, b.reshape(n, M, -1), a, out=out)
        return
    n, M, N = out.shape
    R = B.shape[-1]
    tile = tile or TILE
    grid = (triton.cdiv(M, tile["BLOCK_M"]), triton.cdiv(N, tile["BLOCK_N"]), n)
    block_kr = min(64, max(16, triton.next_power_of_2(idx.shape[0] * R)))
    _merge_kernel[grid](out, W0, B, A, idx, w, M, N, idx.shape[0], R,
                        out.stride(0), out.stride(1), W0.stride(0), W0.stride(1),
                        B.stride(0), B.stride(1), B.stride(2), B.stride(3),
                        A.stride(0), A.stride(1), A.stride(2), A.stride(3),
                        BLOCK_KR=block_kr, N_KR=triton.cdiv(idx.shape[0] * R, block_kr), IEEE=out.dtype == torch.float32,
                        **tile)


if triton is not None:
    @triton.jit
    def _merge_kernel(out, W0, B, A, idx, w, M, N, K, R, so_l, so_m, sw_l, sw_m,
                      sb_l, sb_c, sb_m, sb_r, sa_l, sa_c, sa_r, sa_n,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_KR: tl.constexpr, N_KR: tl.constexpr,
                      IEEE: tl.constexpr):
        m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        nn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        layer = tl.program_id(2).to(tl.int64)
        mm, nm = m < M, nn < N
        mask = mm[:, None] & nm[None, :]
        # W0's load goes first: its latency then overlaps the gathers and the matmuls below
        w0 = tl.load(W0 + layer * sw_l + m[:, None].to(tl.int64) * sw_m + nn[None, :], mask=mask)
        delta = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        # the K chosen adapters side by side, BLOCK_KR columns at a time (a flat router can pick dozens), the
        # loop unrolled (a runtime loop kept W0's load from overlapping: 2x slower at K = 3):
        # column j of b / row j of a is adapter j // R, rank j % R
        for block in tl.static_range(N_KR):
            j = block * BLOCK_KR + tl.arange(0, BLOCK_KR)
            k, r = j // R, j % R
            jm = k < K
            i = tl.load(idx + k, mask=jm, other=0.0).to(tl.int64)                          # [BLOCK_KR]
            bt = tl.load(B + layer * sb_l + i[None, :] * sb_c + m[:, None] * sb_m + r[None, :] * sb_r,
                         mask=mm[:, None] & jm[None, :], other=0.0)                       # [BLOCK_M, BLOCK_KR]
            at = tl.load(A + layer * sa_l + i[:, None] * sa_c + r[:, None] * sa_r + nn[None, :] * sa_n,
                         mask=jm[:, None] & nm[None, :], other=0.0)                       # [BLOCK_KR, BLOCK_N]
            # the weight rounds into B's dtype first, as torch's B * w would
            bt = (bt.to(tl.float32) * tl.load(w + k, mask=jm, other=0.0)[None, :]).to(at.dtype)
            # bf16/fp16 operands go to the tensor cores (fp32 accumulation); fp32 stays exact (no tf32)
            if IEEE:
                delta = tl.dot(bt, at, delta, input_precision="ieee")                      # [BLOCK_M, BLOCK_N]
            else:
                delta = tl.dot(bt, at, delta)
        tl.store(out + layer * so_l + m[:, None].to(tl.int64) * so_m + nn[None, :],
                 (w0.to(tl.float32) + delta).to(out.dtype.element_ty), mask=mask)
