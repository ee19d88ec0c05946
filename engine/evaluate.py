"""Composite-task evaluation: base model, uniform merge, routed (router + top-p fusion), single-LoRA oracle.

All tasks are mixed and shuffled into one composite stream and decoded in batches through the engine's
batch API, so rows of one batch carry different tasks (and, routed, different mixes). Per-task scores are
the same predictions grouped by task.
"""
import json
import random
import time
from pathlib import Path

from .errors import ExamplesError

METHODS = ("base", "uniform", "routed", "oracle")


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
        rows = []
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append({"prompt": str(row["prompt"]), "response": str(row["response"])})
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ExamplesError(f"{f}:{n}: expected a JSON object with prompt and response ({e})") from None
        tasks[f.stem] = rows
    return tasks


def composite(tasks: dict[str, list[dict]], limit: int | None, seed: int = 0) -> list[tuple[str, dict]]:
    """[(task, example)]: the first `limit` examples of every task, mixed and shuffled."""
    items = [(task, ex) for task, rows in tasks.items() for ex in rows[:limit]]
    random.Random(seed).shuffle(items)
    return items


def predict(engine, items, method: str, *, batch=16, max_new_tokens=48, top_p=0.8, progress=None) -> list[str]:
    names = engine.adapters
    uniform = {n: 1.0 / len(names) for n in names}
    out = []
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        convs = [[{"role": "user", "content": ex["prompt"]}] for _, ex in chunk]
        mixes = {"base": [None] * len(chunk), "uniform": [uniform] * len(chunk),
                 "oracle": [{task: 1.0} for task, _ in chunk], "routed": None}[method]
        rows = engine.generate_batch(convs, mixes=mixes, top_p=top_p, max_new_tokens=max_new_tokens)
        out += [r["text"].strip() for r in rows]
        if progress:
            progress(method, len(out), len(items))
    return out


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


def run(engine, tasks, *, limit=None, batch=16, max_new_tokens=48, top_p=0.8, methods=METHODS, progress=None):
    if "routed" in methods and engine.router is None:
        raise ExamplesError("routed evaluation needs a router: load one for these adapters (or train it)")
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
