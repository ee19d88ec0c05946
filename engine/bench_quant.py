"""`switchboard bench --quantize int8,int4`: quantized engines next to the float (bf16) one, in the same run.

Each quantized engine is built from the float engine's weights and gets the same adapters. Per round,
interleaved: the float engine's base decode, then per kind its base decode and its decode with a mix of 3
adapters switched every `switch_every` tokens (gathered slots: integer weights take no merge). Medians over
the rounds. Quality: logits over the prompt against the float engine's (relative error, top-1 agreement); on
random-init weights (a --shape) these say little, on a real --model they are the quantization error. Memory: the
bytes of weights, adapter bank and slots, and of a KV cache for 8,192 tokens; on CUDA also what the allocator
holds for the engine (measured as it is built and warmed up, plus what a decode at the 8K cache adds) and
its peak during that decode.
"""
import random
import statistics
import time

import torch

from .bench import engine_decode, random_mix, sync
from .errors import SwitchboardError
from .quant import KINDS, QuantizedLinear

LONG_CONTEXT = 8192


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """"int8,int4" -> the kinds to time; None or "" -> none."""
    kinds = tuple(k.strip() for k in (text or "").split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SwitchboardError(f"--quantize: unknown kind '{unknown[0]}'; use int8, int4 or int8,int4")
    return kinds


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (views of one stacked weight count once)."""
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def weight_bytes(model) -> int:
    quantized = [b for m in model.modules() if isinstance(m, QuantizedLinear) for b in m.buffers(recurse=False)]
    return tensor_bytes([*model.parameters(), *quantized])


def bank_bytes(bank) -> int:
    slots = [t for groups in bank.slots.values() for s in groups for t in (s.A_sel, s.B_sel)]
    return tensor_bytes([t for groups in bank.kinds.values() for g in groups for t in (g.A, g.B)] + slots)


def kv_bytes(model) -> int:
    return tensor_bytes([t for layer in model.model.layers for t in (layer.self_attn.kv_cache.k,
                                                                     layer.self_attn.kv_cache.v)])


def run(base, make, kinds, prompt, adapter_paths, new: int, runs: int, switch_every: int, log=print) -> dict:
    """base: the float engine; make(kind) -> a quantized Engine of the same weights."""
    dev = base.device
    cuda = dev.type == "cuda"
    rng = random.Random(1)
    engines, res = {}, {}
    with torch.inference_mode():
        ref = base.logits(prompt).float()                                                   # [1, T, V]
    allocated = (lambda: torch.cuda.memory_allocated(dev)) if cuda else (lambda: 0)
    for kind in kinds:
        sync(dev)
        before = allocated()
        t = time.perf_counter()
        eng = make(kind)
        for path in adapter_paths:
            eng.add_adapter(path)
        sync(dev)
        row = res[kind] = {"load_s": time.perf_counter() - t}
        t = time.perf_counter()
        engine_decode(eng, prompt, 8)
        if eng.adapters:
            engine_decode(eng, prompt, 8, [random_mix(eng.adapters, 3, rng)])
        row["compile_s"] = time.perf_counter() - t
        row["held"] = allocated() - before   # weights, bank, slots, captured graphs, the warm-up's KV cache
        with torch.inference_mode():
            got = eng.logits(prompt).float()
        row["logit_rel_err"] = ((got - ref).norm() / ref.norm()).item()
        row["top1_agreement"] = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
        row["quality_positions"] = prompt.shape[1]
        row["weights_bytes"], row["bank_bytes"] = weight_bytes(eng.model), bank_bytes(eng.bank)
        engines[kind] = eng
        log(f"{kind}: loaded in {row['load_s']:.1f} s, compiled in {row['compile_s']:.1f} s; logits vs float: "
            f"rel {row['logit_rel_err']:.4f}, top-1 {row['top1_agreement']:.3f}")

    samples = {}
    for r in range(runs):
        log(f"quantized round {r + 1}/{runs}")
        samples.setdefault("float_base_ms", []).append(engine_decode(base, prompt, new)[0])
        for kind, eng in engines.items():
            samples.setdefault((kind, "base_ms"), []).append(engine_decode(eng, prompt, new)[0])
            if eng.adapters:
                mixes = [random_mix(eng.adapters, 3, rng) for _ in range(new // switch_every + 1)]
                ms, _, switches, _ = engine_decode(eng, prompt, new, mixes, switch_every)
                samples.setdefault((kind, "fused_ms"), []).append(ms)
                samples.setdefault((kind, "switch_ms"), []).extend(s for s, _ in switches)
                samples.setdefault((kind, "switch_host_ms"), []).extend(h for _, h in switches)
                eng.apply_mix(None)
    float_ms = statistics.median(samples.pop("float_base_ms"))
    for (kind, key), values in samples.items():
        res[kind][key] = statistics.median(values)
    for kind, eng in engines.items():
        row = res[kind]
        row["float_base_ms"] = float_ms
        row["base_vs_float"] = row["base_ms"] / float_ms
        if "fused_ms" in row:
            row["fused_vs_base"] = row["fused_ms"] / row["base_ms"]
        # the long-context footprint, last: the 8K cache would slow the timed decodes above
        held, start = row.pop("held"), allocated()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        eng.model.setup_caches(1, LONG_CONTEXT, eng.model.rope_table)
        row["kv_bytes_8k"] = kv_bytes(eng.model)
        if cuda:
            engine_decode(eng, prompt, new, [random_mix(eng.adapters, 3, rng)] if eng.adapters else ())
            row["cuda_resident_bytes_8k"] = held + allocated() - start
            row["cuda_peak_bytes_8k"] = held + torch.cuda.max_memory_allocated(dev) - start
    return res


def table(res: dict, adapters: int, targets) -> list[str]:
    gib = 2 ** 30
    out = [f"{'quantized (same weights, same rounds)':<50}{'ms/token':>10}{'x float':>10}{'fused ms':>10}"
           f"{'x base':>8}{'switch ms':>11}"]
    for kind, row in res.items():
        fused = (f"{row['fused_ms']:>10.2f}{row['fused_vs_base']:>8.2f}{row['switch_ms']:>11.2f}"
                 if "fused_ms" in row else "")
        out.append(f"{'engine, ' + kind + ' weights':<50}{row['base_ms']:>10.2f}{row['base_vs_float']:>10.2f}{fused}")
    for kind, row in res.items():
        line = (f"{kind}: logits vs float over {row['quality_positions']} positions: rel {row['logit_rel_err']:.4f}, "
                f"top-1 {row['top1_agreement']:.3f}; memory: weights {row['weights_bytes'] / gib:.2f} GiB, bank "
                f"({adapters} adapters, {','.join(targets)}) {row['bank_bytes'] / gib:.2f} GiB, KV at "
                f"{LONG_CONTEXT} tokens {row['kv_bytes_8k'] / gib:.2f} GiB")
        if "cuda_peak_bytes_8k" in row:
            line += (f"; CUDA, decoding at that cache: {row['cuda_resident_bytes_8k'] / gib:.2f} GiB held, "
                     f"peak {row['cuda_peak_bytes_8k'] / gib:.2f} GiB")
        out.append(line)
    return out
