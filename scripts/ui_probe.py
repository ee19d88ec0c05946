"""Measure the window while text streams in: event-loop stalls (a 5 ms QTimer probe), chart updates per second,
and memory across many chart updates. The numbers go to docs/PERFORMANCE.md (UI section).

    python scripts/ui_probe.py                 # tiny random Llama + 8 adapters + router, then a synthetic stream
    python scripts/ui_probe.py --model DIR --adapter A --adapter B --router R.safetensors

Phase 1 streams real replies from the engine thread. Phase 2 replaces the engine with a thread that emits the
worker's signals faster than a GPU streams a chat (a token every 0.5 ms, a sentence every 8 tokens, 100 adapters,
2048-token replies) into the same window, to show the UI's own ceiling. Run offscreen (QT_QPA_PLATFORM=offscreen) or under Xvfb.
"""
import argparse
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

PROMPTS = ["Translate to French: cat, dog, house.", "Spell the word world. Then sort the list 5, 3, 9, 1.",
           "Add 2 and 3, then multiply by 4.", "Reverse the word hello. Convert 10 km to miles."]
NAMES = ["python-code", "math", "french", "summarize", "legal", "medical", "poetry", "sql"]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Probe:
    """A 5 ms timer; the gap between its ticks is how long the event loop was busy."""

    def __init__(self):
        self.gaps: list[float] = []
        self._last = None
        self.timer = QTimer(interval=5)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000)
        self._last = now

    def start(self):
        self.gaps.clear()
        self._last = None
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        g = sorted(self.gaps)
        return {"max_ms": g[-1], "p99_ms": g[int(0.99 * (len(g) - 1))], "ticks": len(g)}


class Counter:
    """Counts and times calls of a method (chart updates, bar repaints, UI handlers) without changing it."""

    def __init__(self, owner, name):
        self.n = 0
        self.ms: list[tuple[float, float]] = []  # (wall, CPU of this thread): wall also counts preemption, GIL waits
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            self.n += 1
            t, c = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.ms.append(((time.perf_counter() - t) * 1000, (time.thread_time() - c) * 1000))

        setattr(owner, name, counted)

    def worst(self, since=0) -> tuple[float, float]:
        return (max((w for w, _ in self.ms[since:]), default=0.0), max((c for _, c in self.ms[since:]), default=0.0))


def build_assets(root: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_adapter_dir, make_model_dir
    from engine.router import Router

    make_model_dir(root / "model", "llama")
    adapters = [make_adapter_dir(root / "adapters" / n, root / "model", seed=i) for i, n in enumerate(NAMES)]
    examples = {n: [f"{n} request {i}: please help with {n}" for i in range(10)] for n in NAMES}
    Router.train(examples, epochs=10).save(root / "router.safetensors")
    return root / "model", adapters, root / "router.safetensors"


def run_until(app, condition, timeout_s):
    end = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.001)
    if not condition():
        raise TimeoutError("probe: timed out")


def phase_engine(app, controller, probe, charts, paints, turns, max_new_tokens):
    window = controller.window
    window.controls.max_new_tokens.setValue(max_new_tokens)
    results = []
    for t in range(turns):
        c0, p0 = charts.n, paints.n
        window.chat.input.setPlainText(PROMPTS[t % len(PROMPTS)])
        probe.start()
        t0 = time.perf_counter()
        window.chat.send.click()
        run_until(app, lambda: not controller.generating, 300)
        dt = time.perf_counter() - t0
        stall = probe.stop()
        stats = controller.conv.turns[-1].stats
        results.append({**stall, "s": dt, "tok_s": stats.get("tokens_per_s", 0), "tokens": stats.get("tokens"),
                        "sentences": len(controller.conv.turns[-1].sentences),
                        "chart_per_s": (charts.n - c0) / dt, "paints_per_s": (paints.n - p0) / dt})
    return results


