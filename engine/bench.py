"""`switchboard bench`: the engine against Hugging Face and PEFT, measured side by side in one run.

Every variant decodes `new` tokens after a `prompt`-token prompt at batch 1 (EOS ignored); runs are
interleaved (one run of each variant per round) and the median over rounds is reported. Decode ms/token
excludes the prefill, which is reported as time to first token.
"""
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from .decode import cache_len, prefill
from .engine import Engine
from .model import DTYPES, assemble, resolve_device
from .transformer import LINEAR_KINDS
from .workloads import synthetic_tokenizer

SHAPES = {
    "llama3-8b": dict(model_type="llama", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, intermediate_size=14336, vocab_size=128256, rope_theta=500000.0,
                      max_position_embeddings=8192, tie_word_embeddings=False),
    "qwen2-1.5b": dict(model_type="qwen2", hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2, intermediate_size=8960, vocab_size=151936, rope_theta=1000000.0,
                       max_position_embeddings=32768, tie_word_embeddings=True),
    "tiny": dict(model_type="llama", hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=688, vocab_size=4096, max_position_embeddings=8192),
}


def parse_targets(text: str) -> tuple[str, ...]:
    """"q_proj,v_proj" or "all-linear" -> the module kinds."""
    return LINEAR_KINDS if text == "all-linear" else tuple(t.strip() for t in text.split(","))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(shape: str | None, model_dir: str | None, device: str, dtype: str):
    """-> (engine, hf_model_factory). The HF model is built twice (plain and PEFT) from the same weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    dev = resolve_device(device)
    dt = DTYPES[dtype if dtype != "auto" else ("bfloat16" if dev.type == "cuda" else "float32")]
    if model_dir:
        engine = Engine.load(model_dir, device=str(dev), dtype=str(dt).removeprefix("torch."))
        state = {k: v for k, v in AutoModelForCausalLM.from_pretrained(model_dir, dtype=dt).state_dict().items()}
        cfg = engine.hf_config
    else:
        spec = dict(SHAPES[shape])
        cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
        torch.manual_seed(0)
        with torch.device(dev):
            hf = AutoModelForCausalLM.from_config(cfg, dtype=dt)
        state = hf.state_dict()
        engine = Engine(assemble(cfg, dev, dt, state.items(), shape), synthetic_tokenizer(cfg.vocab_size), cfg,
                        Path(shape))
        del hf

    def hf_model():
        with torch.device(dev):
            m = AutoModelForCausalLM.from_config(cfg, dtype=dt)
        m.load_state_dict(state, strict=False)
        if getattr(cfg, "tie_word_embeddings", False):
            m.tie_weights()
        return m.eval()

    return engine, hf_model


def write_adapters(root: Path, module_shapes: dict, n: int, rank: int, targets, dtype) -> list[Path]:
    """n random PEFT LoRA folders (adapter_config.json + adapter_model.safetensors) for a model's module_shapes."""
    from peft import LoraConfig

    shapes = {m: s for m, s in module_shapes.items() if m.rsplit(".", 1)[1] in targets}
    g = torch.Generator().manual_seed(1)
    paths = []
    for i in range(n):
        path = root / f"adapter{i:03d}"
        LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), task_type="CAUSAL_LM").save_pretrained(path)
        tensors = {}
        for m, (d_in, d_out) in shapes.items():
            tensors[f"base_model.model.{m}.lora_A.weight"] = (torch.randn(rank, d_in, generator=g) / d_in ** 0.5).to(dtype)
            tensors[f"base_model.model.{m}.lora_B.weight"] = (torch.randn(d_out, rank, generator=g) * 0.02).to(dtype)
        save_file(tensors, path / "adapter_model.safetensors")
        paths.append(path)
    return paths


SAMPLED = (0.7, 0, 0.9, 1.0)  # temperature, top-k, top-p, repetition penalty of the sampled rows


