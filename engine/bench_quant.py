"""`switchboard bench --quantize int8,int4`: quantized engines next to the float (bf16) one, in the same run.

Each quantized engine is built from the float engine's weights and gets the same adapters. Per round,
interleaved: the float engine's base decode and batch, then per kind its base decode, a batch of `batch` rows
with a 3-adapter mix each, and a decode with a mix of 3 adapters switched every `switch_every` tokens
(gathered slots: integer weights take no merge). Medians over the rounds.
Quality: logits over the prompt against the float engine's (relative error, top-1 agreement); on random-init
weights (a --shape) these say little, on a real --model they are the quantization error.
Memory: the bytes of weights, adapter bank and slots, and of a one-row KV cache of 8,192 tokens; on CUDA also
weights + bank + what a decode with switched mixes at an 8K cache allocates (starting from no cache and no
captured graph), held after it and at its peak.
"""
import random
import statistics
import time

import torch

from .bench import engine_decode, random_mix, sync
from .engine import Engine
from .model import assemble, hf_targets
from .quant import QuantizedLinear

LONG_CONTEXT = 8192


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (views of one stacked weight count once)."""
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def weight_bytes(model) -> int:
    quantized = [b for m in model.modules() if isinstance(m, QuantizedLinear) for b in m.buffers(recurse=False)]
    return tensor_bytes([*model.parameters(), *quantized])


def bank_bytes(bank) -> int:
    slots = [t for groups in bank.slots.values() for s in groups for t in (s.A_sel, s.B_sel)]
    return tensor_bytes([t for groups in bank.kinds.values() for g in groups for t in (g.A, g.B)] + slots)


def quantized_copy(base: Engine, kind: str) -> Engine:
    """An engine of `base`'s weights (its base model: no adapter merged in) quantized to `kind`."""
    base.apply_mix(None)
    model = assemble(base.hf_config, base.device, base.dtype, hf_targets(base.model).items(), base.model_name, kind)
    return Engine(model, base.tokenizer, base.hf_config, base.model_dir)