def phase_synthetic(app, controller, probe, charts, paints, turns, tokens, n_adapters, tok_interval_s, sentence_tokens):
    """A thread emitting the worker's events the way EngineWorker does (30 ms token batches, a flush at every
    sentence end, then a routing event), `tokens` per reply, one token every `tok_interval_s`."""
    from engine.events import RoutingEvent, TokenEvent
    from engine.generation import GenerationSettings
    from ui import colors

    names = [f"adapter-{i:03d}" for i in range(n_adapters)]
    colors.assign(names)
    controller.window.controls.set_adapters(names)
    signals = controller.signals
    words = "the router picks a mix of adapters for every sentence and the model writes with it".split()

    def routing(i):
        r = random.Random(i)
        w = [r.random() ** 4 for _ in names]
        s = sum(w)
        probs = {n: x / s for n, x in zip(names, w)}
        top = sorted(probs, key=probs.get, reverse=True)[:3]
        t = sum(probs[n] for n in top)
        return RoutingEvent(i, probs, {n: probs[n] / t for n in top}, 0.3)

    def stream(reply):
        sentence, parts, last, t0 = 0, [], time.monotonic(), time.perf_counter()
        signals.routing.emit(routing(0))
        for n in range(1, tokens + 1):
            time.sleep(tok_interval_s)
            end = n % sentence_tokens == 0
            parts.append(" " + words[n % len(words)] + ("." if end else "") + ("\n\n" if n % 96 == 0 else ""))
            if end or time.monotonic() - last >= 0.03:
                signals.tokens.emit(TokenEvent("".join(parts), end))
                parts.clear()
                last = time.monotonic()
            if end:
                sentence += 1
                signals.routing.emit(routing(sentence))
        signals.tokens.emit(TokenEvent("".join(parts), False))
        reply.set_result({"tokens": tokens, "tokens_per_s": tokens / (time.perf_counter() - t0),
                          "stop_reason": "length"})

    results = []
    for _ in range(turns):
        conv = controller.conv
        conv.add_user("synthetic stream")
        controller._render_turn(len(conv.turns) - 1)
        conv.start_assistant(GenerationSettings())
        controller.generating = True
        reply = Future()  # ended by the stream, as the worker ends a reply's Future
        controller.run(reply, controller._finish_reply)
        c0, p0, m0 = charts.n, paints.n, rss_mb()
        thread = threading.Thread(target=stream, args=(reply,))
        probe.start()
        t0 = time.perf_counter()
        thread.start()
        run_until(app, lambda: not controller.generating, 300)
        dt = time.perf_counter() - t0
        thread.join()
        results.append({**probe.stop(), "s": dt, "sentences": len(conv.turns[-1].sentences),
                        "tok_s": conv.turns[-1].stats["tokens_per_s"],
                        "chart_per_s": (charts.n - c0) / dt, "paints_per_s": (paints.n - p0) / dt,
                        "rss_start_mb": m0, "rss_end_mb": rss_mb()})
    return results


