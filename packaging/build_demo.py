"""Build the bundled demo: a tiny Llama, one LoRA adapter per task, held-out task files and a router.

    python packaging/build_demo.py                    # full build into resources/demo (<= 20 min, 2 CPU cores)
    python packaging/build_demo.py --quick --out DIR  # tiny sizes, a loadable bundle in under 2 minutes (CI)

Steps: a character-level tokenizer (byte-level BPE without merges, so letter tasks such as reversing a
word are exact); a Llama pretrained on small talk and on every task's terse facts (`reverse(garden) =
nedrag`), as documents and as chats that ask them turn after turn, never on a task prompt; per task a PEFT
LoRA trained on chat-formatted text exactly as the app sends it (the task's prompts alone, as later turns of
chats, and as either part of two-task prompts); greedy exact
match of every adapter and of the base on each held-out task; held-out two-task prompts and small talk for
`switchboard eval`; a router trained on each adapter's examples with a base-model class. Everything is seeded;
the same command writes the same bundle.
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

from demo_tasks import TASKS, small_talk, two_tasks  # noqa: E402  (this file's folder is on sys.path)

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# Share of each task's facts in pretraining: the operations a small model learns slowly get more.
FACT_MIX = {"arithmetic": 3, "reverse": 1, "number_words": 2, "sort": 2, "dates": 0.5, "translate": 0.5, "units": 1}
# Half the adapters' training batches are one task's prompts alone, the other half chats (sample_chat).
SINGLE_BATCHES = 0.5
# Share of the single-prompt batches per task (measured alone: the tasks whose operands lie far apart in the
# prompt, arithmetic, reversing and sorting, took ~1000 steps of 16 prompts to reach >= 95 %; the others ~250).
SINGLE_SHARE = {"arithmetic": 1, "reverse": 1, "number_words": 0.4, "sort": 1, "dates": 0.25, "translate": 0.25,
                "units": 0.25}
# How often each task is drawn for the chats (the ones slowest to hold up in chats more often).
TASK_WEIGHT = {"arithmetic": 1.5, "reverse": 1, "number_words": 0.7, "sort": 1, "dates": 0.5, "translate": 0.7,
               "units": 0.7}
# The adapters' training chats (see sample_chat): how many turns (a batch holds chats of one length), what each
# turn is, and the share whose earlier turns keep their own adapters rather than going in under the last turn's.
CHAT_TURNS = {1: 4, 2: 3, 3: 2, 4: 1}
TURN_MIX = {"task": 6, "two tasks": 2, "small talk": 1}
CHAT_KEPT = 0.7
# The base model's chats of facts (fact_chat): their share of the pretraining documents, the share of turns that ask
# two facts, and how often a fact is of the same operation as the one before it.
FACT_CHATS, TWO_FACTS, SAME_OPERATION = 0.5, 0.5, 0.7
LORA_R, LORA_ALPHA = 8, 16
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

SIZES = {
    "full": dict(hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384,
                 pretrain_steps=2500, pretrain_batch=8, block=512, pretrain_lr=3e-3,
                 adapter_steps=4200, adapter_batch=16, adapter_tokens=1600, adapter_lr=4e-3,
                 train_examples=2000,
                 heldout=100, router_examples=120, router_two_tasks=400, two_task_prompts=3,
                 small_talk=30),
    "quick": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128,
                  pretrain_steps=30, pretrain_batch=8, block=64, pretrain_lr=3e-3,
                  adapter_steps=20, adapter_batch=8, adapter_tokens=800, adapter_lr=3e-3,
                  train_examples=100,
                  heldout=8, router_examples=30, router_two_tasks=10, two_task_prompts=1,
                  small_talk=10),
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


def fact_chat(tok, rng):
    """A chat of 1-4 turns, each asking one or two facts' left sides (`reverse(garden) =`) and answered with their
    right sides, one per line: the base model learns to answer the latest turn, in order, among earlier turns of
    the same operation (an adapter alone, at rank 8, did not learn to tell them apart)."""
    names, weights = list(FACT_MIX), list(FACT_MIX.values())
    messages, task = [], None
    for _ in range(rng.choices((1, 2, 3, 4), (2, 3, 3, 2))[0]):
        facts = []
        for _ in range(2 if rng.random() < TWO_FACTS else 1):
            if task is None or rng.random() >= SAME_OPERATION:
                task = rng.choices(names, weights)[0]
            facts.append(TASKS[task](rng).fact.partition(" = "))
        messages += [{"role": "user", "content": " ; ".join(left + " =" for left, _, _ in facts)},
                     {"role": "assistant", "content": "\n".join(right for _, _, right in facts)}]
    return tok.apply_chat_template(messages, tokenize=False)


def pretrain_stream(tok, rng, n_tokens):
    """Token ids [n_tokens]: documents of task facts, chats of facts and small-talk chats, each ended by EOS."""
    texts, total = [], 0
    names, weights = list(FACT_MIX), list(FACT_MIX.values())
    while total < n_tokens:
        if rng.random() < FACT_CHATS:
            text = fact_chat(tok, rng)
        elif rng.random() < 0.2:
            turns = [small_talk(rng) for _ in range(rng.choices((1, 2, 3), (5, 3, 2))[0])]
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
    """AdamW with warmup + cosine; batches(step) -> (input_ids [B, T], labels [B, T] int64, or float weights [B, T] of
    the tokens to learn: the loss is then their weighted mean). Rows are right-padded, so causal attention alone
    keeps padding from every real token: no attention mask (the CPU's attention is faster without one)."""
    opt = torch.optim.AdamW(params, lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, peak_lr, warmup=max(1, steps // 20))
        ids, target = batches(step)
        if target.is_floating_point():
            logits = model(input_ids=ids).logits[:, :-1]  # predicts ids[:, 1:]  [B, T-1, V]
            ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
            loss = (ce * target[:, 1:].flatten()).sum() / target[:, 1:].sum()
        else:
            loss = model(input_ids=ids, labels=target).loss
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
        return ids, ids

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


# ---- adapters: all tasks' LoRAs trained together, each token processed under the adapter the app would use
NONE = -1  # a token the base model alone processes (small talk, padding)


def sample_turn(rng, train_sets, kind, task):
    """One exchange -> (prompt, [(text, adapter index)]): the reply's sentences, each with the adapter that writes
    it. kind "task": `task`'s prompt; "two tasks": `task`'s prompt and another's, answered in two lines, the
    first line under the first task's adapter and the second under the second's; "small talk": the base model."""
    names = list(TASKS)
    if kind == "small talk":
        prompt, answer = small_talk(rng)
        return prompt, [(answer, NONE)]
    ex = rng.choice(train_sets[task])
    if kind == "task":
        return ex.prompt, [(ex.response, names.index(task))]
    other = rng.choice([t for t in names if t != task])
    pair = [(task, ex), (other, rng.choice(train_sets[other]))]
    if rng.random() < 0.5:
        pair.reverse()
    (first, a), (second, b) = pair
    prompt, _ = two_tasks(rng, a, b)
    return prompt, [(a.response + "\n", names.index(first)), (b.response, names.index(second))]


def sample_chat(rng, train_sets, n_turns):
    """-> (turns, style): a chat of `n_turns` exchanges, each a task's prompt (tasks drawn by TASK_WEIGHT, the slow
    learners more often; repeats allowed), a two-task prompt or small talk, the last never small talk; earlier
    replies correct, as the model's own would be. style "kept" (CHAT_KEPT of the chats): every turn goes in under
    the adapters it was written under, as with a KV cache kept across turns; "replay": the whole prompt, earlier
    turns too, goes in under the last turn's first adapter, as when the engine prefills a new turn's prompt."""
    pick = lambda: rng.choices(list(TASK_WEIGHT), list(TASK_WEIGHT.values()))[0]  # noqa: E731
    kinds = [rng.choices(list(TURN_MIX), list(TURN_MIX.values()))[0] for _ in range(n_turns)]
    if kinds[-1] == "small talk":
        kinds[-1] = "task"
    style = "kept" if rng.random() < CHAT_KEPT else "replay"
    return [sample_turn(rng, train_sets, kind, pick()) for kind in kinds], style


def encode_chat(tok, turns, style):
    """-> (token ids, the adapter processing each token as input, the weight of each token in the loss) of a chat
    as the chat template renders it. A reply token is processed under the adapter of the token after it (the app
    re-routes right after a sentence's last token, so that token goes in under the next sentence's mix); a prompt
    under its reply's first adapter. Learnt: the sentences an adapter writes, in the last turn (style "replay",
    where earlier turns go in under that turn's adapter) or in every turn ("kept"); each weighs 1 in all, spread
    over its tokens, so a 2-token sum counts as much as a 25-token number in words."""
    ids, under, weights = [], [], []
    last_first = turns[-1][1][0][1]
    for n, (prompt, sentences) in enumerate(turns):
        final = n == len(turns) - 1
        first = sentences[0][1] if final or style == "kept" else last_first
        opening = tok(tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                              tokenize=False), add_special_tokens=False)["input_ids"]
        reply, writer, weight = [], [], []
        for i, (text, adapter) in enumerate(sentences):
            piece = tok(text + (tok.eos_token if i == len(sentences) - 1 else ""), add_special_tokens=False)["input_ids"]
            reply += piece
            writer += [adapter] * len(piece)
            weight += [(adapter != NONE) / len(piece)] * len(piece)
        if style == "replay" and not final:
            writer = [last_first] * len(reply)
        if under:
            under[-1] = first  # the previous reply's EOS goes in with this turn's prompt
        ids += opening + reply
        under += [first] * len(opening) + writer[1:] + [writer[-1]]
        weights += [0.0] * len(opening) + [w if final or style == "kept" else 0.0 for w in weight]
    return ids, under, weights


class MultiLoRA(torch.nn.Module):
    """A target linear layer with one LoRA per task (PEFT's initialisation and alpha / r scaling);
    `self.route.onehot` [B, T, k] says which of the batch's `self.route.active` adapters (a list of indices)
    processes each input token (all zero: none), so a batch pays for the adapters it uses only. Each adapter is
    its own parameter: one a batch does not use gets no gradient, so AdamW leaves it alone (a zero gradient in a
    shared tensor would let its momentum keep moving it, about 13x its last step at betas (0.9, 0.95))."""

    def __init__(self, base, n, r, alpha, route):
        super().__init__()
        self.base, self.route, self.scale = base, route, alpha / r
        self.A = torch.nn.ParameterList(torch.empty(r, base.in_features) for _ in range(n))   # n x [r, in]
        self.B = torch.nn.ParameterList(torch.zeros(base.out_features, r) for _ in range(n))  # n x [out, r]
        for a in self.A:
            torch.nn.init.kaiming_uniform_(a.data, a=math.sqrt(5))

    def forward(self, x):  # x [B, T, in]
        A = torch.stack([self.A[k] for k in self.route.active])     # [k, r, in]
        B = torch.stack([self.B[k] for k in self.route.active])     # [k, out, r]
        h = (x @ A.flatten(0, 1).T).unflatten(-1, A.shape[:2])      # the batch's adapters' down-projections [B, T, k, r]
        h = h * self.route.onehot[..., None]                        # ... kept for the token's own adapter only
        return self.base(x) + h.flatten(-2) @ B.transpose(1, 2).flatten(0, 1) * self.scale  # [B, T, out]


def train_adapters(model_dir, tok, train_sets, size, seed, out, base_name):
    """Train every task's LoRA at once, each token under the adapter the app would have in force, on batches of one
    task's prompts alone (costing one adapter) and of sampled chats (sample_chat), drawn at random throughout
    (a phase of chats after one of single prompts cost the single prompts what the chats taught); save each as a
    PEFT adapter folder out/<task>."""
    from types import SimpleNamespace

    from peft import LoraConfig
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = load_base(model_dir)
    for p in model.parameters():
        p.requires_grad_(False)
    route = SimpleNamespace(onehot=None, active=None)
    wrapped = {}
    for i, layer in enumerate(model.model.layers):
        for part in (layer.self_attn, layer.mlp):
            for name in TARGETS:
                if hasattr(part, name):
                    kind = "self_attn" if part is layer.self_attn else "mlp"
                    lora = MultiLoRA(getattr(part, name), len(TASKS), LORA_R, LORA_ALPHA, route)
                    setattr(part, name, lora)
                    wrapped[f"base_model.model.model.layers.{i}.{kind}.{name}"] = lora
    rng = random.Random(f"{seed}-chats")

    def single_task(step):  # one task's prompts alone, the task drawn by SINGLE_SHARE
        task = rng.choices(list(SINGLE_SHARE), list(SINGLE_SHARE.values()))[0]
        return tensors([encode_chat(tok, [sample_turn(rng, train_sets, "task", task)], "replay")
                        for _ in range(size["adapter_batch"])])

    def chats(step):  # chats of one length, at most `adapter_tokens` tokens
        n_turns = rng.choices(list(CHAT_TURNS), list(CHAT_TURNS.values()))[0]
        rows = []
        while len(rows) < size["adapter_batch"]:
            row = encode_chat(tok, *sample_chat(rng, train_sets, n_turns))
            if rows and (len(rows) + 1) * max(len(row[0]), *(len(r[0]) for r in rows)) > size["adapter_tokens"]:
                break
            rows.append(row)
        return tensors(rows)

    def tensors(rows):  # -> ids, loss weights [B, T]; sets the routing of the rows' tokens
        B, T = len(rows), max(len(r[0]) for r in rows)
        ids = torch.full((B, T), tok.pad_token_id)
        weights = torch.zeros(B, T)
        under = torch.full((B, T), NONE)
        for b, (row, adapters, weight) in enumerate(rows):  # right-padded; loss only on the learnt tokens
            ids[b, :len(row)] = torch.tensor(row)
            under[b, :len(row)] = torch.tensor(adapters)
            weights[b, :len(row)] = torch.tensor(weight)
        active = under[under != NONE].unique()
        route.active = active.tolist()
        route.onehot = (under[..., None] == active).float()  # NONE matches no adapter
        return ids, weights

    params = [p for lora in wrapped.values() for p in (*lora.A, *lora.B)]
    batches = lambda step: (single_task if rng.random() < SINGLE_BATCHES else chats)(step)  # noqa: E731
    train(model, params, batches, size["adapter_steps"], size["adapter_lr"], "adapters")
    for k, task in enumerate(TASKS):
        folder = out / task
        folder.mkdir(parents=True)
        save_file({f"{key}.lora_{ab}.weight": getattr(lora, ab)[k].detach().contiguous()
                   for key, lora in wrapped.items() for ab in ("A", "B")},
                  folder / "adapter_model.safetensors", metadata={"format": "pt"})
        config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=TARGETS,
                            task_type="CAUSAL_LM", base_model_name_or_path=base_name, inference_mode=True)
        config.target_modules = sorted(config.target_modules)  # saved as written: a sorted list, not a set
        config.save_pretrained(folder)


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


def router_examples(examples, rng, n_two):
    """{task: [router input]}: the task's example prompts, then `n_two` two-task prompts asking for it first, as
    the router reads them before the first line, and `n_two` asking for it second, as the router reads them
    before the second line (after the first answer's line): what the app routes on (engine/context.py)."""
    from engine.context import context_text, router_context

    def routed_on(prompt, reply):
        return context_text(router_context("turn", [{"role": "user", "content": prompt}], reply))

    out = {}
    for task in TASKS:
        others = [t for t in TASKS if t != task]
        two = []
        for _ in range(n_two):
            this, other = rng.choice(examples[task]), rng.choice(examples[rng.choice(others)])
            two.append(routed_on(two_tasks(rng, this, other)[0], ""))
            two.append(routed_on(two_tasks(rng, other, this)[0], other.response + "\n"))
        out[task] = list(dict.fromkeys([ex.prompt for ex in examples[task]] + two))
    return out


def train_router(out, examples, heldout, seed):
    """The router with the library's defaults (a base-model class included), so that a library holding the demo's
    adapters and examples retrains to exactly this router (app/demo_library.py)."""
    from engine.router import Router

    router = Router.train(examples, seed=seed)
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
(`reverse(garden) = nedrag`), in documents and in chats that ask them turn after turn (`reverse(garden) =` →
`nedrag`), never on a task prompt, so it answers task prompts with small talk;
each adapter teaches it one task's plain-English prompts: alone, as a later turn of a chat, and as one part of
a two-task prompt ("Reverse the word 'garden'. Then convert 47 kilometers to meters."), whose answer is two
lines, the first written under the first task's adapter and the second, after the app routes again at the line
break, under the second's. The router also has a base-model class (engine/general_chat.py), so small talk
runs on the base model alone.

- `model/`: the base model (bf16 weights; the adapters were trained on exactly these weights in float32).
- `adapters/<task>/`: PEFT adapter + `examples.jsonl` (router examples, one `{{"prompt": ...}}` per line: the
  task's prompts, and two-task prompts as the router reads them before each line).
- `tasks/<task>.jsonl`: held-out evaluation set (`prompt`, `response`), disjoint from the examples.
- `two_tasks.jsonl`: held-out two-task prompts (`prompt`, `response` in two lines, `tasks`), made of held-out
  task prompts; `small_talk.jsonl`: small-talk prompts (`switchboard eval --conversations`).
- `router.safetensors` + `router.json`: the router trained on the examples, as a library retrains it.

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
    for task in TASKS:  # held-out prompts first: examples and training sets never contain them
        heldout[task] = unique_examples(task, random.Random(f"{args.seed}-{task}-heldout"), size["heldout"])
        taken = {ex.prompt for ex in heldout[task]}
        examples[task] = unique_examples(task, random.Random(f"{args.seed}-{task}-examples"),
                                         size["router_examples"], taken)
        train_sets[task] = unique_examples(task, random.Random(f"{args.seed}-{task}-train"),
                                           size["train_examples"], taken)
        write_jsonl(out / "tasks" / f"{task}.jsonl", [{"prompt": e.prompt, "response": e.response}
                                                      for e in heldout[task]])
    rng = random.Random(f"{args.seed}-two-tasks")
    write_jsonl(out / "two_tasks.jsonl", [
        {"prompt": prompt, "response": response, "tasks": [a, b]}
        for a in TASKS for b in TASKS if a != b for _ in range(size["two_task_prompts"])
        for prompt, response in [two_tasks(rng, rng.choice(heldout[a]), rng.choice(heldout[b]))]])
    rng = random.Random(f"{args.seed}-small-talk")
    talk = list(dict.fromkeys(small_talk(rng)[0] for _ in range(1000)))
    write_jsonl(out / "small_talk.jsonl", [{"prompt": p} for p in rng.sample(talk, size["small_talk"])])
    routed_on = router_examples(examples, random.Random(f"{args.seed}-router-two-tasks"), size["router_two_tasks"])

    tok = build_tokenizer()
    model = pretrain(tok, size, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    save_model(model, tok, out / "model")
    train_adapters(out / "model", tok, train_sets, size, args.seed, out / "adapters",
                   base_name=os.path.relpath(final / "model", ROOT))
    for task in TASKS:
        write_jsonl(out / "adapters" / task / "examples.jsonl", [{"prompt": p} for p in routed_on[task]])
    scores = evaluate(out, tok, heldout)
    router_acc, heldout_acc = train_router(out, routed_on, heldout, args.seed)
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
