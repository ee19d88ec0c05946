"""Times the merged switch's kernel (engine/merge.py) on a GPU for the Llama-3-8B q and v shapes, against a
plain copy of the same weights (the floor: a switch must at least read W0 and write W), for a few tile
shapes. Not a test: run it on the GPU when changing the kernel. `python scripts/merge_probe.py`"""
import itertools

import torch
from triton.testing import do_bench

from engine.merge import TILE, merge_into

CAP, R, K, LAYERS = 128, 8, 3, 32


def main():
    g = torch.Generator("cuda").manual_seed(0)
    idx = torch.tensor([5.0, 77, 101], device="cuda")
    w = torch.tensor([0.5, 0.3, 0.2], device="cuda")
    for name, (d_out, d_in) in {"q_proj": (4096, 4096), "v_proj": (1024, 4096)}.items():
        W0 = torch.randn(LAYERS, d_out, d_in, device="cuda", generator=g, dtype=torch.bfloat16)
        out = torch.empty_like(W0)
        B = torch.randn(LAYERS, CAP, d_out, R, device="cuda", generator=g, dtype=torch.bfloat16)
        A = torch.randn(LAYERS, CAP, R, d_in, device="cuda", generator=g, dtype=torch.bfloat16)
        gb = 2 * W0.numel() * W0.element_size() / 1e9
        copy = do_bench(lambda: out.copy_(W0), warmup=50, rep=300)
        print(f"{name} {tuple(W0.shape)}: copy {copy * 1000:.0f} us ({gb / copy:.2f} TB/s)")
        for bm, bn, warps in itertools.product((16, 32, 64), (128, 256, 512), (4, 8)):
            tile = dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=warps)
            ms = do_bench(lambda: merge_into(out, W0, B, A, idx, w, tile), warmup=50, rep=300)
            mark = " <- engine" if tile == TILE else ""
            print(f"  merge {bm:>3}x{bn:<3} warps {warps}: {ms * 1000:6.0f} us ({gb / ms:.2f} TB/s){mark}")

        def gather_first():  # the chosen adapters copied out first, then one dot over K*R per tile
            b = (B.index_select(1, idx.long()) * w.to(B.dtype)[None, :, None, None]).permute(0, 2, 1, 3)
            b = b.reshape(LAYERS, 1, d_out, K * R)
            a = A.index_select(1, idx.long()).reshape(LAYERS, 1, K * R, d_in)
            merge_into(out, W0, b, a, idx[:1] * 0, w[:1] * 0 + 1)
        ms = do_bench(gather_first, warmup=50, rep=300)
        print(f"  gather first, then merge: {ms * 1000:6.0f} us")


if __name__ == "__main__":
    main()
