"""`switchboard chat [--model DIR] [--library DIR] "prompt"`: stream one reply, routing shown per sentence."""
import sys

from engine.errors import SwitchboardError
from engine.generation import GenerationSettings

from app.commands import options
from app.plural import plural

# the flags that set a GenerationSettings field of the same name
SETTINGS = ("top_p", "max_adapters", "temperature", "top_k", "sample_top_p", "repetition_penalty", "seed",
            "max_new_tokens", "stop")


def add_parser(sub):
    p = sub.add_parser("chat", help="stream a reply from a local model, routing shown per sentence",
                       description="Stream a reply to PROMPT. The reply goes to stdout; each sentence's routing "
                                   "and the final statistics go to stderr. Without --model: the bundled demo.")
    p.add_argument("prompt", help="the user message")
    p.add_argument("--model", type=options.model, metavar="DIR|FILE.gguf",
                   help="a local Hugging Face model folder or .gguf file (default: the bundled demo)")
    p.add_argument("--library", type=options.folder, metavar="DIR",
                   help="an adapter library folder to load (default: the demo's adapters)")
    p.add_argument("--router", type=options.router_file, metavar="FILE",
                   help="route with this router (NAME.safetensors + NAME.json, trained for the loaded adapters in "
                        "their order) instead of the library's")
    p.add_argument("--device", type=options.device, default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", choices=options.DTYPES, default="auto")
    p.add_argument("--allow-pickle", action="store_true", help="load .bin/.pt weights (only for trusted files)")
    p.add_argument("--quantize", choices=options.QUANTIZE, default="auto",
                   help="weight-only quantization at load (auto: a GGUF file's own precision, else none)")
    p.add_argument("--system", help="a system prompt")
    r = p.add_argument_group("routing (which adapters each sentence is generated under)")
    r.add_argument("--top-p", "--routing-top-p", dest="top_p", type=options.setting("top_p", options.number),
                   metavar="P", help="keep the most likely adapters until their router probability reaches P "
                                     "(0 < P <= 1, default 0.8)")
    r.add_argument("--max-adapters", type=options.at_least(1, "leave it out for no limit"), metavar="N",
                   help="at most N adapters per sentence (default: no limit)")
    r.add_argument("--mix", type=options.mix, help="a fixed mix instead of the router, e.g. 'math=0.7,units=0.3'")
    s = p.add_argument_group("sampling (which token comes next); a --preset, then these flags")
    s.add_argument("--preset", help="a sampling preset: Precise (greedy, the default), Balanced, Creative, or one of "
                                    "your saved presets")
    s.add_argument("--temperature", type=options.setting("temperature", options.number), metavar="T",
                   help="0 = greedy (default)")
    s.add_argument("--top-k", type=options.setting("top_k", options.integer), metavar="K", help="0 = off")
    s.add_argument("--sample-top-p", type=options.setting("sample_top_p", options.number), metavar="P",
                   help="nucleus sampling: keep the most likely tokens up to probability P (1 = off)")
    s.add_argument("--repetition-penalty", type=options.setting("repetition_penalty", options.number), metavar="R",
                   help="1 = off")
    s.add_argument("--seed", type=options.integer, help="a random seed, for a reply that can be repeated")
    p.add_argument("--max-new-tokens", type=options.setting("max_new_tokens", options.integer), metavar="N",
                   help="the reply's length limit (default 256)")
    p.add_argument("--stop", action="append", help="stop string (repeatable)")


def settings(args) -> GenerationSettings:
    """The preset (if any), then every flag given."""
    from app.presets import Presets

    base = Presets().get(args.preset).apply(GenerationSettings()) if args.preset else GenerationSettings()
    return base.with_(**{name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None})


def run(args) -> int:
    try:
        return _chat(args)
    except SwitchboardError as e:
        print(f"switchboard chat: {e}", file=sys.stderr)
        return 2


def _chat(args) -> int:
    from app.loading import open_engine
    from engine.events import RoutingEvent, TokenEvent

    g = settings(args)  # before the model loads: a bad preset costs no wait
    opened = open_engine(args.model, library_dir=args.library, device=args.device, dtype=args.dtype,
                         allow_pickle=args.allow_pickle, quantize=args.quantize)
    engine = opened.engine
    if args.router:
        engine.load_router(args.router)
    if args.mix:
        unknown = [name for name in args.mix if name not in engine.adapters]
        if unknown:  # before the first sentence is routed under it
            raise SwitchboardError(f"--mix: not loaded: {', '.join(map(repr, unknown))} (loaded: "
                                   f"{', '.join(engine.adapters) or 'none'})")
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
               [{"role": "user", "content": args.prompt}]
    for i, ev in enumerate(engine.generate(messages, g, mix=args.mix)):
        if i == 0:  # after the prompt was accepted: a refusal (too long, ...) stays one line
            print(f"[{opened.description}]", file=sys.stderr)
            for path, reason in opened.refused:
                print(f"[refused {path}: {reason}]", file=sys.stderr)
            for note in opened.notes:
                print(f"[{note}]", file=sys.stderr)
        if isinstance(ev, RoutingEvent):
            mix = " + ".join(f"{k} {w:.2f}" for k, w in ev.selected.items()) or "base model"
            print(f"\n[sentence {ev.sentence + 1}: {mix}]", file=sys.stderr, flush=True)
        elif isinstance(ev, TokenEvent):
            print(ev.text, end="", flush=True)
        else:
            s = ev.stats
            print(f"\n[{plural(s['tokens'], 'token')}, {s['tokens_per_s']:.1f} tok/s, first token "
                  f"{s['ttft_ms']:.0f} ms, routing {s['routing_ms']:.1f} ms, stop: {s['stop_reason']}]",
                  file=sys.stderr)
    print()
    return 0