def engine_decode(engine: Engine, prompt, new: int, mixes=(), switch_every: int = 0, sampled=False):
    """Decode `new` tokens for `prompt` [B, T]; every `switch_every` tokens switch to the next mix; `sampled`:
    SAMPLED's settings instead of greedy. -> (decode ms/token, ttft ms, [(switch ms, of which host ms)],
    tokens [B, new]). The loop is generate()'s: one host read per token."""
    dev = engine.device
    rows, T = prompt.shape
    engine.forget_kv()
    engine.model.setup_caches(rows, cache_len(T + new))
    pad = torch.zeros(rows, dtype=torch.long, device=dev)
    params = torch.tensor(SAMPLED if sampled else (0.0, 0, 1, 1), device=dev)
    mixes = list(mixes)
    engine.apply_mix(mixes.pop(0) if mixes else None, rows)
    sync(dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        nxt = prefill(engine.model, prompt, 0, None, None, params, not sampled)
        tokens = [nxt.tolist()]
        t1 = time.perf_counter()
        engine.decoder.begin(nxt, T, pad, None, params)
        switches = []
        for i in range(1, new):
            if switch_every and i % switch_every == 0 and mixes:
                ts = time.perf_counter()
                engine.apply_mix(mixes.pop(0), rows)
                th = time.perf_counter()
                sync(dev)
                switches.append(((time.perf_counter() - ts) * 1000, (th - ts) * 1000))
            tokens.append(engine.decoder.step(engine.model, not sampled, engine.bank.graph_key()))
    t2 = time.perf_counter()
    return (t2 - t1) * 1000 / (new - 1), (t1 - t0) * 1000, switches, [list(r) for r in zip(*tokens)]


def hf_decode(model, prompt, new: int, **kw):
    """HF generate, eager: decode ms/token = (time for `new` tokens - time for 1) / (new - 1)."""
    def timed(n):
        sync(prompt.device)
        t = time.perf_counter()
        with torch.inference_mode():
            model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, **kw)
        sync(prompt.device)
        return (time.perf_counter() - t) * 1000
    first = timed(1)
    return (timed(new) - first) / (new - 1), first


def random_mix(names, k, rng):
    chosen = rng.sample(names, k)
    w = [rng.random() + 0.1 for _ in chosen]
    return {n: x / sum(w) for n, x in zip(chosen, w)}


