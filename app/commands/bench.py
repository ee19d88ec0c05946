"""`switchboard bench`: engine vs Hugging Face vs PEFT decode speed, side by side in one run."""
import sys


def add_parser(sub):
    p = sub.add_parser("bench", help="measure decode speed: engine vs Hugging Face and PEFT",
                       description="Builds a random-init model of a real shape (or loads --model), writes N random "
                                   "PEFT adapters to disk and loads them through add_adapter, then times every "
                                   "variant interleaved and prints a table (medians over --runs rounds).")
    p.add_argument("--shape", default="tiny", choices=["llama3-8b", "qwen2-1.5b", "tiny"])
    p.add_argument("--model", help="a local model folder instead of --shape")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--adapters", type=int, default=100, help="random rank-R adapters to load (0: base only)")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--targets", default="q_proj,v_proj", help="comma-separated module kinds, or all-linear")
    p.add_argument("--prompt", type=int, default=256, help="prompt tokens")
    p.add_argument("--new", type=int, default=128, help="new tokens (EOS ignored)")
    p.add_argument("--runs", type=int, default=3, help="interleaved rounds; the median is reported")
    p.add_argument("--no-peft", action="store_true", help="skip the PEFT baselines")
    p.add_argument("--workload", choices=["table", "chat", "long", "cold"], default="table",
                   help="table: the batch-1 decode table (default); chat: an 8-turn conversation growing to ~8K "
                        "tokens, sampled and routed per sentence; long: long prompts' first token and memory "
                        "next to Hugging Face's SDPA; cold: a first and a second start from disk")
    p.add_argument("--quantize", help="with the table: also time engines of these weights, e.g. int8,int4, next to "
                                      "the float engine (decode, fused, switch, quality, memory)")
    p.add_argument("--json", help="write all numbers to this file")
    p.add_argument("--library", action="store_true",
                   help="instead: time importing --adapters random adapters of --shape into a fresh adapter "
                        "library (no model is built; dtype auto = bfloat16)")
    p.add_argument("--dir", help="with --library: the folder (and so the disk) to work in (default: the temp dir)")


def run(args) -> int:
    from engine import SwitchboardError, bench, bench_quant

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.quantize and (args.library or args.workload != "table"):
            raise SwitchboardError("--quantize adds rows to the decode table (--workload table); it does not apply "
                                   "to --library or the other workloads")
        if args.library:
            from app import bench_library as kind

            if args.model:
                raise SwitchboardError("--library times imports for a --shape; it does not load --model")
            res = kind.run(args.shape, args.adapters, args.rank, bench.parse_targets(args.targets), args.dtype,
                           args.dir, log)
        elif args.workload != "table":
            from engine import workloads as kind

            res = kind.run(args.workload, args.shape, args.model, args.device, args.dtype, args.adapters, log)
        else:
            kind = bench
            res = bench.run(args.shape, args.model, args.device, args.dtype, args.adapters, args.rank,
                            args.targets, args.prompt, args.new, args.runs, peft=not args.no_peft,
                            quantize=bench_quant.parse_kinds(args.quantize), log=log)
    except SwitchboardError as e:
        print(f"switchboard bench: {e}", file=sys.stderr)
        return 2
    print(kind.table(res))
    if args.json:
        bench.save(res, args.json)
    return 0