def run(base: Engine, kinds, prompt, adapter_paths, new: int, runs: int, switch_every: int, batch: int,
        log=print) -> dict:
    """base: the float engine, measured next to a quantized copy of it per kind."""
    dev = base.device
    cuda = dev.type == "cuda"
    rng = random.Random(1)
    engines, res = {}, {}
    with torch.inference_mode():
        ref = base.logits(prompt).float()                                                   # [1, T, V]
    for kind in kinds:
        t = time.perf_counter()
        eng = quantized_copy(base, kind)
        for path in adapter_paths:
            eng.add_adapter(path)
        sync(dev)
        row = res[kind] = {"load_s": time.perf_counter() - t}
        t = time.perf_counter()
        eng.warmup()
        row["compile_s"] = time.perf_counter() - t
        engine_decode(eng, prompt, 8, [random_mix(eng.adapters, 3, rng)] if eng.adapters else ())
        with torch.inference_mode():
            got = eng.logits(prompt).float()
        row["logit_rel_err"] = ((got - ref).norm() / ref.norm()).item()
        row["top1_agreement"] = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
        row["quality_positions"] = prompt.shape[1]
        engines[kind] = eng
        log(f"{kind}: loaded in {row['load_s']:.1f} s, compiled in {row['compile_s']:.1f} s; logits vs float: "
            f"rel {row['logit_rel_err']:.4f}, top-1 {row['top1_agreement']:.3f}")

    def batch_tok_s(eng):  # `batch` rows, each with its own 3-adapter mix (gathered)
        mixes = [[random_mix(eng.adapters, 3, rng) for _ in range(batch)]] if eng.adapters else ()
        tok_s = batch * 1000 / engine_decode(eng, prompt.repeat(batch, 1), new, mixes)[0]
        eng.apply_mix(None)
        return tok_s

    samples = {}
    for r in range(runs):
        log(f"quantized round {r + 1}/{runs}")
        samples.setdefault("float_base_ms", []).append(engine_decode(base, prompt, new)[0])
        samples.setdefault("float_batch_tok_s", []).append(batch_tok_s(base))
        for kind, eng in engines.items():
            samples.setdefault((kind, "base_ms"), []).append(engine_decode(eng, prompt, new)[0])
            samples.setdefault((kind, "batch_tok_s"), []).append(batch_tok_s(eng))
            if eng.adapters:
                mixes = [random_mix(eng.adapters, 3, rng) for _ in range(new // switch_every + 1)]
                ms, _, switches, _ = engine_decode(eng, prompt, new, mixes, switch_every)
                samples.setdefault((kind, "fused_ms"), []).append(ms)
                samples.setdefault((kind, "switch_ms"), []).extend(s for s, _ in switches)
                samples.setdefault((kind, "switch_host_ms"), []).extend(h for _, h in switches)
                eng.apply_mix(None)
    float_ms, float_batch = (statistics.median(samples.pop(key)) for key in ("float_base_ms", "float_batch_tok_s"))
    for (kind, key), values in samples.items():
        res[kind][key] = statistics.median(values)
    for kind, eng in engines.items():
        row = res[kind]
        row["float_base_ms"], row["float_batch_tok_s"], row["batch"] = float_ms, float_batch, batch
        row["base_vs_float"] = row["base_ms"] / float_ms
        row["batch_vs_float"] = row["batch_tok_s"] / float_batch
        if "fused_ms" in row:
            row["fused_vs_base"] = row["fused_ms"] / row["base_ms"]
        row["weights_bytes"], row["bank_bytes"] = weight_bytes(eng.model), bank_bytes(eng.bank)  # slots at their largest
        row["kv_bytes_8k"] = eng.model.kv_bytes(LONG_CONTEXT)
        if cuda:  # a chat at an 8K cache, from no cache and no captured graphs: what it adds to weights and bank
            eng.model.drop_caches()
            eng.decoder.drop_graphs()
            start = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            eng.model.setup_caches(1, LONG_CONTEXT)
            engine_decode(eng, prompt, new, [random_mix(eng.adapters, 3, rng) for _ in range(new // switch_every + 1)]
                          if eng.adapters else (), switch_every)
            fixed = row["weights_bytes"] + row["bank_bytes"]
            row["cuda_held_bytes_8k"] = fixed + torch.cuda.memory_allocated(dev) - start
            row["cuda_peak_bytes_8k"] = fixed + torch.cuda.max_memory_allocated(dev) - start
    return res


def size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def table(res: dict, adapters: int, targets) -> list[str]:
    out = [f"{'quantized (same weights, same rounds)':<50}{'ms/token':>10}{'x float':>10}{'fused ms':>10}"
           f"{'x base':>8}{'switch ms':>11}"]
    for kind, row in res.items():
        fused = (f"{row['fused_ms']:>10.2f}{row['fused_vs_base']:>8.2f}{row['switch_ms']:>11.2f}"
                 if "fused_ms" in row else "")
        out.append(f"{'engine, ' + kind + ' weights':<50}{row['base_ms']:>10.2f}{row['base_vs_float']:>10.2f}{fused}")
    for kind, row in res.items():
        out.append(f"{kind}: batch of {row['batch']} rows with their own mixes {row['batch_tok_s']:.0f} tok/s = "
                   f"{row['batch_vs_float']:.2f}x the float engine's ({row['float_batch_tok_s']:.0f} tok/s)")
    for kind, row in res.items():
        line = (f"{kind}: logits vs float over {row['quality_positions']} positions: rel {row['logit_rel_err']:.4f}, "
                f"top-1 {row['top1_agreement']:.3f}; memory: weights {size(row['weights_bytes'])}, bank "
                f"({adapters} adapters, {','.join(targets)}) {size(row['bank_bytes'])}, KV at {LONG_CONTEXT} tokens "
                f"{size(row['kv_bytes_8k'])}")
        if "cuda_peak_bytes_8k" in row:
            line += (f"; on the GPU with a chat at that cache: {size(row['cuda_held_bytes_8k'])} held, "
                     f"peak {size(row['cuda_peak_bytes_8k'])}")
        out.append(line)
    return out
