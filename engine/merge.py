"""W = W0 + B @ A for every layer at once: the merged strategy's switch.

torch.baddbmm(W0, B, A, out=W) first copies W0 into W and then adds B @ A in place: four passes over
the weights. The switch is pure memory traffic, so on CUDA a Triton kernel reads W0 once and writes W once
(two passes), with B @ A computed tile by tile in registers (the rank K*r is small).
"""
import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the baddbmm path below is used
    triton = None


def merge_into(out, W0, b, a):
    """out[l] = W0[l] + b[l] @ a[l]. out, W0: [n, M, N] (out may be a row slice of a bigger stack);
    b: [n, M, R]; a: [n, R, N]; fp32 accumulation, one rounding."""
    if triton is None or not out.is_cuda:
        torch.baddbmm(W0, b, a, out=out)
        return
    n, M, N = out.shape
    R = b.shape[-1]
    BLOCK_M, BLOCK_N = 64, 128
    grid = (triton.cdiv(M, BLOCK_M), triton.cdiv(N, BLOCK_N), n)
    _merge_kernel[grid](out, W0, b, a, M, N, R,
                        out.stride(0), out.stride(1), W0.stride(0), W0.stride(1),
                        b.stride(0), b.stride(1), b.stride(2), a.stride(0), a.stride(1), a.stride(2),
                        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_R=max(16, triton.next_power_of_2(R)),
                        IEEE=out.dtype == torch.float32, num_warps=4)


if triton is not None:
    @triton.jit
    def _merge_kernel(out, W0, b, a, M, N, R, so_l, so_m, sw_l, sw_m, sb_l, sb_m, sb_r, sa_l, sa_r, sa_n,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr, IEEE: tl.constexpr):
        m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        nn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        layer = tl.program_id(2).to(tl.int64)
        r = tl.arange(0, BLOCK_R)
        mm, nm, rm = m < M, nn < N, r < R
        bt = tl.load(b + layer * sb_l + m[:, None] * sb_m + r[None, :] * sb_r, mask=mm[:, None] & rm[None, :], other=0.0)
        at = tl.load(a + layer * sa_l + r[:, None] * sa_r + nn[None, :] * sa_n, mask=rm[:, None] & nm[None, :], other=0.0)
        # bf16/fp16 operands go to the tensor cores (fp32 accumulation); fp32 stays exact (no tf32)
        if IEEE:
            delta = tl.dot(bt, at, input_precision="ieee")                       # [BLOCK_M, BLOCK_N] fp32
        else:
            delta = tl.dot(bt, at)
        mask = mm[:, None] & nm[None, :]
        w0 = tl.load(W0 + layer * sw_l + m[:, None].to(tl.int64) * sw_m + nn[None, :], mask=mask)
        tl.store(out + layer * so_l + m[:, None].to(tl.int64) * so_m + nn[None, :],
                 (w0.to(tl.float32) + delta).to(out.dtype.element_ty), mask=mask)