def run(shape="tiny", model_dir=None, device="auto", dtype="auto", adapters=100, rank=8, targets="q_proj,v_proj",
        prompt_len=256, new=128, runs=3, switch_every=20, batch=8, peft=True, quantize=(), log=print) -> dict:
    targets = parse_targets(targets)
    engine, hf_model = build(shape, model_dir, device, dtype)
    dev, dt = engine.device, engine.dtype
    params = sum(p.numel() for p in engine.model.parameters())
    rng = random.Random(0)
    prompt = torch.randint(0, engine.model.args.vocab_size, (1, prompt_len), device=dev,
                           generator=torch.Generator(dev).manual_seed(0))
    long_prompt = torch.randint(0, engine.model.args.vocab_size, (1, min(8000, engine.context_len - new - 1)),
                                device=dev, generator=torch.Generator(dev).manual_seed(1))
    res = {"shape": model_dir or shape, "device": str(torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"),
           "dtype": str(dt).removeprefix("torch."), "params": params, "prompt": prompt_len, "new": new,
           "runs": runs, "adapters": adapters, "rank": rank, "targets": list(targets), "long_prompt": long_prompt.shape[1]}

    tmp = tempfile.TemporaryDirectory()
    names, paths = [], []
    if adapters:
        paths = write_adapters(Path(tmp.name), engine.module_shapes(), adapters, rank, targets, dt)
        sync(dev)
        t = time.perf_counter()
        for p in paths:
            engine.add_adapter(p)
        sync(dev)
        res["import_s"] = time.perf_counter() - t
        names = engine.adapters
        bank = sum(g.A.numel() + g.B.numel() for gs in engine.bank.kinds.values() for g in gs)
        used = adapters * sum(rank * (i + o) for m, (i, o) in engine.module_shapes().items()
                              if m.rsplit(".", 1)[1] in targets)
        res["adapter_params"] = used
        res["adapter_params_pct_of_model"] = 100 * used / params
        res["bank_bytes"] = bank * torch.finfo(dt).bits // 8
        log(f"imported {adapters} adapters in {res['import_s']:.1f} s; they hold {used / 1e6:.1f} M params "
            f"({res['adapter_params_pct_of_model']:.3f}% of the model)")
    # compile warm-up (one-off per model load, the adapters' gathered modules included)
    t = time.perf_counter()
    engine.warmup()
    res["compile_s"] = time.perf_counter() - t
    log(f"compile + warm-up: {res['compile_s']:.1f} s")
    if adapters:
        # warm the fused paths (merged single stream, gathered batch) before timing
        engine_decode(engine, prompt, 8, [random_mix(names, 3, rng)])
        engine_decode(engine, prompt.repeat(batch, 1), 8, [[random_mix(names, 3, rng) for _ in range(batch)]])
        engine.apply_mix(None)
        w0 = sum(g.W0.numel() for gs in engine.bank.kinds.values() for g in gs if g.W0 is not None)
        res["w0_bytes"] = w0 * torch.finfo(dt).bits // 8
    engine_decode(engine, prompt.repeat(batch, 1), 8)

    hf = hf_model()
    peft_model = None
    if peft and adapters:
        from peft import PeftModel

        t = time.perf_counter()
        peft_model = PeftModel.from_pretrained(hf_model(), paths[0], adapter_name=names[0])
        for p, n in zip(paths[1:], names[1:]):
            peft_model.load_adapter(p, adapter_name=n)
        res["peft_import_s"] = time.perf_counter() - t
        peft_model.eval()

    samples = {}
    def add(key, value):
        if r >= 0:
            samples.setdefault(key, []).append(value)

    for r in range(-1, runs):  # round -1 is a warm-up of every variant, discarded
        log(f"round {r + 1}/{runs}" if r >= 0 else "warm-up round (not timed)")
        ms, ttft = hf_decode(hf, prompt, new)
        add("hf_eager_ms", ms)
        add("hf_ttft_ms", ttft)
        ms, ttft, _, _ = engine_decode(engine, prompt, new)
        add("engine_base_ms", ms)
        add("engine_ttft_ms", ttft)
        add("engine_sampled_ms", engine_decode(engine, prompt, new, sampled=True)[0])
        add("engine_long_context_ms", engine_decode(engine, long_prompt, new)[0])
        if adapters:
            mixes = [random_mix(names, 3, rng) for _ in range(new // switch_every + 1)]
            ms, _, switches, _ = engine_decode(engine, prompt, new, mixes, switch_every)
            add("engine_fused_ms", ms)
            for ms, host in switches:
                add("switch_ms", ms)
                add("switch_host_ms", host)
        base_b = engine_decode(engine, prompt.repeat(batch, 1), new)[0]
        add("engine_batch_base_tok_s", batch * 1000 / base_b)
        if adapters:
            rows = [[random_mix(names, 3, rng) for _ in range(batch)]]
            ms = engine_decode(engine, prompt.repeat(batch, 1), new, rows)[0]
            add("engine_batch_gathered_tok_s", batch * 1000 / ms)
            engine.apply_mix(None)
        if peft_model is not None:
            peft_model.set_adapter(names[r % len(names)])
            add("peft_single_ms", hf_decode(peft_model, prompt, new)[0])
            mix = random_mix(names, 3, rng)
            t = time.perf_counter()
            peft_model.add_weighted_adapter(list(mix), list(mix.values()), "mix", combination_type="cat")
            peft_model.set_adapter("mix")
            sync(dev)
            add("peft_cat_build_ms", (time.perf_counter() - t) * 1000)
            add("peft_cat_ms", hf_decode(peft_model, prompt, new)[0])
            peft_model.delete_adapter("mix")
            row_names = [names[(r * batch + i) % len(names)] for i in range(batch)]
            ms, _ = hf_decode(peft_model, prompt.repeat(batch, 1), new, adapter_names=row_names)
            add("peft_batch_adapter_names_tok_s", batch * 1000 / ms)
    if quantize:
        from . import bench_quant

        res["quantized"] = bench_quant.run(engine, quantize, prompt, paths, new, runs, switch_every, batch, log)
    tmp.cleanup()

    for key, values in samples.items():
        res[key] = statistics.median(values)
    base = res["engine_base_ms"]
    res["hf_eager_ratio"] = res["hf_eager_ms"] / base
    if adapters:
        res["engine_fused_ratio"] = res["engine_fused_ms"] / base
        res["batch_gathered_vs_base"] = res["engine_batch_gathered_tok_s"] / res["engine_batch_base_tok_s"]
    if peft_model is not None:
        res["peft_single_ratio"] = res["peft_single_ms"] / base
        res["peft_cat_ratio"] = res["peft_cat_ms"] / base
        res["batch_gathered_vs_peft"] = res["engine_batch_gathered_tok_s"] / res["peft_batch_adapter_names_tok_s"]
    return res


def table(res: dict) -> str:
    base = res["engine_base_ms"]
    rows = [("Hugging Face generate, eager", res["hf_eager_ms"]), ("engine, base model", base),
            ("engine, base, sampled (T 0.7, top-p 0.9)", res["engine_sampled_ms"]),
            (f"engine, base, after a {res['long_prompt']}-token prompt", res["engine_long_context_ms"]),
            ("engine, 3-adapter mix switched every 20 tokens", res.get("engine_fused_ms")),
            ("PEFT, one adapter, eager", res.get("peft_single_ms")),
            ("PEFT, cat-mix of 3 adapters, eager", res.get("peft_cat_ms"))]
    out = [f"shape {res['shape']} · {res['device']} · {res['dtype']} · prompt {res['prompt']} · {res['new']} new tokens"
           f" · median of {res['runs']}",
           f"{'decode path (batch 1)':<50}{'ms/token':>10}{'x engine base':>15}"]
    out += [f"{name:<50}{ms:>10.2f}{ms / base:>15.2f}" for name, ms in rows if ms is not None]
    out.append(f"time to first token: engine {res['engine_ttft_ms']:.1f} ms, HF {res['hf_ttft_ms']:.1f} ms; "
               f"compile + warm-up {res['compile_s']:.1f} s")
    if "switch_ms" in res:
        out.append(f"switch (merge 3 of {res['adapters']} into {','.join(res['targets'])}): median {res['switch_ms']:.2f} ms "
                   f"(host {res['switch_host_ms']:.2f} ms)"
                   + (f"; PEFT cat-mix build + set {res['peft_cat_build_ms']:.0f} ms" if "peft_cat_build_ms" in res else ""))
        out.append(f"batch of 8 rows, 8 different 3-adapter mixes: engine gathered {res['engine_batch_gathered_tok_s']:.0f} "
                   f"tok/s = {res['batch_gathered_vs_base']:.2f}x engine base batch ({res['engine_batch_base_tok_s']:.0f} tok/s)"
                   + (f", {res['batch_gathered_vs_peft']:.1f}x PEFT adapter_names ({res['peft_batch_adapter_names_tok_s']:.0f} tok/s)"
                      if "batch_gathered_vs_peft" in res else ""))
        out.append(f"memory: bank {res['bank_bytes'] / 2**20:.0f} MiB, W0 copies {res['w0_bytes'] / 2**20:.0f} MiB; "
                   f"{res['adapters']} adapters = {res['adapter_params'] / 1e6:.1f} M params = "
                   f"{res['adapter_params_pct_of_model']:.3f}% of the model; import {res['import_s']:.1f} s")
    if "quantized" in res:
        from . import bench_quant

        out += bench_quant.table(res["quantized"], res["adapters"], res["targets"])
    return "\n".join(out)


def save(res: dict, path):
    Path(path).write_text(json.dumps(res, indent=2))
