"""`switchboard eval`: base vs uniform merge vs routed vs single-LoRA oracle on held-out tasks.

Default: the composite of single prompts, then (when there is a two-task file) two-task prompts, routed per
sentence vs once per reply. `--conversations`: chats of 2-4 turns scored per turn, and small talk."""
import json
import sys

from engine import SwitchboardError
from engine.context import POLICIES

from app.commands import options


def add_parser(sub):
    p = sub.add_parser("eval", help="held-out evaluation: base, uniform merge, routed, single-LoRA oracle",
                       description="Decode every task's prompts (mixed and shuffled, in batches) four ways and "
                                   "score exact match, BLEU and ROUGE-L; then two-task prompts (two answers in "
                                   "two lines) routed per sentence and once per reply. --conversations: chats "
                                   "of 2-4 turns built from the task files, scored per turn, and small talk, "
                                   "where routed should answer as the base model does. Defaults: the bundled demo.")
    p.add_argument("--model", type=options.model, metavar="DIR|FILE.gguf",
                   help="model folder or .gguf file (default: the demo model)")
    p.add_argument("--library", type=options.folder, metavar="DIR",
                   help="adapter library with a trained router (default: the demo's)")
    p.add_argument("--tasks", type=options.folder, metavar="DIR",
                   help="folder of <adapter>.jsonl files with prompt and response (default: the demo's)")
    p.add_argument("--two-tasks", metavar="FILE",
                   help=".jsonl of {prompt, response (two lines), tasks: [first, second]} (default: the demo's, "
                        "when --tasks is not given)")
    p.add_argument("--conversations", action="store_true", help="chats of 2-4 turns instead of single prompts")
    p.add_argument("--small-talk", metavar="FILE",
                   help="with --conversations: small-talk prompts, .jsonl or .txt (default: the demo's)")
    p.add_argument("--routing-context", default="turn", metavar="POLICY[,POLICY]",
                   help=f"what the router reads: {', '.join(POLICIES)}, several separated by commas, or 'all' "
                        "(default: turn)")
    p.add_argument("--limit", type=options.at_least(1), metavar="N",
                   help="at most N examples per task (N chats of each kind with --conversations)")
    p.add_argument("--batch", type=options.at_least(1), default=16, metavar="N",
                   help="rows decoded together (default 16); with --conversations, 1 answers one chat after "
                        "another as the app does, its earlier turns kept in the KV cache")
    p.add_argument("--max-new-tokens", type=options.setting("max_new_tokens", options.integer), default=48,
                   metavar="N")
    p.add_argument("--top-p", type=options.setting("top_p", options.number), default=0.8, metavar="P",
                   help="routing top-p")
    p.add_argument("--device", type=options.device, default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quantize", choices=options.QUANTIZE, default="auto",
                   help="weight-only quantization at load (auto: a GGUF file's own precision, else none)")
    p.add_argument("--json", metavar="FILE", help="write all numbers to this file")


def _progress(method, done, total):
    bar = "#" * (30 * done // total)
    print(f"\r{method:>24} [{bar:<30}] {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _policies(text):
    policies = list(POLICIES) if text == "all" else [p.strip() for p in text.split(",")]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise SwitchboardError(f"--routing-context: unknown {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    return policies


def _bundled(path, what):
    """The demo's file when the bundle has it (a bundle built before it existed has none)."""
    if not path.is_file():
        print(f"[no {what}: {path} is missing; rebuild the demo with packaging/build_demo.py]", file=sys.stderr)
        return None
    return path


def run(args) -> int:
    from app.loading import open_engine
    from app.paths import DEMO_DIR
    from engine import evaluate
    from engine.examples import read_examples_file

    try:
        policies = _policies(args.routing_context)
        opened = open_engine(args.model, library_dir=args.library, device=args.device, quantize=args.quantize)
        print(f"[{opened.description}]", file=sys.stderr)
        engine = opened.engine
        tasks = evaluate.load_tasks(args.tasks or DEMO_DIR / "tasks", engine.adapters)
        kw = dict(limit=args.limit, batch=args.batch, max_new_tokens=args.max_new_tokens, top_p=args.top_p,
                  progress=_progress)
        if args.conversations:
            talk = args.small_talk or _bundled(DEMO_DIR / "small_talk.jsonl", "small talk")
            small_talk = read_examples_file(talk) if talk else []
            res = evaluate.run_conversations(engine, tasks, small_talk, policies=policies, **kw)
            _print_conversations(res)
        else:
            if len(policies) > 1:
                raise SwitchboardError("--routing-context takes one policy without --conversations")
            res = evaluate.run(engine, tasks, **kw)
            two = args.two_tasks or (None if args.tasks else
                                     _bundled(DEMO_DIR / "two_tasks.jsonl", "two-task prompts"))
            if two is not None:
                res["two_tasks"] = evaluate.run_two_tasks(engine, evaluate.load_two_tasks(two, engine.adapters),
                                                          **kw)
            _print_composite(res)
    except (SwitchboardError, OSError) as e:
        print(f"switchboard eval: {e}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


def _print_composite(res):
    methods = list(res["composite"])
    print(f"{'task':<16}" + "".join(f"{m:>22}" for m in methods))
    print(f"{'':<16}" + "".join(f"{'EM / BLEU / ROUGE-L':>22}" for _ in methods))
    for task, by_method in [*res["tasks"].items(), ("composite", res["composite"])]:
        print(f"{task:<16}" + "".join(f"{s['exact_match']:>10.2f} /{s['bleu']:>5.1f} /{s['rougeL']:>4.2f}"
                                      for s in (by_method[m] for m in methods)))
    print("wall time: " + ", ".join(f"{m} {res['seconds'][m]:.1f} s" for m in methods))
    two = res.get("two_tasks")
    if two:
        names = list(two["methods"])
        print(f"\ntwo-task prompts ({two['prompts']}): exact match of the reply (of its first line / second line)")
        print(f"{'':<16}" + "".join(f"{m:>22}" for m in names))
        print(f"{'two tasks':<16}" + "".join(f"{s['exact_match']:>8.2f} ({s['first_line']:.2f} / {s['second_line']:.2f})"
                                             for s in (two["methods"][m] for m in names)))
        print("wall time: " + ", ".join(f"{m} {two['seconds'][m]:.1f} s" for m in names))
        print("two tasks: " + " | ".join(f"{m} {two['methods'][m]['exact_match']:.2f}" for m in names))
    print("composite: " + " | ".join(f"{m} {res['composite'][m]['exact_match']:.2f}" for m in methods))


def _print_conversations(res):
    columns = list(res["groups"]["all turns"])
    print(f"{res['chats']} chats, {res['turns']} turns; exact match per turn")
    print(f"{'':<40}" + "".join(f"{c:>18}" for c in columns))
    for group, by_column in res["groups"].items():
        n = next(iter(by_column.values()))["n"]
        print(f"{f'{group} ({n})':<40}" + "".join(f"{by_column[c]['exact_match']:>18.2f}" for c in columns))
    print("wall time: " + ", ".join(f"{c} {s:.1f} s" for c, s in res["seconds"].items()))
    for column, talk in res["small_talk"].items():
        print(f"small talk ({talk['n']} prompts), {column}: answered as the base model {talk['same_as_base']:.2f}, "
              f"base model chosen {talk['chose_base']:.2f}")
