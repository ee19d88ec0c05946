"""Build the bundled demo: a tiny Llama, one LoRA adapter per task, held-out task files and a router.

    python packaging/build_demo.py                    # full build into resources/demo (<= 20 min, 2 CPU cores)
    python packaging/build_demo.py --quick --out DIR  # tiny sizes, a loadable bundle in under 2 minutes (CI)

Steps: a character-level tokenizer (byte-level BPE without merges, so letter tasks such as reversing a
word are exact); a Llama pretrained on small talk and on every task's terse facts (`reverse(garden) =
nedrag`), never on a task prompt; per task a PEFT LoRA trained on chat-formatted prompt -> response exactly
as the app sends them; greedy exact match of every adapter and of the base on each held-out task; a router
trained on each adapter's examples. Everything is seeded; the same command writes the same bundle.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

# Before torch starts OpenMP: on a CPU shared with other jobs, spinning threads wait for each other at every op
# (a training step measured 10x slower with 2 spinning threads than with 1); sleeping threads do not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: `packaging` is also the name of a PyPI package

from demo_tasks import TASKS, small_talk  # noqa: E402  (this file's folder is on sys.path)

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# Share of each task's facts in pretraining: the operations a small model learns slowly get more.
FACT_MIX = {"arithmetic": 3, "reverse": 1, "number_words": 2, "sort": 2, "dates": 0.5, "translate": 0.5, "units": 1}
# Share of `adapter_steps` each adapter trains for (measured): the tasks whose operands lie far apart in
# the prompt (arithmetic, reversing, sorting) take ~1000 steps to reach >= 95 %; the others ~250.
STEP_SHARE = {"arithmetic": 1, "reverse": 1, "number_words": 0.4, "sort": 1, "dates": 0.25, "translate": 0.25,
              "units": 0.25}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

SIZES = {
    "full": dict(hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384,
                 pretrain_steps=2500, pretrain_batch=32, block=128, pretrain_lr=3e-3,
                 adapter_steps=1000, adapter_batch=16, adapter_lr=4e-3, train_examples=2000,
                 heldout=100, router_examples=120),
    "quick": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128,
                  pretrain_steps=30, pretrain_batch=8, block=64, pretrain_lr=3e-3,
                  adapter_steps=8, adapter_batch=8, adapter_lr=3e-3, train_examples=100,
                  heldout=8, router_examples=30),
}


START = time.time(), time.process_time()


def log(msg):
    print(f"[{time.time() - START[0]:6.1f}s wall {time.process_time() - START[1]:6.1f}s cpu] {msg}", flush=True)


def unique_examples(task, rng, n, exclude=frozenset()):
    """n examples of `task` with distinct prompts, none of them in `exclude`."""
    seen, out = set(exclude), []
    for _ in range(100 * n):
        ex = TASKS[task](rng)
        if ex.prompt not in seen:
            seen.add(ex.prompt)
            out.append(ex)
            if len(out) == n:
                return out
    raise RuntimeError(f"task {task!r}: only {len(out)} distinct prompts of {n} wanted")


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # vocab = the 256 bytes + specials: no merges, one token per character
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + len(SPECIALS), special_tokens=SPECIALS,
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator([], trainer)  # nothing to learn: the alphabet is given, no merge fits
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", chat_template=CHAT_TEMPLATE)


def chat_prefix(tok, prompt):
    """Exactly the text the app sends for a one-turn chat."""
    return tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)


def pretrain_stream(tok, rng, n_tokens):
    """Token ids [n_tokens]: documents of task facts and of small-talk chats, each ended by EOS."""
    texts, total = [], 0
    names, weights = list(FACT_MIX), list(FACT_MIX.values())
    while total < n_tokens:
        if rng.random() < 0.2:
            turns = [small_talk(rng) for _ in range(rng.randint(1, 3))]
            messages = [{"role": r, "content": c} for u, a in turns for r, c in (("user", u), ("assistant", a))]
            text = tok.apply_chat_template(messages, tokenize=False)
        else:
            text = "\n".join(TASKS[task](rng).fact for task in rng.choices(names, weights, k=rng.randint(3, 8))) + "</s>"
        texts.append(text)
        total += len(text)  # one token per character, about
    ids = [i for enc in tok.backend_tokenizer.encode_batch(texts) for i in enc.ids]
    return torch.tensor(ids[:n_tokens])


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))


def train(model, params, batches, steps, peak_lr, what):
    """AdamW with warmup + cosine; batches(step) -> (input_ids, attention_mask, labels)."""
    opt = torch.optim.AdamW(params, lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, peak_lr, warmup=max(1, steps // 20))
        ids, mask, labels = batches(step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % max(1, steps // 6) == 0 or step == steps - 1:
            log(f"{what} step {step + 1}/{steps} loss {loss.item():.4f}")
    model.eval()


def pretrain(tok, size, seed):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=size["hidden"], intermediate_size=size["intermediate"],
                         num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                         num_key_value_heads=size["kv_heads"], max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    B, T, steps = size["pretrain_batch"], size["block"], size["pretrain_steps"]
    stream = pretrain_stream(tok, random.Random(f"{seed}-pretrain"), n_tokens=B * T * steps // 2 + T + 1)
    log(f"pretraining {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params on {len(stream)} tokens")
    gen = torch.Generator().manual_seed(seed)

    def batches(step):  # random windows of the stream  # ids [B, T]
        starts = torch.randint(0, len(stream) - T - 1, (B,), generator=gen)
        ids = torch.stack([stream[s:s + T] for s in starts])
        return ids, None, ids

    train(model, list(model.parameters()), batches, steps, size["pretrain_lr"], "pretrain")
    return model


def save_model(model, tok, out):
    """bf16 weights (half the size); adapters are then trained on exactly these rounded weights."""
    model.generation_config.do_sample = False
    model.generation_config.pad_token_id = tok.pad_token_id
    model.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)


def load_base(model_dir):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def encode_pairs(tok, examples):
    """(ids, n_prompt) per example: chat prefix + response + EOS as token ids."""
    out = []
    for ex in examples:
        prefix = tok(chat_prefix(tok, ex.prompt), add_special_tokens=False)["input_ids"]
        answer = tok(ex.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append((prefix + answer, len(prefix)))
    return out


def train_adapter(model_dir, tok, task, examples, size, seed, out, base_name):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(load_base(model_dir), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                            target_modules=TARGETS, task_type="CAUSAL_LM"))
    pairs = encode_pairs(tok, examples)
    gen = torch.Generator().manual_seed(seed)
    B = size["adapter_batch"]

    def batches(step):  # right-padded; loss only on the response and its EOS  # [B, T] each
        rows = [pairs[i] for i in torch.randint(0, len(pairs), (B,), generator=gen)]
        T = max(len(ids) for ids, _ in rows)
        ids = torch.full((B, T), tok.pad_token_id)
        mask = torch.zeros(B, T, dtype=torch.long)
        labels = torch.full((B, T), -100)
        for b, (row, n_prompt) in enumerate(rows):
            ids[b, :len(row)] = torch.tensor(row)
            mask[b, :len(row)] = 1
            labels[b, n_prompt:len(row)] = torch.tensor(row[n_prompt:])
        return ids, mask, labels

    params = [p for p in model.parameters() if p.requires_grad]
    steps = max(1, round(size["adapter_steps"] * STEP_SHARE[task]))
    train(model, params, batches, steps, size["adapter_lr"], f"adapter {task}")
    config = model.peft_config["default"]  # saved as written: a sorted list, not a set in hash order
    config.target_modules = sorted(config.target_modules)
    config.base_model_name_or_path = base_name  # "resources/demo/model", not a path on the build machine
    model.save_pretrained(out)
    (out / "README.md").unlink()  # PEFT's model card: a template naming this machine's path to the base model


@torch.no_grad()
def exact_match(model, tok, examples, batch=50):
    """Fraction of examples whose greedy answer (until EOS) equals the response exactly."""
    hits = 0
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        prompts = [tok(chat_prefix(tok, ex.prompt), add_special_tokens=False)["input_ids"] for ex in chunk]
        T = max(map(len, prompts))
        ids = torch.tensor([[tok.pad_token_id] * (T - len(p)) + p for p in prompts])  # left-padded [B, T]
        mask = (torch.arange(T) >= torch.tensor([T - len(p) for p in prompts])[:, None]).long()
        longest = max(len(tok(ex.response)["input_ids"]) for ex in chunk)
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=longest + 4,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        for ex, row in zip(chunk, out[:, T:]):
            hits += tok.decode(row, skip_special_tokens=True).strip() == ex.response
    return hits / len(examples)


def evaluate(out, tok, heldout):
    """Exact match per task of the base model and of each task's adapter, loaded back from the bundle."""
    from peft import PeftModel

    model = None
    for task in heldout:
        path = out / "adapters" / task
        if model is None:
            model = PeftModel.from_pretrained(load_base(out / "model"), path, adapter_name=task)
        else:
            model.load_adapter(path, adapter_name=task)
    scores = {}
    for task, examples in heldout.items():
        model.set_adapter(task)
        with model.disable_adapter():
            base = exact_match(model, tok, examples)
        scores[task] = {"adapter": exact_match(model, tok, examples), "base": base}
        log(f"exact match {task}: adapter {scores[task]['adapter']:.2f}  base {base:.2f}")
    return scores


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def train_router(out, examples, heldout, seed):
    from engine.router import Router

    router = Router.train({task: [ex.prompt for ex in exs] for task, exs in examples.items()}, seed=seed)
    router.save(out / "router.safetensors")
    routed = [max(router.route(ex.prompt).probs.items(), key=lambda kv: kv[1])[0] == task
              for task, exs in heldout.items() for ex in exs]
    return router.report["accuracy"], sum(routed) / len(routed)


