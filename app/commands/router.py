"""`switchboard router train|eval`: fit a router on an examples folder, or measure one on an examples folder.

An examples folder holds `<adapter>.jsonl` / `<adapter>.txt` files, or adapter folders that hold
`examples.jsonl` / `examples.txt` (the adapter library's layout, e.g. resources/demo/adapters); a library's own
folder (with index.json) stands for its adapters/ folder."""
import sys
from pathlib import Path

from engine.errors import ExamplesError, SwitchboardError

from app.commands import options
from app.plural import plural

NESTED = ("examples.jsonl", "examples.txt")  # an adapter folder's examples file, as the library keeps it


def add_parser(subparsers):
    p = subparsers.add_parser("router", help="train or evaluate the adapter router")
    sub = p.add_subparsers(dest="router_command", metavar="train|eval", required=True)
    t = sub.add_parser("train", help="train a router on an examples folder",
                       description="Train a router on an examples folder: <adapter>.jsonl / <adapter>.txt files, or "
                                   "adapter folders holding examples.jsonl (an adapter library's layout).")
    t.add_argument("--examples", required=True, type=options.folder, metavar="DIR",
                   help="one examples file per adapter, or one adapter folder with examples.jsonl per adapter")
    t.add_argument("--out", required=True, type=options.new_router_file, metavar="FILE",
                   help="the router to write: NAME.safetensors (its NAME.json is written beside it)")
    t.add_argument("--tokenizer", type=options.folder, metavar="DIR",
                   help="featurize with this model's tokenizer instead of words")
    t.add_argument("--epochs", type=options.at_least(1), metavar="N", help="training epochs (default: by data size)")
    t.add_argument("--seed", type=options.integer, default=0, metavar="S")
    e = sub.add_parser("eval", help="accuracy of a saved router on an examples folder")
    e.add_argument("--router", required=True, type=options.router_file, metavar="FILE",
                   help="NAME.safetensors, with its NAME.json beside it")
    e.add_argument("--examples", required=True, type=options.folder, metavar="DIR")
    return p


def run(args):
    try:
        return _train(args) if args.router_command == "train" else _eval(args)
    except SwitchboardError as e:
        print(f"switchboard router {args.router_command}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the output folder cannot be written, ...
        print(f"switchboard router {args.router_command}: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2


def load_examples(folder) -> dict[str, list[str]]:
    """{adapter: [prompt, ...]} from either layout of an examples folder."""
    from engine import examples

    folder = Path(folder)
    if (folder / "index.json").is_file() and (folder / "adapters").is_dir():
        folder = folder / "adapters"
    nested = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        found = [sub / name for name in NESTED if (sub / name).is_file()]
        if len(found) > 1:
            raise ExamplesError(f"{sub}: both {NESTED[0]} and {NESTED[1]}; keep one")
        if found:
            nested[sub.name] = found[0]
    if not nested:
        return examples.load_examples(folder)
    flat = [p.name for p in folder.iterdir() if p.is_file() and p.suffix in examples.SUFFIXES]
    if flat:
        raise ExamplesError(f"{folder}: holds both examples files ({', '.join(sorted(flat)[:3])}) and adapter "
                            f"folders with {NESTED[0]}; use one layout")
    return {name: examples.read_examples_file(path) for name, path in nested.items()}


def _train(args):
    from engine.router import Router

    examples = load_examples(args.examples)
    print(f"{plural(len(examples), 'adapter')}, {plural(sum(map(len, examples.values())), 'example')} "
          f"from {args.examples}")

    def progress(epoch, epochs, loss, acc):
        held = "n/a" if acc is None else f"{acc:.4f}"
        print(f"epoch {epoch}/{epochs}  loss {loss:.4f}  held-out accuracy {held}", flush=True)

    router = Router.train(examples, tokenizer_dir=args.tokenizer, epochs=args.epochs, seed=args.seed,
                          progress=progress)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    router.save(args.out)
    rep = router.report
    held = "n/a (no held-out examples)" if rep["accuracy"] is None else f"{rep['accuracy']:.4f}"
    print(f"held-out accuracy: {held} on {plural(rep['n_heldout'], 'example')}; wrote {args.out} and "
          f"{args.out.with_suffix('.json').name}")
    return 0


def _eval(args):
    import numpy as np

    from engine.errors import RouterError
    from engine.router import Router

    router = Router.load(args.router)
    examples = load_examples(args.examples)
    names, labels = router.adapters, router.labels  # labels: the adapters, then the base model when it has one
    unknown = [a for a in examples if a not in names]
    if unknown:
        raise RouterError(f"{args.router} was not trained for {', '.join(map(repr, unknown))} (examples in "
                          f"{args.examples}); its adapters: {', '.join(names)}")
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
