"""Weight-only int8 and int4 linear layers, quantized from the float weights while the model loads.

int8: per output channel, symmetric.  W ≈ q * s;  q int8 [out, in], s [out].
int4: per group of 128 inputs (64 or 32 where `in` is not a multiple of 128), asymmetric, as torch's int4
      kernels expect:  W ≈ (q - 8) * s + z;  q in 0..15, (s, z) per (group, output).

Kernels, all torch's own (the same ops and schemas on torch 2.11 and 2.13; tests/test_gpu_quant.py runs the CUDA
ones):
- int4, CUDA: `aten._weight_int4pack_mm` (the tinygemm kernel gpt-fast and torchao use; bf16 activations) on
  weights packed once by `aten._convert_weight_to_int4pack`. CPU: `aten._weight_int4pack_mm_for_cpu` on
  `aten._convert_weight_to_int4pack_for_cpu`.
- int8, CPU: `aten._weight_int8pack_mm`. CUDA: written out as torch ops. In the compiled decode step one
  token's projection is a matrix-vector product written as multiply-and-sum, which Inductor compiles into one
  reduction kernel that reads the int8 weight and converts it in registers (gpt-fast's form); elsewhere (a
  prefill, several rows, eager code, where that form would materialise a float32 copy) the weight is
  dequantized into a cuBLAS matmul. (aten's CUDA `_weight_int8pack_mm` is a one-thread-per-output loop.)
Everything is a plain op with a meta kernel, so the decode step compiles and its CUDA graph captures.

A module receives its float weight as row blocks (a fused module's Hugging Face parts, in any order) and
quantizes on its own device once every row is in: the float weights never all sit on the GPU.
"""
import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("int8", "int4")
GROUPS = (128, 64, 32)      # int4 group sizes, the largest that divides `in` is used
BITS = {"int8": 8, "int4": 4.25}  # stored bits per weight, scales included (for placing layers on GPUs)


class QuantizedLinear(nn.Module):
    def __init__(self, d_in: int, d_out: int, bias: bool, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.in_features, self.out_features = d_in, d_out
        self.compute_dtype, self.device = dtype, device
        self.bias = nn.Parameter(torch.empty(d_out, dtype=dtype, device=device), requires_grad=False) if bias else None
        self.loaded = False
        self._rows: dict[int, torch.Tensor] = {}  # first row -> float [n, in], until every row is in

    def load_rows(self, row: int, w: torch.Tensor):
        """Rows [row, row + n) of the float weight; the last block quantizes the whole weight."""
        self._rows[row] = w
        if sum(p.shape[0] for p in self._rows.values()) == self.out_features:
            full = torch.cat([self._rows[r] for r in sorted(self._rows)]).to(self.device, torch.float32)
            self._rows = {}
            with torch.no_grad():
                self.quantize(full)
            self.loaded = True

    def forward(self, x):  # x: [..., in]
        y = self.matmul(x.reshape(-1, self.in_features)).view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Linear(QuantizedLinear):
    def quantize(self, w):  # w: [out, in] float32
        scale = (w.abs().amax(1) / 127).to(self.compute_dtype)                      # [out], as stored
        scale = scale.masked_fill(scale == 0, 1)  # a row of zeros (or too small for the dtype): its weights round to 0
        q = (w / scale.float()[:, None]).round_().clamp_(-127, 127)
        self.register_buffer("qweight", q.to(torch.int8))                          # [out, in]
        self.register_buffer("scale", scale)

    def matmul(self, x):  # x: [M, in] -> [M, out]
        if x.device.type == "cpu":
            return torch.ops.aten._weight_int8pack_mm(x.contiguous(), self.qweight, self.scale)
        if x.shape[0] == 1 and torch.compiler.is_compiling():  # one token: Inductor fuses the int8 load into it
            return ((x.float()[:, None, :] * self.qweight).sum(-1) * self.scale).to(x.dtype)
        return F.linear(x, self.qweight.to(x.dtype)) * self.scale


class Int4Linear(QuantizedLinear):
    def __init__(self, d_in, d_out, bias, dtype, device):
        super().__init__(d_in, d_out, bias, dtype, device)
        self.group = next(g for g in GROUPS if d_in % g == 0)
        self.inner_k_tiles = self.group // 16  # the CUDA packing's k-tiles of 16: `in` must be a multiple of 16x them

    def quantize(self, w):
        out, d_in, g = self.out_features, self.in_features, self.group
        groups = w.reshape(out, d_in // g, g)
        lo, hi = groups.amin(-1), groups.amax(-1)                                   # [out, in/g]
        # the kernels read bf16 scales on CUDA, the activations' dtype on the CPU: q is chosen for the stored values
        dtype = torch.bfloat16 if self.device.type == "cuda" else self.compute_dtype
        scale = ((hi - lo).clamp(min=1e-6) / 15).to(dtype)
        zero = (lo + 8 * scale.float()).to(dtype)
        q = ((groups - (zero.float() - 8 * scale.float())[..., None]) / scale.float()[..., None]).round_().clamp_(0, 15)
        q = q.reshape(out, d_in).to(torch.int32)
        if self.device.type == "cuda":
            packed = torch.ops.aten._convert_weight_to_int4pack((q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8),
                                                                self.inner_k_tiles)
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, self.inner_k_tiles)
        self.register_buffer("qweight", packed)
        self.register_buffer("scales_zeros", torch.stack([scale, zero], -1).transpose(0, 1).contiguous())  # [in/g, out, 2]

    def matmul(self, x):
        if x.device.type == "cpu":
            return torch.ops.aten._weight_int4pack_mm_for_cpu(x.contiguous(), self.qweight, self.group,
                                                              self.scales_zeros)
        y = torch.ops.aten._weight_int4pack_mm(x.to(torch.bfloat16).contiguous(), self.qweight, self.group,
                                               self.scales_zeros)
        return y.to(x.dtype)


def quantized_linear(kind: str, d_in: int, d_out: int, bias: bool, dtype, device) -> QuantizedLinear:
    """int4 where the kernels take the shape (`in` a multiple of 32, `out` of 16), else int8."""
    if kind == "int4" and d_in % GROUPS[-1] == 0 and d_out % 16 == 0:
        return Int4Linear(d_in, d_out, bias, dtype, device)
    return Int8Linear(d_in, d_out, bias, dtype, device)
