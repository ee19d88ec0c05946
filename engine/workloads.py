"""`switchboard bench --workload chat | long | cold`: what users do, measured through the paths they hit.

chat  a conversation whose context grows to ~8K tokens over 8 turns (the last one a 100-word message), sampling
      on, routed per sentence by a router over 100 adapters, through Engine.generate: per turn prompt and cached
      tokens, time to first token, decode ms/token and the stall (wall - TTFT - decode), and compiles counted
      across the turns.
long  time to first token and peak extra memory of one long prompt (the GPU allocator's peak; on a Linux CPU
      the process's peak resident set), engine next to Hugging Face's SDPA forward (logits_to_keep=1), at
      several lengths, in one run.
cold  a model folder of the shape written to disk, then two fresh processes sharing a compile cache (a first
      and a second start): Engine.load, the first token, the compiled step ready (and a reply on it), every view's
      graphs captured; next to from_pretrained.
Shapes come without a tokenizer: a synthetic word-level one with the shape's vocabulary is made (every 16th
word ends a sentence, so per-sentence routing switches as it would on real text).
"""
import ctypes
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .decode import prefill
from .events import DoneEvent, TokenEvent

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer of exactly `vocab_size` tokens: lowercase words, every 16th ending in '.', every
    16th (offset) capitalised, so random models write sentences."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for i in range(len(SPECIALS), vocab_size):
        word = _word(i)
        vocab[word + "." if i % 16 == 0 else word.capitalize() if i % 16 == 1 else word] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _word(i: int) -> str:
    """A distinct lowercase letter string for every i (base 26, at least two letters)."""
    s = ""
    while True:
        i, r = divmod(i, 26)
        s += chr(97 + r)
        if i == 0:
            return s if len(s) > 1 else s + "a"


def _words(rng, vocab_size, n, topic=None) -> str:
    """n plain words (no sentence ends: one token each); from one of 100 topics' slices of the vocabulary when
    given."""
    lo, hi = len(SPECIALS), vocab_size
    if topic is not None:
        span = (hi - lo) // 100
        lo, hi = lo + topic * span, lo + (topic + 1) * span
    picks = []
    while len(picks) < n:
        if (i := rng.randrange(lo, hi)) % 16 > 1:
            picks.append(_word(i))
    return " ".join(picks)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- chat -------------------------------------------------------------------------------------------------
