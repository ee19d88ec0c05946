"""`switchboard serve [--model DIR] [--library DIR] [--host H] [--port P] [--api-key KEY]`: the routed adapter
library behind an OpenAI-compatible HTTP API, for editors, agents and scripts."""
import argparse
import os
import sys

from app.commands import options
from engine import SwitchboardError


def add_parser(sub):
    p = sub.add_parser("serve", help="serve the model and its adapters over an OpenAI-compatible HTTP API",
                       description="Serve /v1/models, /v1/chat/completions and /v1/completions. Model 'switchboard' "
                                   "routes every sentence through the router; 'base' is the model alone; each "
                                   "adapter is also a model of its own name. The port is open (503) while the "
                                   "model loads. Without --model: the bundled demo.")
    p.add_argument("--model", help="a local Hugging Face model folder (default: the bundled demo)")
    p.add_argument("--library", type=options.folder,
                   help="an adapter library folder to load (default: the demo's adapters)")
    p.add_argument("--device", type=options.device, default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", choices=options.DTYPES, default="auto")
    p.add_argument("--allow-pickle", action="store_true", help="load .bin/.pt weights (only for trusted files)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any other needs --api-key)")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--api-key", default=os.environ.get("SWITCHBOARD_API_KEY"),
                   help="clients must send 'Authorization: Bearer KEY' (default: $SWITCHBOARD_API_KEY)")
    p.add_argument("--max-batch", type=options.at_least(1), default=8,
                   help="at most this many requests decoded together")
    p.add_argument("--batch-window-ms", type=options.at_least_zero, default=2.0,
                   help="how long a request that finds the engine idle waits for others to share its batch")


def port(text: str) -> int:
    value = options.integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 (any free port) to 65535, got {value}")
    return value


def run(args) -> int:
    from app.loading import open_engine
    from app.server import LocalServer

    def load():
        opened = open_engine(args.model, library_dir=args.library, device=args.device, dtype=args.dtype,
                             allow_pickle=args.allow_pickle)
        opened.engine.warmup()  # captures the decode graphs now, not in the first client's reply
        server.set_engine(opened.engine)
        return opened

    try:
        server = LocalServer(host=args.host, port=args.port, api_key=args.api_key, max_rows=args.max_batch,
                             batch_window_ms=args.batch_window_ms, listener=_log)
        address = server.start()
    except SwitchboardError as e:
        print(f"switchboard serve: {e}", file=sys.stderr)
        return 2
    print(f"[serving {address}/v1; loading the model...]", file=sys.stderr, flush=True)
    try:
        opened = server.engine_thread.call(load).result()
    except SwitchboardError as e:
        print(f"switchboard serve: {e}", file=sys.stderr)
        server.stop()
        return 2
    except KeyboardInterrupt:  # while loading: the threads are daemons and end with the process
        return 130
    for path, reason in opened.refused:
        print(f"[adapter {path} not loaded: {reason}]", file=sys.stderr)
    models = ", ".join(["switchboard", "base", *opened.engine.adapters])
    print(f"[{opened.description}; models: {models}; Ctrl-C stops]", file=sys.stderr, flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _log(state: str, request):
    """One line per finished request on stderr."""
    if state == "running":
        return
    s, info = request.stats, request.info
    routing = " | ".join(" + ".join(f"{k} {w:.2f}" for k, w in ev.selected.items()) or "base" for ev in request.routing)
    line = f"{info['endpoint']} {info['model']} from {info['client']}: {state}"
    if s:
        line += (f", {s['tokens']} tokens, {s['total_s']:.2f} s, batch of {s['batch_rows']}, stop: {s['stop_reason']}"
                 f"; routing: {routing or '-'}")
    print(f"[{line}]", file=sys.stderr, flush=True)
