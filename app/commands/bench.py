"""`switchboard bench`: engine vs Hugging Face vs PEFT decode speed, side by side in one run."""
import sys
import warnings

from app.commands import options

MIX = 3             # engine/bench.py times mixes of 3 adapters
SWITCH_EVERY = 20   # and switches them every 20 tokens


def add_parser(sub):
    p = sub.add_parser("bench", help="measure decode speed: engine vs Hugging Face and PEFT",
                       description="Builds a random-init model of a real shape (or loads --model), writes N random "
                                   "PEFT adapters to disk and loads them through add_adapter, then times every "
                                   "variant interleaved and prints a table (medians over --runs rounds).")
    p.add_argument("--shape", default="tiny", choices=["llama3-8b", "qwen2-1.5b", "tiny"])
    p.add_argument("--model", type=options.folder, metavar="DIR", help="a local model folder instead of --shape")
    p.add_argument("--device", type=options.device, default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", choices=options.DTYPES, default="auto")
    p.add_argument("--adapters", type=options.integer, default=100, metavar="N",
                   help=f"random rank-R adapters to load (0: base only; else at least {MIX}, the size of the timed "
                        f"mixes)")
    p.add_argument("--rank", type=options.at_least(1), default=8, metavar="R")
    p.add_argument("--targets", default="q_proj,v_proj", help="comma-separated module kinds (q_proj, k_proj, "
                   "v_proj, o_proj, gate_proj, up_proj, down_proj), or all-linear")
    p.add_argument("--prompt", type=options.at_least(1), default=256, metavar="N", help="prompt tokens")
    p.add_argument("--new", type=options.at_least(2, "decode time is the time after the first token"), default=128,
                   metavar="N", help=f"new tokens (EOS ignored; with adapters more than {SWITCH_EVERY}, so that a "
                                     f"switch is timed)")
    p.add_argument("--runs", type=options.at_least(1), default=3, metavar="N",
                   help="interleaved rounds; the median is reported")
    p.add_argument("--no-peft", action="store_true", help="skip the PEFT baselines")
    p.add_argument("--workload", choices=["table", "chat", "long", "cold"], default="table",
                   help="table: the batch-1 decode table (default); chat: an 8-turn conversation growing to ~8K "
                        "tokens, sampled and routed per sentence; long: long prompts' first token and memory "
                        "next to Hugging Face's SDPA; cold: a first and a second start from disk")
    p.add_argument("--memory-gib", type=options.above_zero, metavar="GIB",
                   help="with --workload chat: let the engine use only this much GPU memory (a stand-in for a "
                        "smaller card)")
    p.add_argument("--quantize", type=options.quantized_kinds, metavar="KINDS",
                   help="with the table: also time engines of these weights, e.g. int8,int4, next to the float "
                        "engine (decode, batch, fused, switch, quality, memory)")
    p.add_argument("--json", metavar="FILE", help="write all numbers to this file")
    p.add_argument("--library", action="store_true",
                   help="instead: time importing --adapters random adapters of --shape into a fresh adapter "
                        "library (no model is built; dtype auto = bfloat16)")
    p.add_argument("--dir", type=options.folder, help="with --library: the folder (and so the disk) to work in "
                                                      "(default: the temp dir)")


def check(args):
    """What the flags cannot say alone: -> the problem, or None."""
    from engine.bench import SHAPES, parse_targets
    from engine.transformer import LINEAR_KINDS

    unknown = [t for t in parse_targets(args.targets) if t not in LINEAR_KINDS]
    if unknown:
        return f"--targets: unknown module kind(s) {', '.join(map(repr, unknown))}; use {','.join(LINEAR_KINDS)} " \
               f"or all-linear"
    if args.quantize and (args.library or args.workload != "table"):
        return "--quantize adds rows to the decode table (--workload table)"
    if args.dir and not args.library:
        return "--dir is for --library (the folder its imports are timed in)"
    if args.library:
        if args.model:
            return "--library times imports for a --shape; it does not load --model"
        if args.workload != "table":
            return "--workload is for the model's benchmarks; --library times imports"
        if args.adapters < 1:
            return f"--library times importing adapters: --adapters must be at least 1, got {args.adapters}"
        return None
    if args.memory_gib is not None and (args.library or args.workload != "chat"):
        return "--memory-gib is for --workload chat"
    if args.workload == "chat" and args.adapters < MIX:
        return f"--workload chat routes among --adapters: at least {MIX} (it fuses up to {MIX}), got {args.adapters}"
    if args.workload == "cold" and args.model:
        return "--workload cold times starts of a --shape written to disk; it does not load --model"
    if args.workload != "table":
        return None
    if args.adapters != 0 and args.adapters < MIX:
        return f"--adapters must be 0 (base only) or at least {MIX} (the timed mixes fuse {MIX}), got {args.adapters}"
    if args.adapters and args.new <= SWITCH_EVERY:
        return f"--new must be more than {SWITCH_EVERY} with adapters (they switch every {SWITCH_EVERY} tokens), " \
               f"got {args.new}"
    context = SHAPES[args.shape]["max_position_embeddings"]
    if not args.model and args.prompt + args.new > context:
        return f"--prompt {args.prompt} + --new {args.new} tokens do not fit the {args.shape} shape's context " \
               f"of {context} tokens"
    return None


def run(args) -> int:
    from engine import SwitchboardError, bench

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        problem = check(args)
        if problem:
            raise SwitchboardError(problem)
        with warnings.catch_warnings():
            # transformers' and PEFT's notes about their own internals (deprecations, the adapter the baseline
            # deletes) say nothing about the numbers
            warnings.filterwarnings("ignore", module=r"(transformers|peft)\b")
            if args.library:
                from app import bench_library as kind

                res = kind.run(args.shape, args.adapters, args.rank, bench.parse_targets(args.targets), args.dtype,
                               args.dir, log)
            elif args.workload != "table":
                from engine import workloads as kind

                res = kind.run(args.workload, args.shape, args.model, args.device, args.dtype, args.adapters,
                               args.memory_gib, log)
            else:
                kind = bench
                res = bench.run(args.shape, args.model, args.device, args.dtype, args.adapters, args.rank,
                                args.targets, args.prompt, args.new, args.runs, peft=not args.no_peft,
                                quantize=args.quantize or (), log=log)
    except SwitchboardError as e:
        print(f"switchboard bench: {e}", file=sys.stderr)
        return 2
    print(kind.table(res))
    if args.json:
        bench.save(res, args.json)
    return 0