def chat(engine, *, adapters=100, rank=8, targets=("q_proj", "v_proj"), turns=8, context=8000, new=128, last=100,
         log=print) -> dict:
    """The last turn is a short message (`last` words) after a long history: its TTFT is the prefill of the new
    tokens only (the rest is cached), the case of a long chat's every turn."""
    from torch._dynamo.utils import counters

    from .bench import write_adapters
    from .router import Router

    vocab = engine.model.args.vocab_size
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_adapters(Path(tmp), engine.module_shapes(), adapters, rank, targets,
                               engine.model.lm_head.weight.dtype)
        for p in paths:
            engine.add_adapter(p)
    examples = {name: [_words(rng, vocab, 30, topic=i) for _ in range(20)] for i, name in enumerate(engine.adapters)}
    t = time.perf_counter()
    engine.router = Router.train(examples, epochs=20)
    log(f"router over {adapters} adapters trained in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    engine.warmup()
    res = {"warmup_s": time.perf_counter() - t, "turns": [], "adapters": adapters, "new": new,
           "sampling": {"temperature": 0.7, "sample_top_p": 0.9}}
    log(f"warm-up {res['warmup_s']:.1f} s")
    graphs = counters["stats"]["unique_graphs"]
    per_turn = (context - last) // (turns - 1) - new - 8  # words of each earlier message (8: the template's tokens)
    messages = []
    for i in range(turns):
        words = per_turn if i < turns - 1 else last
        topics = rng.sample(range(adapters), 3)
        messages.append({"role": "user", "content": " ".join(_words(rng, vocab, words // 3 + (k < words % 3), topic=t)
                                                             for k, t in enumerate(topics))})
        t0 = time.perf_counter()
        events = list(engine.generate(messages, temperature=0.7, sample_top_p=0.9, max_new_tokens=new,
                                      ignore_eos=True, max_adapters=3))
        wall = (time.perf_counter() - t0) * 1000
        s = events[-1].stats
        assert isinstance(events[-1], DoneEvent)
        decode = s["ms_per_token"] * max(s["tokens"] - 1, 0)
        row = {"turn": i + 1, "prompt_tokens": s["prompt_tokens"], "cached_tokens": s["cached_tokens"],
               "ttft_ms": s["ttft_ms"], "ms_per_token": s["ms_per_token"], "sentences": s["sentences"],
               "switch_ms": s["switch_ms"], "routing_ms": s["routing_ms"], "stall_ms": wall - s["ttft_ms"] - decode,
               "stop_reason": s["stop_reason"], "notes": s["notes"]}
        res["turns"].append(row)
        log(f"turn {i + 1}: prompt {row['prompt_tokens']} ({row['cached_tokens']} cached), TTFT {row['ttft_ms']:.1f} "
            f"ms, decode {row['ms_per_token']:.2f} ms/token, {row['sentences']} sentences, stall {row['stall_ms']:.1f} ms")
        messages.append({"role": "assistant", "content": "".join(e.text for e in events if isinstance(e, TokenEvent))})
    res["recompiles"] = counters["stats"]["unique_graphs"] - graphs
    return res


def chat_table(res: dict) -> str:
    out = [f"chat workload: {len(res['turns'])} turns, {res['adapters']} adapters, sampling T=0.7 top-p 0.9, "
           f"{res['new']} new tokens a turn; warm-up {res['warmup_s']:.1f} s; compiles during the chat: "
           f"{res['recompiles']}" + (f"; within {res['memory_gib']} GiB: peak {res['peak_gib']:.1f} GiB"
                                     if "memory_gib" in res else ""),
           f"{'turn':>4}{'prompt':>8}{'cached':>8}{'TTFT ms':>10}{'ms/token':>10}{'sentences':>11}{'stall ms':>10}"]
    out += [f"{r['turn']:>4}{r['prompt_tokens']:>8}{r['cached_tokens']:>8}{r['ttft_ms']:>10.1f}"
            f"{r['ms_per_token']:>10.2f}{r['sentences']:>11}{r['stall_ms']:>10.1f}" for r in res["turns"]]
    return "\n".join(out)


# ---- long prompts -----------------------------------------------------------------------------------------
def long(engine, hf_model, lengths=(1024, 4096, 8000), runs=3, log=print) -> dict:
    """TTFT and peak extra memory of one prompt of each length: the engine's prefill (its KV cache for the
    prompt allocated inside the measurement) and HF's SDPA forward with logits_to_keep=1."""
    dev = engine.device
    hf = hf_model()
    params = torch.tensor([0.0, 0, 1, 1], device=dev)
    res = {"lengths": []}

    def engine_run(ids):
        engine.model.drop_caches()
        engine.forget_kv()
        engine.model.setup_caches(1, ids.shape[1] + 1)
        prefill(engine.model, ids, 0, None, None, params, True).tolist()

    def hf_run(ids):
        hf(ids, logits_to_keep=1).logits[:, -1].argmax(-1).tolist()

    for n in lengths:
        ids = torch.randint(0, engine.model.args.vocab_size, (1, n), device=dev,
                            generator=torch.Generator(dev).manual_seed(n))
        row = {"tokens": n}
        with torch.inference_mode():
            for name, fn in (("engine", engine_run), ("hf", hf_run)):
                fn(ids)  # warm: kernels chosen, workspaces allocated
                times, extra = [], []
                for _ in range(runs):
                    engine.model.drop_caches()
                    base = _peak_reset(dev)
                    _sync(dev)
                    t = time.perf_counter()
                    fn(ids)
                    _sync(dev)
                    times.append((time.perf_counter() - t) * 1000)
                    if base is not None:
                        extra.append((_peak(dev) - base) / 2**30)
                row[f"{name}_ttft_ms"] = statistics.median(times)
                if extra:
                    row[f"{name}_peak_extra_gib"] = statistics.median(extra)
        row["ttft_ratio"] = row["engine_ttft_ms"] / row["hf_ttft_ms"]
        if "hf_peak_extra_gib" in row:
            row["memory_ratio"] = row["engine_peak_extra_gib"] / row["hf_peak_extra_gib"]
        res["lengths"].append(row)
        log(json.dumps(row))
    engine.model.drop_caches()
    return res


def _peak_reset(device) -> int | None:
    """Start counting the peak memory; -> the bytes in use now (None where the peak cannot be read)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    try:
        libc = ctypes.CDLL(None)
        # glibc: tensors over 128 KiB get their own mappings, so freeing one shrinks the resident set (by default
        # the threshold grows and freed blocks stay resident, hiding the next peak); then return what is free
        libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak resident set (VmHWM) := the current one
        return _proc_status("VmRSS")
    except (OSError, AttributeError):  # not Linux with glibc
        return None


def _peak(device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _proc_status("VmHWM")


def _proc_status(field: str) -> int:
    """A memory line of /proc/self/status, in bytes."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def long_table(res: dict) -> str:
    out = [f"{'tokens':>7}{'engine TTFT ms':>16}{'HF SDPA ms':>12}{'ratio':>7}{'engine GiB':>12}{'HF GiB':>8}{'ratio':>7}"]
    for r in res["lengths"]:
        mem = (f"{r['engine_peak_extra_gib']:>12.2f}{r['hf_peak_extra_gib']:>8.2f}{r['memory_ratio']:>7.2f}"
               if "memory_ratio" in r else "")
        out.append(f"{r['tokens']:>7}{r['engine_ttft_ms']:>16.1f}{r['hf_ttft_ms']:>12.1f}{r['ttft_ratio']:>7.2f}{mem}")
    return "\n".join(out)


# ---- cold start -------------------------------------------------------------------------------------------
def cold(cfg, shape: str, device: str, dtype, log=print) -> dict:
    """Write a random model of the shape (and the synthetic tokenizer) to a folder, time from_pretrained, then
    start the engine twice in fresh processes that share one compile cache."""
    from transformers import AutoModelForCausalLM

    res = {"shape": shape}
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "model", Path(tmp) / "compile-cache"
        t = time.perf_counter()
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        model.save_pretrained(folder)
        synthetic_tokenizer(cfg.vocab_size).save_pretrained(folder)
        del model
        res["write_s"] = time.perf_counter() - t
        log(f"model folder written in {res['write_s']:.1f} s")
        for i in range(2):  # the first read fills the page cache; the second is timed
            _sync(torch.device(device))
            t = time.perf_counter()
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map=device)
            _sync(torch.device(device))
            res["from_pretrained_s"] = time.perf_counter() - t
            del model
        log(f"from_pretrained {res['from_pretrained_s']:.1f} s")
        for start in ("first", "second"):
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
            out = subprocess.run([sys.executable, "-m", "engine.workloads", str(folder), device,
                                  str(dtype).removeprefix("torch.")],
                                 env=env, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"the {start} start failed:\n{out.stderr[-3000:]}")
            res[start] = json.loads(out.stdout.strip().splitlines()[-1])
            log(f"{start} start: {json.dumps(res[start])}")
    res["load_vs_from_pretrained"] = res["second"]["load_s"] / res["from_pretrained_s"]
    return res


def cold_table(res: dict) -> str:
    rows = [f"cold start, {res['shape']}: from_pretrained {res['from_pretrained_s']:.1f} s; "
            f"Engine.load {res['second']['load_s']:.1f} s ({res['load_vs_from_pretrained']:.2f}x)"]
    for start in ("first", "second"):
        r = res[start]
        rows.append(f"{start} start: load {r['load_s']:.1f} s, then first token {r['first_token_s']:.1f} s "
                    f"(reply on the {r['first_reply_step']} step), compiled step ready {r['compiled_s']:.1f} s "
                    f"(the next reply's first token {r['compiled_first_token_s']:.1f} s, {r['compiled_reply_step']}, "
                    f"{r['compiled_ms_per_token']:.2f} ms/token), every view's graphs {r['all_graphs_s']:.1f} s "
                    f"({r['full_speed_ms_per_token']:.2f} ms/token)")
    return "\n".join(rows)


def _one_start(folder: str, device: str, dtype: str):
    """One process's start as the app makes it: load, a warm-up that does not wait for the compile, a first reply as
    soon as one can start, the compile thread's end (the window then says replies run at full speed) and a reply
    on the compiled step; then the rest of a blocking warm-up (every view's graphs captured up front, as bench and
    serve do)."""
    from .engine import Engine

    msg = [{"role": "user", "content": "hello there"}]

    def reply(tokens):  # -> (when its first token came, its stats, the step it ran on)
        first = None
        for ev in engine.generate(msg, max_new_tokens=tokens, ignore_eos=True):
            if isinstance(ev, TokenEvent) and first is None:
                first = time.perf_counter()
        return first, ev.stats, "compiled" if engine.decoder.fns is engine.decoder._ready else "eager"

    t = time.perf_counter()
    engine = Engine.load(folder, device=device, dtype=dtype)
    _sync(engine.device)
    loaded = time.perf_counter()
    engine.warmup(wait=False)
    first, _, first_step = reply(16)
    while engine.decoder.compiling:
        time.sleep(0.001)
    compiled = time.perf_counter()
    compiled_first, compiled_stats, compiled_step = reply(64)
    engine.warmup(wait=True)
    captured = time.perf_counter()
    stats = reply(64)[1]
    print(json.dumps({"load_s": loaded - t, "first_token_s": first - loaded, "first_reply_step": first_step,
                      "compiled_s": compiled - loaded, "compiled_first_token_s": compiled_first - loaded,
                      "compiled_reply_step": compiled_step, "compiled_ms_per_token": compiled_stats["ms_per_token"],
                      "all_graphs_s": captured - loaded, "full_speed_ms_per_token": stats["ms_per_token"]}))


def run(workload: str, shape="tiny", model_dir=None, device="auto", dtype="auto", adapters=100, memory_gib=None,
        log=print) -> dict:
    """memory_gib (chat): the GPU memory this process may use, as on a smaller card (set after the model is
    built, with torch.cuda.set_per_process_memory_fraction); the peak is reported."""
    from .bench import SHAPES, build
    from .model import DTYPES, resolve_device

    if workload == "cold":
        from transformers import AutoConfig

        spec = dict(SHAPES[shape])
        dev = resolve_device(device)
        dt = DTYPES[dtype if dtype != "auto" else ("bfloat16" if dev.type == "cuda" else "float32")]
        res = cold(AutoConfig.for_model(spec.pop("model_type"), **spec), shape, str(dev), dt, log)
    else:
        engine, hf_model = build(shape, model_dir, device, dtype)
        if workload == "chat":
            del hf_model  # its weights: only the engine's may count against memory_gib
            if memory_gib:
                torch.cuda.empty_cache()
                total = torch.cuda.get_device_properties(engine.device).total_memory
                torch.cuda.set_per_process_memory_fraction(memory_gib * 2**30 / total, engine.device)
                torch.cuda.reset_peak_memory_stats(engine.device)
            context = min(8000, engine.context_len - 192)
            res = chat(engine, adapters=adapters, context=context, log=log)
            if memory_gib:
                res.update(memory_gib=memory_gib, peak_gib=torch.cuda.max_memory_allocated(engine.device) / 2**30)
        else:
            lengths = [n for n in (1024, 4096, 8000, 32000) if n < engine.context_len]
            res = long(engine, hf_model, lengths, log=log)
    res.update(workload=workload, shape=model_dir or shape,
               device=torch.cuda.get_device_name() if torch.cuda.is_available() and device != "cpu" else "cpu")
    return res


def table(res: dict) -> str:
    return {"chat": chat_table, "long": long_table, "cold": cold_table}[res["workload"]](res)


if __name__ == "__main__":
    _one_start(*sys.argv[1:4])
