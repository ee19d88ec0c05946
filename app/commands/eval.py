"""`switchboard eval`: base vs uniform merge vs routed vs single-LoRA oracle on a composite of tasks."""
import json
import sys

from engine import SwitchboardError

from app.commands import options


def add_parser(sub):
    p = sub.add_parser("eval", help="composite-task evaluation: base, uniform merge, routed, single-LoRA oracle",
                       description="Decode every task's prompts (mixed and shuffled, in batches) four ways and "
                                   "score exact match, BLEU and ROUGE-L. Defaults: the bundled demo.")
    p.add_argument("--model", type=options.model, metavar="DIR|FILE.gguf",
                   help="model folder or .gguf file (default: the demo model)")
    p.add_argument("--library", type=options.folder, metavar="DIR",
                   help="adapter library with a trained router (default: the demo's)")
    p.add_argument("--tasks", type=options.folder, metavar="DIR",
                   help="folder of <adapter>.jsonl files with prompt and response (default: the demo's)")
    p.add_argument("--limit", type=options.at_least(1), metavar="N", help="at most N examples per task")
    p.add_argument("--batch", type=options.at_least(1), default=16, metavar="N")
    p.add_argument("--max-new-tokens", type=options.setting("max_new_tokens", options.integer), default=48,
                   metavar="N")
    p.add_argument("--top-p", type=options.setting("top_p", options.number), default=0.8, metavar="P",
                   help="routing top-p")
    p.add_argument("--device", type=options.device, default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quantize", choices=options.QUANTIZE, default="auto",
                   help="weight-only quantization at load (auto: a GGUF file's own precision, else none)")
    p.add_argument("--json", metavar="FILE", help="write all numbers to this file")


def run(args) -> int:
    from app.loading import open_engine
    from app.paths import DEMO_DIR
    from engine import evaluate

    try:
        opened = open_engine(args.model, library_dir=args.library, device=args.device, quantize=args.quantize)
        print(f"[{opened.description}]", file=sys.stderr)
        tasks = evaluate.load_tasks(args.tasks or DEMO_DIR / "tasks", opened.engine.adapters)

        def progress(method, done, total):
            bar = "#" * (30 * done // total)
            print(f"\r{method:>8} [{bar:<30}] {done}/{total}", end="" if done < total else "\n",
                  file=sys.stderr, flush=True)

        res = evaluate.run(opened.engine, tasks, limit=args.limit, batch=args.batch,
                           max_new_tokens=args.max_new_tokens, top_p=args.top_p, progress=progress)
    except SwitchboardError as e:
        print(f"switchboard eval: {e}", file=sys.stderr)
        return 2
    methods = list(res["composite"])
    print(f"{'task':<16}" + "".join(f"{m:>22}" for m in methods))
    print(f"{'':<16}" + "".join(f"{'EM / BLEU / ROUGE-L':>22}" for _ in methods))
    for task, by_method in [*res["tasks"].items(), ("composite", res["composite"])]:
        print(f"{task:<16}" + "".join(f"{s['exact_match']:>10.2f} /{s['bleu']:>5.1f} /{s['rougeL']:>4.2f}"
                                      for s in (by_method[m] for m in methods)))
    print("wall time: " + ", ".join(f"{m} {res['seconds'][m]:.1f} s" for m in methods))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    print("composite: " + " | ".join(f"{m} {res['composite'][m]['exact_match']:.2f}" for m in methods))
    return 0
