"""`switchboard router train|eval`: fit a router on an examples folder, or measure one on an examples folder."""
import sys

import numpy as np

from engine.errors import ExamplesError, RouterError


def add_parser(subparsers):
    p = subparsers.add_parser("router", help="train or evaluate the adapter router")
    sub = p.add_subparsers(dest="router_command", required=True)
    t = sub.add_parser("train", help="train a router on an examples folder (<adapter>.jsonl / <adapter>.txt)")
    t.add_argument("--examples", required=True, metavar="DIR", help="folder with one examples file per adapter")
    t.add_argument("--out", required=True, metavar="FILE", help="router weights to write (x.safetensors + x.json)")
    t.add_argument("--tokenizer", metavar="DIR", help="featurize with this model's tokenizer instead of words")
    t.add_argument("--epochs", type=int, metavar="N", help="training epochs (default: by data size)")
    t.add_argument("--seed", type=int, default=0, metavar="S")
    e = sub.add_parser("eval", help="accuracy of a saved router on an examples folder")
    e.add_argument("--router", required=True, metavar="FILE")
    e.add_argument("--examples", required=True, metavar="DIR")
    return p


def run(args):
    try:
        return _train(args) if args.router_command == "train" else _eval(args)
    except (ExamplesError, RouterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train(args):
    from engine.examples import load_examples
    from engine.router import Router

    examples = load_examples(args.examples)
    print(f"{len(examples)} adapters, {sum(map(len, examples.values()))} examples from {args.examples}")

    def progress(epoch, epochs, loss, acc):
        held = "n/a" if acc is None else f"{acc:.4f}"
        print(f"epoch {epoch}/{epochs}  loss {loss:.4f}  held-out accuracy {held}", flush=True)

    router = Router.train(examples, tokenizer_dir=args.tokenizer, epochs=args.epochs, seed=args.seed,
                          progress=progress)
    router.save(args.out)
    rep = router.report
    held = "n/a (no held-out examples)" if rep["accuracy"] is None else f"{rep['accuracy']:.4f}"
    print(f"held-out accuracy: {held} on {rep['n_heldout']} examples; wrote {args.out}")
    return 0


def _eval(args):
    from engine.examples import load_examples
    from engine.router import Router

    router = Router.load(args.router)
    examples = load_examples(args.examples)
    names, labels = router.adapters, router.labels  # labels: the adapters, then the base model when it has one
    unknown = [a for a in examples if a not in names]
    if unknown:
        raise RouterError(f"{args.router}: router has no adapter(s) {unknown} found in {args.examples}; "
                          f"its adapters: {names}")
    confusion = np.zeros((len(names), len(labels)), np.int64)  # [true, predicted]
    for a, prompts in examples.items():
        for p in prompts:
            confusion[names.index(a), int(router.probs(p).argmax())] += 1
    for i, a in enumerate(names):
        n = confusion[i].sum()
        if n:
            print(f"{a:32s} {confusion[i, i] / n:.4f}  ({confusion[i, i]}/{n})")
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    pairs = [(off[i, j], names[i], labels[j]) for i, j in zip(*np.nonzero(off))]
    if pairs:
        print("most frequent confusions (true -> predicted):")
        for count, a, b in sorted(pairs, key=lambda x: (-x[0], x[1], x[2]))[:10]:
            print(f"  {a} -> {b}: {count}")
    print(f"accuracy: {np.trace(confusion) / confusion.sum():.4f}")
    return 0