def results_table(scores, heldout):
    rows = [f"| {task} | {s['adapter']:.2f} | {s['base']:.2f} | {heldout[task][0].prompt} | {heldout[task][0].response} |"
            for task, s in scores.items()]
    return "\n".join(["| task | adapter | base | example prompt | answer |", "|---|---|---|---|---|", *rows])


def write_readme(out, command, size, n_params, scores, heldout, router_acc, heldout_acc, wall, cpu):
    (out / "README.md").write_text(f"""# Demo bundle

What `switchboard` opens when no model is configured: a tiny Llama ({n_params / 1e6:.2f}M parameters,
{size['layers']} layers, hidden {size['hidden']}, one token per character) with one LoRA adapter per task
(rank 8 on q, k, v, o, gate, up, down) and a router that picks the adapters for every sentence.
The base model was pretrained on small talk and on each task's operation written as terse facts
(`reverse(garden) = nedrag`), never on a task prompt, so it answers task prompts with small talk;
each adapter teaches it one task's plain-English prompts.

- `model/`: the base model (bf16 weights; the adapters were trained on exactly these weights in float32).
- `adapters/<task>/`: PEFT adapter + `examples.jsonl` (router examples, one `{{"prompt": ...}}` per line).
- `tasks/<task>.jsonl`: held-out evaluation set (`prompt`, `response`), disjoint from the examples.
- `router.safetensors` + `router.json`: the router trained on the examples.

Built by `{command}` in {wall / 60:.1f} minutes of wall time ({cpu / 60:.1f} CPU-minutes, 2 torch threads).
Greedy exact match on the held-out tasks ({size['heldout']} prompts each), chat template as the app sends it:

{results_table(scores, heldout)}

Router: accuracy {router_acc:.4f} on its validation split, {heldout_acc:.4f} top-1 on the held-out task prompts.
""", encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / "demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI (not a useful demo)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    size = SIZES["quick" if args.quick else "full"]
    final = args.out
    if final.exists() and any(final.iterdir()) and not (final / "tasks").is_dir():
        parser.error(f"--out {final} is a non-empty folder that is not a demo bundle; refusing to replace it")
    out = final.with_name(final.name + ".partial")  # built here, moved to `final` when complete
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    heldout, examples, train_sets = {}, {}, {}
    for task in TASKS:
        heldout[task] = unique_examples(task, random.Random(f"{args.seed}-{task}-heldout"), size["heldout"])
        taken = {ex.prompt for ex in heldout[task]}
        examples[task] = unique_examples(task, random.Random(f"{args.seed}-{task}-examples"),
                                         size["router_examples"], taken)
        train_sets[task] = unique_examples(task, random.Random(f"{args.seed}-{task}-train"),
                                           size["train_examples"], taken)
        write_jsonl(out / "tasks" / f"{task}.jsonl", [{"prompt": e.prompt, "response": e.response}
                                                      for e in heldout[task]])

    tok = build_tokenizer()
    model = pretrain(tok, size, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    save_model(model, tok, out / "model")
    for i, task in enumerate(TASKS):
        train_adapter(out / "model", tok, task, train_sets[task], size, args.seed + i, out / "adapters" / task,
                      base_name=os.path.relpath(final / "model", ROOT))
        write_jsonl(out / "adapters" / task / "examples.jsonl", [{"prompt": e.prompt} for e in examples[task]])
    scores = evaluate(out, tok, heldout)
    router_acc, heldout_acc = train_router(out, examples, heldout, args.seed)
    log(f"router accuracy {router_acc:.4f}, top-1 on held-out prompts {heldout_acc:.4f}")
    command = "python packaging/build_demo.py" + " --quick" * args.quick + f" --seed {args.seed}"
    write_readme(out, command, size, n_params, scores, heldout, router_acc, heldout_acc,
                 time.time() - START[0], time.process_time() - START[1])
    if final.exists():
        shutil.rmtree(final)
    out.rename(final)
    print(results_table(scores, heldout))
    log(f"done: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
