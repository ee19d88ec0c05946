"""Evaluation on held-out tasks: base model, uniform merge, routed (router + top-p fusion), single-LoRA oracle.

Three sets, each decoded in batches through the engine's batch API, so rows of one batch carry different tasks
(and, routed, different mixes):
- composite (`run`): every task's prompts, mixed and shuffled, one prompt per chat.
- conversations (`run_conversations`): chats of 2-4 turns built from the task files, each turn a task's prompt.
  Every method answers every turn itself, so a later turn sees that method's own earlier replies, as in a real
  chat; scored per turn. Beside them small talk, where routed should answer exactly as the base model does.
- two-task prompts (`run_two_tasks`): one message asking for two tasks, answered as two lines. Routed per
  sentence (the app) vs routed once per reply, and the per-sentence oracle (each line under its task's adapter).
"""
import json
import random
import time
from pathlib import Path

from .context import router_context
from .errors import ExamplesError
from .events import BASE

METHODS = ("base", "uniform", "routed", "oracle")
TWO_TASK_METHODS = ("base", "uniform", "routed once", "routed", "oracle per sentence")


def _read_jsonl(path, fields):
    """The rows of a .jsonl file, each checked to have `fields`; ExamplesError names file:line."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({f: row[f] for f in fields})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ExamplesError(f"{path}:{n}: expected a JSON object with {', '.join(fields)} ({e})") from None
    return rows


def load_tasks(folder, adapters: list[str]) -> dict[str, list[dict]]:
    """<adapter>.jsonl files of {"prompt", "response"}; every task must name a loaded adapter (the oracle)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise ExamplesError(f"{folder}: no task files (<adapter>.jsonl with prompt and response)")
    tasks = {}
    for f in files:
        if f.stem not in adapters:
            raise ExamplesError(f"{f}: no loaded adapter is named '{f.stem}' (loaded: {', '.join(adapters)})")
        tasks[f.stem] = [{"prompt": str(r["prompt"]), "response": str(r["response"])}
                         for r in _read_jsonl(f, ("prompt", "response"))]
    return tasks


def load_two_tasks(path, adapters: list[str]) -> list[dict]:
    """A .jsonl file of {"prompt", "response": two lines, "tasks": [first, second]}, tasks naming loaded adapters."""
    rows = _read_jsonl(path, ("prompt", "response", "tasks"))
    for n, row in enumerate(rows, 1):
        if not (isinstance(row["tasks"], list) and len(row["tasks"]) == 2 and set(row["tasks"]) <= set(adapters)):
            raise ExamplesError(f"{path}: row {n}: \"tasks\" must name two loaded adapters (loaded: "
                                f"{', '.join(adapters)}), got {row['tasks']!r}")
    return rows


def composite(tasks: dict[str, list[dict]], limit: int | None, seed: int = 0) -> list[tuple[str, dict]]:
    """[(task, example)]: the first `limit` examples of every task, mixed and shuffled."""
    items = [(task, ex) for task, rows in tasks.items() for ex in rows[:limit]]
    random.Random(seed).shuffle(items)
    return items


def conversations(tasks: dict[str, list[dict]], limit: int | None = None, seed: int = 0) -> list[list[tuple]]:
    """Chats [[(task, example), ...]]: for each ordered pair of tasks (A, B) the turns A, B, A (a follow-up on
    another task, then back to the first), and as many chats of 2-4 turns of tasks drawn at random (repeats
    allowed); `limit` caps each kind. A turn takes its task's next example in a shuffled order, cycling."""
    rng = random.Random(seed)
    names = list(tasks)
    pairs = [(a, b) for a in names for b in names if a != b]
    rng.shuffle(pairs)
    plans = [[a, b, a] for a, b in pairs[:limit]]
    plans += [[rng.choice(names) for _ in range(rng.randint(2, 4))] for _ in range(len(plans) or limit or 20)]
    rng.shuffle(plans)
    order = {t: rng.sample(rows, len(rows)) for t, rows in tasks.items()}
    taken = dict.fromkeys(tasks, 0)

    def take(task):
        taken[task] += 1
        return order[task][(taken[task] - 1) % len(order[task])]

    return [[(task, take(task)) for task in plan] for plan in plans]


def turn_groups(chat: list[tuple], i: int) -> list[str]:
    """The rows of the per-turn table that turn i of `chat` counts in."""
    tasks = [task for task, _ in chat]
    groups = [f"turn {i + 1}"]
    if i > 0:
        groups.append("another task than the turn before" if tasks[i] != tasks[i - 1] else "same task as the turn before")
    if i == 2 and tasks[2] == tasks[0] != tasks[1]:
        groups.append("turn 3 back to turn 1's task")
    return groups + ["all turns"]


