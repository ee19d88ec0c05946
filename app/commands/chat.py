"""`switchboard chat [--model DIR] [--library DIR] "prompt"`: stream one reply, routing shown per sentence."""
import sys

from engine import RoutingEvent, SwitchboardError, TokenEvent


def add_parser(sub):
    p = sub.add_parser("chat", help="stream a reply from a local model, routing shown per sentence",
                       description="Stream a reply to PROMPT. The reply goes to stdout; each sentence's routing "
                                   "and the final statistics go to stderr. Without --model: the bundled demo.")
    p.add_argument("prompt", help="the user message")
    p.add_argument("--model", help="a local Hugging Face model folder or .gguf file (default: the bundled demo)")
    p.add_argument("--library", help="an adapter library folder to load (default: the demo's adapters)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="auto | bfloat16 | float16 | float32")
    p.add_argument("--allow-pickle", action="store_true", help="load .bin/.pt weights (only for trusted files)")
    p.add_argument("--quantize", default="auto", choices=["auto", "none", "int8", "int4"],
                   help="weight-only quantization at load (auto: a GGUF file's own precision, else none)")
    p.add_argument("--system", help="a system prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=0.8, help="routing top-p (cumulative router probability)")
    p.add_argument("--max-adapters", type=int, default=None)
    p.add_argument("--mix", help="fixed mix instead of the router, e.g. 'math=0.7,units=0.3'")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise SwitchboardError(f"bad --mix entry {part!r}: expected name=weight") from None
    return mix


def run(args) -> int:
    from app.loading import open_engine

    try:
        opened = open_engine(args.model, library_dir=args.library, device=args.device, dtype=args.dtype,
                             allow_pickle=args.allow_pickle, quantize=args.quantize)
        print(f"[{opened.description}]", file=sys.stderr)
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
                   [{"role": "user", "content": args.prompt}]
        events = opened.engine.generate(
            messages, mix=parse_mix(args.mix) if args.mix else None, top_p=args.top_p,
            max_adapters=args.max_adapters, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
            stop=args.stop)
        for ev in events:
            if isinstance(ev, RoutingEvent):
                mix = " + ".join(f"{k} {w:.2f}" for k, w in ev.selected.items()) or "base model"
                print(f"\n[sentence {ev.sentence + 1}: {mix}]", file=sys.stderr, flush=True)
            elif isinstance(ev, TokenEvent):
                print(ev.text, end="", flush=True)
            else:
                s = ev.stats
                print(f"\n[{s['tokens']} tokens, {s['tokens_per_s']:.1f} tok/s, first token {s['ttft_ms']:.0f} ms, "
                      f"routing {s['routing_ms']:.1f} ms, stop: {s['stop_reason']}]", file=sys.stderr)
        print()
        return 0
    except SwitchboardError as e:
        print(f"switchboard chat: {e}", file=sys.stderr)
        return 2