def chart_memory(app, n_adapters, updates):
    """Many updates of one chart (all adapters' bars, labels, cut line): memory must stay flat."""
    from ui.routing_chart import RoutingChart
    chart = RoutingChart()
    chart.resize(500, 600)
    chart.show()
    names = [f"adapter-{i:03d}" for i in range(n_adapters)]
    rng = random.Random(0)

    def one():
        w = [rng.random() ** 4 for _ in names]
        s = sum(w)
        probs = {n: x / s for n, x in zip(names, w)}
        top = sorted(probs, key=probs.get, reverse=True)[:rng.randint(1, 6)]
        chart.set_routing(probs, {n: probs[n] for n in top}, 0.8)
        app.processEvents()

    for _ in range(200):  # warm: label pool and caches reach their size
        one()
    m0, t0 = rss_mb(), time.perf_counter()
    for _ in range(updates):
        one()
    dt = time.perf_counter() - t0
    return {"updates": updates, "per_update_ms": dt * 1000 / updates, "rss_start_mb": m0, "rss_end_mb": rss_mb(),
            "items": len(chart.plot.getPlotItem().items)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--adapter", action="append", default=[])
    p.add_argument("--router")
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--synthetic-turns", type=int, default=5)
    p.add_argument("--synthetic-tokens", type=int, default=2048, help="tokens per synthetic reply")
    p.add_argument("--adapters", type=int, default=100, help="adapters in the synthetic stream")
    p.add_argument("--switch-interval", type=float, help="sys.setswitchinterval in seconds (default: the app's)")
    p.add_argument("--skip-engine", action="store_true")
    args = p.parse_args()

    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    print(f"GIL switch interval {sys.getswitchinterval() * 1000:.1f} ms")
    app = QApplication(["ui_probe"])
    app.setStyle("Fusion")
    import pyqtgraph as pg

    from app.controller import Controller
    from app.settings import Settings
    from ui.routing_chart import RoutingChart

    tmp = Path(tempfile.mkdtemp())
    if args.model:
        model, adapters, router = args.model, args.adapter, args.router
    else:
        model, adapters, router = build_assets(tmp)
    settings = Settings(QSettings(str(tmp / "probe.ini"), QSettings.IniFormat))
    settings.device = "cpu" if not args.model else "auto"
    charts = Counter(RoutingChart, "set_routing")
    paints = Counter(pg.BarGraphItem, "paint")
    handlers = [Counter(Controller, name) for name in ("_on_tokens", "_on_routing", "_draw_frame")]
    controller = Controller(settings)
    window = controller.window
    window.resize(1400, 860)
    window.show()
    controller.open_default_model(str(model))
    run_until(app, lambda: not controller.busy and controller.model, 300)
    worker = controller.worker
    for a in adapters:
        controller.run(worker.submit("add_adapter", lambda e, a=a: e.add_adapter(a, name=Path(a).name)), lambda _: None)
    if router:
        controller.run(worker.submit("load_router", lambda e: e.load_router(router)), lambda _: None)
    run_until(app, lambda: not controller.busy, 300)
    probe = Probe()
    probe.start()
    run_until(app, lambda: False if len(probe.gaps) < 600 else True, 30)  # ~3 s idle: the machine's noise floor
    idle = probe.stop()
    print(f"idle event loop: max gap {idle['max_ms']:.1f} ms (p99 {idle['p99_ms']:.1f}) with nothing streaming")
    marks = [len(h.ms) for h in handlers]

    info = controller.model
    print(f"model {info.model_name} on {info.device}, {len(info.adapters)} adapters, router {info.router}")
    for i, r in enumerate(phase_engine(app, controller, probe, charts, paints, 0 if args.skip_engine else args.turns,
                                       args.max_new_tokens)):
        print(f"engine turn {i + 1}: {r['tokens']} tokens at {r['tok_s']:.0f} tok/s, {r['sentences']} sentences, "
              f"stall max {r['max_ms']:.1f} ms (p99 {r['p99_ms']:.1f}), chart updates {r['chart_per_s']:.1f}/s, "
              f"bar repaints {r['paints_per_s']:.1f}/s")
    for i, r in enumerate(phase_synthetic(app, controller, probe, charts, paints, args.synthetic_turns,
                                          args.synthetic_tokens, args.adapters, 0.0005, 8)):
        print(f"synthetic turn {i + 1}: {args.synthetic_tokens} tokens at {r['tok_s']:.0f} tok/s, {args.adapters} "
              f"adapters, {r['sentences']} sentences: stall max {r['max_ms']:.1f} ms (p99 {r['p99_ms']:.1f}), "
              f"chart updates {r['chart_per_s']:.1f}/s, bar repaints {r['paints_per_s']:.1f}/s, "
              f"RSS {r['rss_start_mb']:.0f} -> {r['rss_end_mb']:.0f} MB")
    wall = max(h.worst(m)[0] for h, m in zip(handlers, marks))
    cpu = max(h.worst(m)[1] for h, m in zip(handlers, marks))
    print(f"longest UI handler while streaming (token/routing slot or frame redraw): {wall:.1f} ms wall, "
          f"{cpu:.1f} ms CPU")
    window.close()
    m = chart_memory(app, args.adapters, 5000)
    print(f"chart alone: {m['updates']} updates of {args.adapters} bars, {m['per_update_ms']:.2f} ms each, "
          f"RSS {m['rss_start_mb']:.1f} -> {m['rss_end_mb']:.1f} MB, {m['items']} plot items")


if __name__ == "__main__":
    main()