def converse(engine, chats, method: str, *, batch=16, max_new_tokens=48, top_p=0.8, routing_context="turn",
             progress=None, label=None) -> list[list[dict]]:
    """Answer every turn of `chats` ([[(task, example), ...]]) with `method`: each turn's messages hold the earlier
    turns with this method's own replies. batch > 1: turn by turn over all chats, `batch` rows at a time (the
    whole prompt prefilled under each turn's first mix); batch 1: one chat after another, as the app runs a chat,
    so the engine's KV cache carries each chat's earlier turns (computed under their own mixes) into the next.
    -> per chat, per turn: generate_batch's row (text, routing, stats)."""
    names = engine.adapters
    uniform = {n: 1.0 / len(names) for n in names}
    history = [[] for _ in chats]
    out = [[] for _ in chats]
    total = sum(map(len, chats))
    if batch == 1:  # chat after chat
        steps = [[(i, t)] for i, chat in enumerate(chats) for t in range(len(chat))]
    else:  # turn after turn
        steps = []
        for t in range(max(map(len, chats), default=0)):
            live = [(i, t) for i, chat in enumerate(chats) if len(chat) > t]
            steps += [live[k:k + batch] for k in range(0, len(live), batch)]
    done = 0
    for rows in steps:
        convs = [history[i] + [{"role": "user", "content": chats[i][t][1]["prompt"]}] for i, t in rows]
        mixes = {"base": [None] * len(rows), "uniform": [uniform] * len(rows),
                 "oracle": [{chats[i][t][0]: 1.0} for i, t in rows], "routed": None}[method]
        replies = engine.generate_batch(convs, mixes=mixes, top_p=top_p, max_new_tokens=max_new_tokens,
                                        routing_context=routing_context)
        for (i, _), conv, reply in zip(rows, convs, replies):
            history[i] = conv + [{"role": "assistant", "content": reply["text"]}]
            out[i].append(reply)
        done += len(rows)
        if progress:
            progress(label or method, done, total)
    return out


def predict(engine, items, method: str, *, batch=16, max_new_tokens=48, top_p=0.8, progress=None) -> list[str]:
    """One-turn chats: the stripped reply to each (task, example) of `items`."""
    replies = converse(engine, [[item] for item in items], method, batch=batch, max_new_tokens=max_new_tokens,
                       top_p=top_p, progress=progress)
    return [turns[0]["text"].strip() for turns in replies]


def score(pairs: list[tuple[str, str]]) -> dict:
    """Exact match, mean sentence BLEU and mean ROUGE-L F1 over (prediction, reference). Sentence BLEU with
    sacrebleu's effective order: the demo's answers are 1-4 words, where corpus 4-gram BLEU is 0 even when exact."""
    import sacrebleu
    from rouge_score import rouge_scorer

    preds, refs = [p for p, _ in pairs], [r.strip() for _, r in pairs]
    rouge = rouge_scorer.RougeScorer(["rougeL"])
    return {"exact_match": sum(p == r for p, r in zip(preds, refs)) / len(pairs),
            "bleu": sum(sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(preds, refs)) / len(pairs),
            "rougeL": sum(rouge.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)) / len(pairs),
            "n": len(pairs)}


def _needs_router(engine, methods):
    if any(m.startswith("routed") for m in methods) and engine.router is None:
        raise ExamplesError("routed evaluation needs a router: load one for these adapters (or train it)")


def run(engine, tasks, *, limit=None, batch=16, max_new_tokens=48, top_p=0.8, methods=METHODS, progress=None):
    _needs_router(engine, methods)
    items = composite(tasks, limit)
    result = {"tasks": {t: {} for t in tasks}, "composite": {}, "seconds": {}, "examples": len(items)}
    for method in methods:
        t = time.perf_counter()
        preds = predict(engine, items, method, batch=batch, max_new_tokens=max_new_tokens, top_p=top_p,
                        progress=progress)
        result["seconds"][method] = time.perf_counter() - t
        for task in tasks:
            result["tasks"][task][method] = score([(p, ex["response"]) for p, (t_, ex) in zip(preds, items)
                                                   if t_ == task])
        result["composite"][method] = score([(p, ex["response"]) for p, (_, ex) in zip(preds, items)])
    return result


