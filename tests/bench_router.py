"""Router benchmark (not collected by pytest): accuracy on tests/router_tasks.py, call latency, training time.

    python tests/bench_router.py                 # everything (a few minutes on 2 CPU cores)
    python tests/bench_router.py --only speed    # accuracy | speed | train

accuracy: train on --n prompts per task (10% held out inside training), test on 200 fresh prompts per task,
          for several seeds, with and without the base-model class (a test prompt routed to the base model is
          an error; "chat -> base": unseen general chat whose whole mix is the base model; the alternative, a
          confidence threshold set at the 1st percentile of the test prompts' top probability, and how much
          of that chat it would send to the base model); a TF-IDF + logistic regression baseline for scale.
speed:    route() on a 256-word context (featurize + MLP + top-p), p50/p90 over 2000 calls, single thread; and
          on a two-part context (engine/context.py "decayed": the current turn + earlier turns down-weighted).
train:    Router.train on 26 tasks x 900 prompts with default settings (the paper's scale), wall and CPU time.
"""
import argparse
import math
import os
import re
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from router_tasks import TASKS, make_tasks  # noqa: E402

from engine.events import BASE  # noqa: E402
from engine.general_chat import general_chat  # noqa: E402
from engine.router import Router, param_count  # noqa: E402


def accuracy(router, test):
    hits = [router.labels[int(router.probs(p).argmax())] == a for a, ps in test.items() for p in ps]
    return sum(hits) / len(hits)


def tfidf_lr(train, test, C=1.0):
    """The usual baseline: word unigram+bigram TF-IDF (sublinear tf, smooth idf, L2) + multinomial logistic
    regression with L2 penalty 1/C (sklearn's defaults), fitted by L-BFGS."""
    tok = re.compile(r"(?u)\b\w\w+\b")

    def grams(t):
        w = tok.findall(t.lower())
        return w + [a + " " + b for a, b in zip(w, w[1:])]

    docs = [grams(p) for ps in train.values() for p in ps]
    y = torch.tensor([i for i, ps in enumerate(train.values()) for _ in ps])
    vocab, df = {}, {}
    for g in docs:
        for x in set(g):
            df[x] = df.get(x, 0) + 1
    vocab = {x: j for j, x in enumerate(df)}
    idf = np.array([math.log((1 + len(docs)) / (1 + df[x])) + 1 for x in vocab], np.float32)

    def matrix(ds):
        rows, cols, vals = [], [], []
        for r, g in enumerate(ds):
            ids, counts = np.unique([vocab[x] for x in g if x in vocab], return_counts=True)
            if len(ids):
                v = (1 + np.log(counts)) * idf[ids]
                rows += [r] * len(ids)
                cols += ids.tolist()
                vals += (v / np.linalg.norm(v)).tolist()
        return torch.sparse_coo_tensor([rows, cols], vals, (len(ds), len(vocab)), dtype=torch.float32)

    x = matrix(docs)
    w = torch.zeros(len(vocab), len(train), requires_grad=True)
    b = torch.zeros(len(train), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(torch.sparse.mm(x, w) + b, y, reduction="sum") + (w * w).sum() / (2 * C)
        loss.backward()
        return loss

    opt.step(closure)
    test_docs = [grams(p) for ps in test.values() for p in ps]
    ty = np.array([i for i, ps in enumerate(test.values()) for _ in ps])
    with torch.no_grad():
        return float(((torch.sparse.mm(matrix(test_docs), w) + b).argmax(1).numpy() == ty).mean())


def bench_accuracy(n, seeds):
    print(f"## accuracy: {len(TASKS)} tasks, {n} training prompts per task, 200 test prompts per task")
    chat = general_chat(500, seed=999)
    rows = []
    for seed in seeds:
        train, test = make_tasks(n, 200, seed=seed)
        row = []
        for with_base in (False, True):
            t = time.perf_counter()
            router = Router.train(train, seed=seed, base=with_base)
            secs = time.perf_counter() - t
            acc = accuracy(router, test)
            to_base = sum(router.route(c).selected == {BASE: 1.0} for c in chat) / len(chat)
            row += [router.report["accuracy"], acc]
            extra = f"chat -> base {to_base:.3f}"
            if not with_base:
                top = np.array([router.probs(p).max() for ps in test.values() for p in ps])
                cut = np.percentile(top, 1)
                extra = f"threshold {cut:.3f} would send {np.mean([router.probs(c).max() < cut for c in chat]):.3f} of chat to base"
            print(f"seed {seed}, base class {'on ' if with_base else 'off'}: held-out {router.report['accuracy']:.4f} "
                  f"({router.report['n_heldout']} prompts), test {acc:.4f}, {extra}, "
                  f"train {secs:.1f} s, {param_count(router.net):,} params", flush=True)
        row.append(tfidf_lr(train, test))
        print(f"seed {seed}: TF-IDF+LR test {row[-1]:.4f}", flush=True)
        rows.append(row)
    held, acc, held_b, acc_b, base = np.mean(rows, axis=0)
    print(f"mean: without base class held-out {held:.4f}, test {acc:.4f}; with base class held-out {held_b:.4f}, "
          f"test {acc_b:.4f}; TF-IDF+LR {base:.4f}")


def bench_speed():
    torch.set_num_threads(1)
    train, test = make_tasks(30, 20, seed=0)
    router = Router.train(train, seed=0)
    words = " ".join(p for ps in test.values() for p in ps).split()
    contexts = [" ".join(words[i:i + 256]) for i in range(0, 40 * 256, 256)]
    print(f"## speed: route() on 256-word contexts ({np.mean([len(c) for c in contexts]):.0f} characters), "
          f"{len(router.adapters)} adapters, 1 torch thread")
    parts = {"featurize": lambda c: router.featurizer(c), "probs (featurize + MLP)": router.probs,
             "route (featurize + MLP + top-p)": lambda c: router.route(c, top_p=0.8),
             "route on two parts (decayed)": lambda c: router.route([(c[:len(c) // 2], 0.3), (c[len(c) // 2:], 1.0)])}
    for name, fn in parts.items():
        for c in contexts[:5]:
            fn(c)
        times = []
        for k in range(2000):
            c = contexts[k % len(contexts)]
            t = time.perf_counter()
            fn(c)
            times.append(time.perf_counter() - t)
        ms = np.array(times) * 1e3
        print(f"{name:34s} p50 {np.percentile(ms, 50):.3f} ms  p90 {np.percentile(ms, 90):.3f} ms")


def bench_train():
    tasks = sorted(TASKS)[:26]
    train, _ = make_tasks(900, 0, seed=0, tasks=tasks)
    print(f"## train: {len(tasks)} tasks x 900 prompts, default settings")
    epochs = []
    t, c = time.perf_counter(), time.process_time()
    router = Router.train(train, seed=0, progress=lambda e, n, loss, acc: epochs.append((e, n, loss, acc)))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    print(f"{wall:.1f} s wall, {cpu:.1f} s CPU, {epochs[-1][1]} epochs, held-out {router.report['accuracy']:.4f} "
          f"on {router.report['n_heldout']} prompts")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["accuracy", "speed", "train"])
    ap.add_argument("--n", type=int, default=100, help="training prompts per task for the accuracy run")
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    if a.only in (None, "accuracy"):
        bench_accuracy(a.n, [int(s) for s in a.seeds.split(",")])
    if a.only in (None, "speed"):
        bench_speed()
    if a.only in (None, "train"):
        bench_train()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
