"""The adapter bank and fused multi-LoRA: every adapter resident, any weighted mix switched in place.

Per Hugging Face kind (q_proj, ..., down_proj) and per device the bank keeps
    A [n_layers, N, r_max, in]     B [n_layers, N, out, r_max]   (B already times the PEFT scaling)
zero-padded to the largest rank; a module an adapter lacks stays zero. Two ways to apply a mix:
  merged   - W = W0 + sum_i w_i B_i A_i written into the model's stacked weight (one batched matmul per
             kind, engine/merge.py); decoding then costs exactly the base model. Needs a copy W0 of the
             targeted weights.
  gathered - per fused module (qkv_proj, ...) fixed slots A_sel [n_layers, rows, P*K*r, in] and
             B_sel [n_layers, rows, out, P*K*r] for the P of its kinds that some adapter targets (weights
             folded into B, block p writes only kind p's rows, unused slots zero); each LoRALinear adds
             bmm(bmm(x, A_selᵀ), B_selᵀ) per row. The only way for a quantized model (engine/quant.py),
             whose integer weights cannot take a merge; its kind stacks are zero-stride stand-ins.
Both write into tensors that already exist, so captured CUDA graphs stay valid across switches.
"""
from dataclasses import dataclass

import torch
from torch import nn

from .adapter_io import LoraWeights
from .errors import AdapterError
from .merge import merge_into
from .transformer import FUSED


class LoRALinear(nn.Module):
    """Wraps a target nn.Linear once (PEFT style); `slots` is set only while a gathered mix is in force."""

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        self.base_layer = base_layer
        self.slots: tuple[torch.Tensor, torch.Tensor] | None = None  # A_sel [rows, R, in], B_sel [rows, out, R]

    def forward(self, x):  # x: [B, T, in]
        y = self.base_layer(x)
        if self.slots is None:
            return y
        a, b = self.slots
        rows = x.shape[0]
        return y + torch.bmm(torch.bmm(x, a[:rows].transpose(1, 2)), b[:rows].transpose(1, 2))


@dataclass
class Group:
    """One Hugging Face kind on one device: layers [start, start + n)."""
    start: int
    weight: torch.Tensor                  # [n, out, in] row slice of the model's stacked fused weight (stand-in if quantized)
    A: torch.Tensor                       # [n, cap, r_max, in]
    B: torch.Tensor                       # [n, cap, out, r_max]
    W0: torch.Tensor | None = None        # [n, out, in] pristine copy, merged strategy only


@dataclass
class Slots:
    """Gathered-strategy buffers of one fused module on one device."""
    start: int
    A_sel: torch.Tensor                   # [n, rows, P * K * r_max, in]
    B_sel: torch.Tensor                   # [n, rows, out, P * K * r_max]
    views: list                           # per layer (A_sel[i], B_sel[i]): the tensors LoRALinear.slots holds


