"""Does the local server answer the demo's held-out prompts exactly as `switchboard chat` does?

    python scripts/server_parity.py [--limit N] [--concurrency 8]

For every prompt of resources/demo/tasks/*.jsonl (the first N per task with --limit): the reply of the chat
command's own code (app.commands.chat.run, its stdout captured; the engine it opens is opened once and reused),
then the server's chat completion for model `switchboard` through the official `openai` client, one request
at a time, and again with `--concurrency` clients at once (so the prompts are batched). Prints the number of
prompts whose reply differs, and the task answers each path gets right.
"""
import argparse
import contextlib
import io
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, help="prompts per task (default: all)")
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()

    import openai

    import app.loading
    from app.commands import chat
    from app.paths import DEMO_DIR
    from app.server import LocalServer

    prompts = []
    for path in sorted((DEMO_DIR / "tasks").glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()[: args.limit]
        prompts += [(path.stem, json.loads(line)) for line in lines]

    opened = app.loading.open_engine(None)
    app.loading.open_engine = lambda *a, **k: opened  # the chat command's code, without reloading the model

    from app.cli import parser

    def chat_command(prompt: str) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            chat.run(parser()[0].parse_args(["chat", prompt]))
        return out.getvalue().removesuffix("\n")

    t = time.perf_counter()
    reference = [chat_command(ex["prompt"]) for _, ex in prompts]
    chat_s = time.perf_counter() - t

    server = LocalServer(port=0)
    server.start()
    server.set_engine(opened.engine)
    client = openai.OpenAI(base_url=f"{server.address}/v1", api_key="none", max_retries=0, timeout=120)

    def served(example) -> tuple[str, int]:
        reply = client.chat.completions.create(model="switchboard",
                                               messages=[{"role": "user", "content": example["prompt"]}])
        return reply.choices[0].message.content, reply.switchboard["stats"]["batch_rows"]

    t = time.perf_counter()
    one_by_one = [served(ex) for _, ex in prompts]
    one_s = time.perf_counter() - t
    t = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        together = list(pool.map(served, [ex for _, ex in prompts]))
    together_s = time.perf_counter() - t
    server.stop()

    def report(name, replies, seconds):
        differ = [(task, ex["prompt"], ref, got) for (task, ex), ref, (got, _) in zip(prompts, reference, replies)
                  if got != ref]
        right = sum(got == ex["response"] for (_, ex), (got, _) in zip(prompts, replies))
        rows = sum(r for _, r in replies) / len(replies)
        print(f"{name}: {len(prompts) - len(differ)}/{len(prompts)} replies identical to switchboard chat, "
              f"{right} correct answers, mean batch {rows:.1f} rows, {seconds:.1f} s")
        for task, prompt, ref, got in differ[:10]:
            print(f"  {task}: {prompt!r}: chat {ref!r}, server {got!r}")

    right = sum(ref == ex["response"] for (_, ex), ref in zip(prompts, reference))
    print(f"switchboard chat: {right}/{len(prompts)} correct answers, {chat_s:.1f} s")
    report("server, one request at a time", one_by_one, one_s)
    report(f"server, {args.concurrency} clients at once", together, together_s)


if __name__ == "__main__":
    main()