def run_conversations(engine, tasks, small_talk, *, limit=None, batch=16, max_new_tokens=48, top_p=0.8,
                      policies=("turn",), methods=METHODS, progress=None):
    """Per-turn scores of every method on `conversations(tasks, limit)`, routed once per routing-context policy
    (columns "routed" or "routed (<policy>)"); and on `small_talk` prompts how often routed answers exactly as
    the base model does, and how often the router chose the base model alone for the first sentence."""
    _needs_router(engine, methods)
    chats = conversations(tasks, limit)
    columns = [(f"routed ({p})" if len(policies) > 1 else "routed", "routed", p) if m == "routed" else (m, m, "turn")
               for m in methods for p in (policies if m == "routed" else ["turn"])]
    kw = dict(batch=batch, max_new_tokens=max_new_tokens, top_p=top_p, progress=progress)
    result = {"chats": len(chats), "turns": sum(map(len, chats)), "groups": {}, "seconds": {}, "small_talk": {}}
    for column, method, policy in columns:
        t = time.perf_counter()
        replies = converse(engine, chats, method, routing_context=policy, label=column, **kw)
        result["seconds"][column] = time.perf_counter() - t
        scored = {}
        for chat, turns in zip(chats, replies):
            for i, ((_, ex), reply) in enumerate(zip(chat, turns)):
                for group in turn_groups(chat, i):
                    scored.setdefault(group, []).append((reply["text"].strip(), ex["response"]))
        for group, pairs in sorted(scored.items(), key=lambda kv: _group_order(kv[0])):
            result["groups"].setdefault(group, {})[column] = score(pairs)
    talk = [[("", {"prompt": p})] for p in small_talk]
    base = [turns[0]["text"] for turns in converse(engine, talk, "base", label="small talk, base", **kw)]
    for column, method, policy in columns:
        if method != "routed" or not talk:
            continue
        routed = converse(engine, talk, "routed", routing_context=policy, label=f"small talk, {column}", **kw)
        result["small_talk"][column] = {
            "n": len(talk), "same_as_base": sum(r[0]["text"] == b for r, b in zip(routed, base)) / len(talk),
            "chose_base": sum(r[0]["routing"][0].selected == {BASE: 1.0} for r in routed) / len(talk)}
    return result


def _group_order(group):
    return (not group.startswith("turn "), group == "all turns", group)


def run_two_tasks(engine, items, *, limit=None, batch=16, max_new_tokens=48, top_p=0.8, methods=TWO_TASK_METHODS,
                  progress=None):
    """Exact match of the whole two-line reply (and of each line) per method on two-task prompts `items` (at most
    `limit` per pair of tasks)."""
    _needs_router(engine, methods)
    if limit is not None:
        per_pair, kept = {}, []
        for item in items:
            pair = tuple(item["tasks"])
            per_pair[pair] = per_pair.get(pair, 0) + 1
            if per_pair[pair] <= limit:
                kept.append(item)
        items = kept
    names = engine.adapters
    result = {"prompts": len(items), "methods": {}, "seconds": {}}
    for method in methods:
        t = time.perf_counter()
        texts = [None] * len(items)
        if method == "oracle per sentence":  # one batch per task pair: sentence k under the adapter of line k
            pairs = {}
            for i, item in enumerate(items):
                pairs.setdefault(tuple(item["tasks"]), []).append(i)
            for (first, second), rows in pairs.items():
                for start in range(0, len(rows), batch):
                    chunk = rows[start:start + batch]
                    out = engine.generate_batch(
                        [[{"role": "user", "content": items[i]["prompt"]}] for i in chunk],
                        route=lambda _context, k, a=first, b=second: {a if k == 0 else b: 1.0},
                        max_new_tokens=max_new_tokens)
                    for i, reply in zip(chunk, out):
                        texts[i] = reply["text"]
        else:
            if method == "routed once":  # the first sentence's routing, kept for the whole reply
                mixes = [{k: w for k, w in engine.router.route(router_context("turn", [msg], ""),
                                                              top_p=top_p).selected.items() if k != BASE}
                         for msg in ({"role": "user", "content": item["prompt"]} for item in items)]
            else:
                mixes = {"base": [None] * len(items), "uniform": [{n: 1.0 / len(names) for n in names}] * len(items),
                         "routed": None}[method]
            for start in range(0, len(items), batch):
                out = engine.generate_batch([[{"role": "user", "content": item["prompt"]}]
                                             for item in items[start:start + batch]],
                                            mixes=None if mixes is None else mixes[start:start + batch],
                                            top_p=top_p, max_new_tokens=max_new_tokens)
                texts[start:start + len(out)] = [reply["text"] for reply in out]
        if progress:
            progress(method, len(items), len(items))
        result["seconds"][method] = time.perf_counter() - t
        lines = [(text.strip().split("\n") + ["", ""])[:2] for text in texts]
        refs = [item["response"].split("\n") for item in items]
        result["methods"][method] = {
            **score([(text.strip(), item["response"]) for text, item in zip(texts, items)]),
            "first_line": sum(got[0].strip() == ref[0] for got, ref in zip(lines, refs)) / len(items),
            "second_line": sum(got[1].strip() == ref[1] for got, ref in zip(lines, refs)) / len(items)}
    return result