class AdapterBank:
    def __init__(self, model):
        self.model = model
        self.names: list[str] = []
        self.info: dict[str, dict] = {}          # name -> source, rank, targets, nbytes, config
        self.kinds: dict[str, list[Group]] = {}  # only kinds some adapter targets
        self.r_max = 0
        self.cap = 0
        self.mode = "base"                       # "base" | "merged" | "gathered"
        self.slots: dict[str, list[Slots]] = {}  # fused module -> gathered buffers per device
        self.slot_shape = (0, 0)                 # (rows, K) of the gathered buffers
        self.slot_version = 0                    # bumped when they are reallocated (captured graphs read them)
        self.version = 0                         # bumped by add and remove (captured switch graphs read the bank)
        self._switch_graphs: dict[tuple, torch.cuda.CUDAGraph] = {}   # (K, version) -> merged switch
        self._sel = None                         # pinned staging, device buffer, copy event of the mix
        for layer in model.model.layers:
            for fused, (parent, _) in FUSED.items():
                module = getattr(layer, parent)
                setattr(module, fused, LoRALinear(getattr(module, fused)))

    def lora_linear(self, layer: int, fused: str) -> LoRALinear:
        return getattr(getattr(self.model.model.layers[layer], FUSED[fused][0]), fused)

    # ---- adding and removing --------------------------------------------------------------------
    def add(self, lw: LoraWeights):
        """Upload one validated adapter. Builds all new tensors before touching the bank (all or nothing)."""
        if lw.name in self.info:
            raise AdapterError(f"an adapter named '{lw.name}' is already loaded; remove it or choose another name")
        n, r, cap = len(self.names), max(self.r_max, lw.rank), self.cap
        if n + 1 > cap or r > self.r_max:
            cap = max(4, cap * 2) if n + 1 > cap else cap
        new_kinds = {k: self._grown(k, cap, r) for k in set(self.kinds) | set(lw.targets)}
        with torch.no_grad():
            for name, (a, b) in lw.modules.items():
                layer, kind = int(name.split(".")[2]), name.rsplit(".", 1)[1]
                g = next(g for g in new_kinds[kind] if g.start <= layer < g.start + g.A.shape[0])
                i = layer - g.start
                g.A[i, n, : a.shape[0]] = a.to(g.A)
                g.B[i, n, :, : b.shape[1]] = b.to(g.B)
        self.restore_base()
        self.kinds, self.r_max, self.cap = new_kinds, r, cap
        self.slots, self.slot_shape = {}, (0, 0)  # rebuilt at the next gathered switch
        self.names.append(lw.name)
        self.version += 1
        self.info[lw.name] = {"source": lw.source, "rank": lw.rank, "targets": lw.targets, "nbytes": lw.nbytes,
                              "config": lw.config}

    def _grown(self, kind, cap, r) -> list[Group]:
        """The kind's groups with room for `cap` adapters of rank `r` (same tensors when they fit)."""
        groups = []
        for start, weight in self.model.kind_stacks[kind]:
            old = next((g for g in self.kinds.get(kind, []) if g.start == start), None)
            if old is not None and old.A.shape[1] >= cap and old.A.shape[2] >= r:
                groups.append(Group(start, weight, old.A, old.B, old.W0))
                continue
            n_layers, d_out, d_in = weight.shape
            A = weight.new_zeros(n_layers, cap, r, d_in)
            B = weight.new_zeros(n_layers, cap, d_out, r)
            if old is not None:
                n_old, r_old = old.A.shape[1], old.A.shape[2]
                A[:, :n_old, :r_old] = old.A
                B[:, :n_old, :, :r_old] = old.B
            groups.append(Group(start, weight, A, B, old.W0 if old is not None else None))
        return groups

    def remove(self, name: str):
        if name not in self.info:
            raise AdapterError(f"no adapter named '{name}' (loaded: {', '.join(self.names) or 'none'})")
        i, n = self.names.index(name), len(self.names)
        self.restore_base()
        with torch.no_grad():
            for groups in self.kinds.values():
                for g in groups:  # shift the later adapters down one slot and clear the last
                    g.A[:, i : n - 1] = g.A[:, i + 1 : n].clone()
                    g.B[:, i : n - 1] = g.B[:, i + 1 : n].clone()
                    g.A[:, n - 1].zero_()
                    g.B[:, n - 1].zero_()
        self.names.remove(name)
        del self.info[name]
        self.version += 1

    def graph_key(self) -> tuple:
        """What a captured decode graph depends on besides the caches: whether and which slot buffers it reads
        (merged and base modes change weights in place, so one graph serves both)."""
        return ("gathered", self.slot_version) if self.mode == "gathered" else ()

    # ---- switching ------------------------------------------------------------------------------
    def check(self, mix: dict[str, float]):
        """Refuse a mix naming an adapter the bank lacks, or with a weight that is not a number above 0."""
        unknown = [k for k in mix if k not in self.info]
        if unknown:
            raise AdapterError(f"unknown adapter {unknown[0]!r} in mix (loaded: {', '.join(self.names) or 'none'})")
        bad = [(k, w) for k, w in mix.items() if not (isinstance(w, (int, float)) and 0 < w < float("inf"))]
        if bad:
            raise AdapterError(f"the weight of {bad[0][0]!r} in the mix must be a number above 0, got {bad[0][1]!r}")

    def _index(self, mix: dict[str, float]) -> tuple[list[int], list[float]]:
        self.check(mix)
        items = [(self.names.index(k), float(w)) for k, w in mix.items() if w != 0]
        return [i for i, _ in items], [w for _, w in items]

    def merge(self, mix: dict[str, float] | None):
        """Write W0 + ΔW_mix into every targeted weight in place (one kernel per kind and device)."""
        self._set_gathered(False)
        idx, w = self._index(mix or {})
        if not idx:
            return self.restore_base()
        if self.model.quantize:
            raise AdapterError(f"a {self.model.quantize} model cannot merge adapters into its weights; use gather()")
        groups = [g for gs in self.kinds.values() for g in gs]
        with torch.no_grad():
            for g in groups:
                if g.W0 is None:
                    g.W0 = g.weight.clone()
            devices = {g.weight.device for g in groups}
            if len(devices) == 1 and next(iter(devices)).type == "cuda":
                self._merge_replayed(groups, idx, w)
            else:  # the CPU, or a model split across GPUs
                sel = {d: torch.tensor([idx, w], dtype=torch.float32, device=d) for d in devices}
                for g in groups:
                    merge_into(g.weight, g.W0, g.B, g.A, *sel[g.weight.device])
        self.mode = "merged"

    def _merge_replayed(self, groups, idx, w):
        """One GPU: the kernels of all kinds are one CUDA graph per mix size K, reading the mix from a device
        buffer. Launching them one by one cost ~0.1 ms of host time each on an H200 machine (q,k,v,o: 4)."""
        k, dev = len(idx), groups[0].weight.device
        if self._sel is None or self._sel[0].shape[1] < k:
            n = max(8, k)
            self._sel = (torch.zeros(2, n, pin_memory=True), torch.zeros(2, n, device=dev), torch.cuda.Event())
            self._switch_graphs = {}
        staged, sel, copied = self._sel                                       # [2, Kmax]: indices, weights
        copied.synchronize()  # the last switch's copy has left the staging buffer
        staged[0, :k] = torch.tensor(idx, dtype=torch.float32)
        staged[1, :k] = torch.tensor(w, dtype=torch.float32)
        sel.copy_(staged, non_blocking=True)
        copied.record()
        key = (k, self.version)
        graph = self._switch_graphs.get(key)
        if graph is not None:
            graph.replay()
            return

        def kernels():
            for g in groups:
                merge_into(g.weight, g.W0, g.B, g.A, sel[0, :k], sel[1, :k])

        kernels()  # this switch, eagerly (it also compiles the kernel for this K)
        self._switch_graphs = {old: g for old, g in self._switch_graphs.items() if old[1] == self.version}
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            kernels()
        self._switch_graphs[key] = graph

    def restore_base(self):
        if self.mode == "merged":
            with torch.no_grad():
                for groups in self.kinds.values():
                    for g in groups:
                        g.weight.copy_(g.W0)
        self._set_gathered(False)
        self.mode = "base"

    def gather(self, mixes: list[dict[str, float] | None]):
        """Per-row mixes for a batch: fill the slot buffers in place (rows beyond len(mixes) are unused)."""
        if self.mode == "merged":
            self.restore_base()
        rows = [self._index(m or {}) for m in mixes]
        k = max(1, max(len(i) for i, _ in rows))
        if len(mixes) > self.slot_shape[0] or k > self.slot_shape[1]:
            self._alloc_slots(max(len(mixes), self.slot_shape[0]), max(k, self.slot_shape[1]))
        n_rows, k = self.slot_shape
        idx = torch.zeros(n_rows, k, dtype=torch.long)
        wts = torch.zeros(n_rows, k)
        for r, (i, w) in enumerate(rows):
            idx[r, : len(i)] = torch.tensor(i, dtype=torch.long)
            wts[r, : len(w)] = torch.tensor(w)
        kr = k * self.r_max
        flat = {}  # device -> (indices, weights), each copied once
        with torch.no_grad():
            for fused, slot_groups in self.slots.items():
                for s in slot_groups:
                    for p, (kind, row, n_out) in enumerate(self._slot_parts(fused)):
                        g = next(g for g in self.kinds[kind] if g.start == s.start)
                        n_layers, d_out, d_in = g.weight.shape
                        if g.A.device not in flat:
                            flat[g.A.device] = (idx.flatten().to(g.A.device), wts.flatten().to(g.A.device))
                        i, w = flat[g.A.device]
                        a = g.A.index_select(1, i).reshape(n_layers, n_rows, kr, d_in)      # [n, rows, K*r, in]
                        b = g.B.index_select(1, i) * w.to(g.B.dtype)[None, :, None, None]
                        b = b.reshape(n_layers, n_rows, k, d_out, -1).permute(0, 1, 3, 2, 4)  # [n, rows, out, K, r]
                        s.A_sel[:, :, p * kr:(p + 1) * kr] = a
                        s.B_sel[:, :, row:row + n_out, p * kr:(p + 1) * kr] = b.reshape(n_layers, n_rows, d_out, kr)
        self._set_gathered(True)
        self.mode = "gathered"

    def _slot_parts(self, fused) -> list[tuple[str, int, int]]:
        """(kind, first row, rows) of the fused module's kinds that some adapter targets: its slot blocks."""
        return [part for part in self.model.args.parts(fused) if part[0] in self.kinds]

    def slot_modules(self) -> set[str]:
        """The fused modules (qkv_proj, ...) that carry slots in the gathered strategy: those holding a kind
        some adapter targets."""
        return {fused for fused in FUSED if self._slot_parts(fused)}

    def _alloc_slots(self, rows, k):
        """Zeroed slot buffers for every fused module holding a kind some adapter targets. At least 2 rows and
        2 adapter slots: the compiled decode layer then sees the same kind of shape at every batch size and
        mix size (a dimension of 1 would be a graph of its own, engine/decode.py)."""
        rows, k = max(rows, 2), max(k, 2)
        self.slots = {}
        for fused in self.slot_modules():
            parts = self._slot_parts(fused)
            d_in, d_out = self.model.args.fused_shape(fused)
            width = len(parts) * k * self.r_max
            groups = []
            for g in self.kinds[parts[0][0]]:
                a = g.weight.new_zeros(g.weight.shape[0], rows, width, d_in)
                b = g.weight.new_zeros(g.weight.shape[0], rows, d_out, width)
                views = [(a[i], b[i]) for i in range(a.shape[0])]
                if a.is_cuda:
                    from torch._dynamo import mark_dynamic  # rows and width vary: one compiled graph for all
                    for va, vb in views:
                        for t, dim in ((va, 0), (va, 1), (vb, 0), (vb, 2)):
                            mark_dynamic(t, dim)
                groups.append(Slots(g.start, a, b, views))
            self.slots[fused] = groups
        self.slot_shape = (rows, k)
        self.slot_version += 1

    def _set_gathered(self, on: bool):
        if not on and self.mode != "gathered":
            return  # already off: skip touching every layer (a merged switch would pay ~3 µs per layer)
        for fused, slot_groups in self.slots.items():
            for s in slot_groups:
                for i, view in enumerate(s.views):
                    self.lora_linear(s.start + i, fused).slots = view if on else None
