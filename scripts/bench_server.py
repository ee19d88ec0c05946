"""The local server against the engine it serves, side by side in one run: throughput of N concurrent streaming
clients vs the engine's own batch of N, and one client's time to first token over HTTP vs Engine.generate's.

    python scripts/bench_server.py --shape llama3-8b --clients 8 --prompt 256 --new 128 --runs 3

The engine is built as `switchboard bench` builds it (engine/bench.py: random weights of a real shape, or
--model DIR), with one random adapter per client: client i asks for model `adapter00i` and the engine's batch
gets the same per-row mixes. The server runs in this process on a free loopback port, the clients in a child
process (as other programs would), speaking plain HTTP + server-sent events. Rounds are interleaved and the
median is reported. Every request decodes exactly --new tokens (ignore_eos), greedy, batched together.
"""
import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="tiny", help="llama3-8b | qwen2-1.5b | tiny (engine/bench.py SHAPES)")
    p.add_argument("--model", help="a local model folder instead of --shape")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--prompt", type=int, default=256, help="prompt tokens (random ones of the vocabulary)")
    p.add_argument("--new", type=int, default=128, help="tokens per reply")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ttft-runs", type=int, default=10, help="single-client requests per round for the TTFT")
    p.add_argument("--batch-window-ms", type=float, default=2.0, help="the server's (switchboard serve's) default")
    p.add_argument("--json", help="write all numbers to this file")
    p.add_argument("--client", help=argparse.SUPPRESS)  # the child process: a JSON job, results on stdout
    args = p.parse_args()
    if args.client:
        return print(json.dumps(run_clients(**json.loads(args.client))))
    res = bench(args)
    print(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


# ---- the clients (child process) ------------------------------------------------------------------------------
def run_clients(address: str, bodies: list[dict]) -> dict:
    """POST every body at once, streaming -> {wall_s, tokens, ttft_ms: [per client]}."""
    host, port = address.removeprefix("http://").rsplit(":", 1)
    results = [None] * len(bodies)
    start = threading.Barrier(len(bodies) + 1)

    def one(i):
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        payload = json.dumps(bodies[i])
        conn.connect()  # a client's connection is open before it asks (keep-alive)
        start.wait()
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", payload, {"Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.status == 200, reply.read()
        ttft, tokens, rows = None, 0, 0
        for line in reply:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(line[6:])
            if ttft is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                ttft = (time.perf_counter() - t0) * 1000
            if "usage" in chunk and chunk["usage"]:
                tokens = chunk["usage"]["completion_tokens"]
            if "switchboard" in chunk:
                rows = chunk["switchboard"]["stats"]["batch_rows"]
        results[i] = (ttft, tokens, time.perf_counter(), rows)
        conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return {"wall_s": max(r[2] for r in results) - t0, "tokens": sum(r[1] for r in results),
            "ttft_ms": [r[0] for r in results], "batch_rows": [r[3] for r in results]}


def clients(address: str, bodies: list[dict]) -> dict:
    job = json.dumps({"address": address, "bodies": bodies})
    out = subprocess.run([sys.executable, __file__, "--client", job], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# ---- the server and the engine (this process) ------------------------------------------------------------------
def bench(args) -> dict:
    import random

    import torch

    from app.server import LocalServer
    from engine import bench as engine_bench

    engine, _ = engine_bench.build(args.shape, args.model, args.device, args.dtype)  # a shape's: synthetic tokenizer
    tmp = tempfile.TemporaryDirectory()
    paths = engine_bench.write_adapters(Path(tmp.name), engine.module_shapes(), args.clients, 8,
                                        ("q_proj", "v_proj"), engine.model.lm_head.weight.dtype)
    for path in paths:
        engine.add_adapter(path)
    names = engine.adapters
    rng = random.Random(0)
    prompt = engine.tokenizer.decode([rng.randrange(16, engine.model.args.vocab_size) for _ in range(args.prompt)],
                                     skip_special_tokens=True)
    messages = [{"role": "user", "content": prompt}]
    n, new = args.clients, args.new
    dev = engine.device

    server = LocalServer(port=0, max_rows=n, batch_window_ms=args.batch_window_ms)
    server.start()
    server.set_engine(engine)
    on_engine = server.engine_thread.call

    def body(model):
        return {"model": model, "messages": messages, "max_tokens": new, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True}}

    def engine_batch():
        engine_bench.sync(dev)
        t = time.perf_counter()
        rows = engine.generate_batch([messages] * n, mixes=[{a: 1.0} for a in names], max_new_tokens=new,
                                     ignore_eos=True)
        engine_bench.sync(dev)
        assert all(r["tokens"] == new for r in rows)
        return n * new / (time.perf_counter() - t)

    def engine_ttft():
        t = time.perf_counter()
        for ev in engine.generate(messages, mix={names[0]: 1.0}, max_new_tokens=new, ignore_eos=True):
            if getattr(ev, "text", ""):
                ttft = (time.perf_counter() - t) * 1000
                engine.cancel()
        return ttft

    res = {"shape": args.model or args.shape, "clients": n, "batch_window_ms": args.batch_window_ms, "prompt_tokens": len(engine.tokenizer(prompt)["input_ids"]),
           "new": new, "runs": args.runs,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "dtype": str(engine.model.lm_head.weight.dtype).removeprefix("torch.")}
    t = time.perf_counter()
    on_engine(engine.warmup).result()         # compiles the decode step (CUDA), as switchboard serve does
    on_engine(engine_batch).result()          # captures the decode graphs of batch n and of batch 1
    on_engine(engine_ttft).result()
    clients(server.address, [body(a) for a in names])
    clients(server.address, [body(names[0])])
    res["warm_up_s"] = time.perf_counter() - t
    samples = {}
    for r in range(args.runs):
        print(f"round {r + 1}/{args.runs}", file=sys.stderr, flush=True)
        samples.setdefault("engine_batch_tok_s", []).append(on_engine(engine_batch).result())
        out = clients(server.address, [body(a) for a in names])
        assert out["tokens"] == n * new, out
        samples.setdefault("server_tok_s", []).append(out["tokens"] / out["wall_s"])
        samples.setdefault("server_mean_batch_rows", []).append(statistics.mean(out["batch_rows"]))
        for _ in range(args.ttft_runs):
            samples.setdefault("engine_ttft_ms", []).append(on_engine(engine_ttft).result())
            samples.setdefault("server_ttft_ms", []).append(clients(server.address, [body(names[0])])["ttft_ms"][0])
    server.stop()
    tmp.cleanup()
    for key, values in samples.items():
        res[key] = statistics.median(values)
    res["throughput_ratio"] = res["server_tok_s"] / res["engine_batch_tok_s"]
    res["ttft_over_http_ms"] = res["server_ttft_ms"] - res["engine_ttft_ms"]
    return res


def table(res: dict) -> str:
    return "\n".join([
        f"shape {res['shape']} · {res['device']} · {res['dtype']} · prompt {res['prompt_tokens']} tokens · "
        f"{res['new']} new tokens · median of {res['runs']} rounds",
        f"{res['clients']} concurrent streaming clients: {res['server_tok_s']:.0f} tok/s = "
        f"{res['throughput_ratio']:.3f}x the engine's batch of {res['clients']} ({res['engine_batch_tok_s']:.0f} tok/s); "
        f"a client's batch held {res['server_mean_batch_rows']:.1f} rows (median of the rounds' means)",
        f"time to first token, one client: HTTP {res['server_ttft_ms']:.2f} ms, Engine.generate "
        f"{res['engine_ttft_ms']:.2f} ms (+{res['ttft_over_http_ms']:.2f} ms)",
    ])


if __name__ == "__main__":
    main()
