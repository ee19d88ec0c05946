"""EngineWorker against the real engine on a tiny Llama: commands in, plain-Python signals out, batching,
cancel from the UI thread, errors (CUDA OOM included) that leave the thread usable, and a clean stop."""
import pytest
import torch

import app.worker
from engine.events import RoutingEvent

PROMPT = [{"role": "user", "content": "Translate to French: cat, dog, house."}]


def fixed_route(context, sentence):
    """A routing callback (instead of a trained router): alternates between two mixes."""
    probs = {"alpha": 0.6, "beta": 0.3, "gamma": 0.1} if sentence % 2 == 0 else {"alpha": 0.1, "beta": 0.2,
                                                                                  "gamma": 0.7}
    top = sorted(probs, key=probs.get, reverse=True)[:2]
    return RoutingEvent(sentence, probs, {n: probs[n] / sum(probs[n] for n in top) for n in top}, 0.1)


class Recorder:
    def __init__(self, worker):
        self.events = []
        worker.done.connect(lambda name, result: self.events.append(("done", name, result)))
        worker.failed.connect(lambda name, message: self.events.append(("failed", name, message)))
        worker.routing.connect(lambda ev: self.events.append(("routing", ev)))
        worker.tokens.connect(lambda text, end: self.events.append(("tokens", text, end)))
        worker.progress.connect(lambda message, fraction: self.events.append(("progress", message, fraction)))

    def since(self, start, kind):
        return [e for e in self.events[start:] if e[0] == kind]


@pytest.fixture
def rec(worker):
    return Recorder(worker)


def call(qtbot, worker, rec, command, /, timeout=60_000, **kwargs):
    """Submit a command and wait for its done/failed signal -> (kind, command, payload)."""
    start = len(rec.events)
    worker.submit(command, **kwargs)
    ended = lambda: [e for e in rec.events[start:] if e[0] in ("done", "failed") and e[1] == command]  # noqa: E731
    qtbot.waitUntil(lambda: bool(ended()), timeout=timeout)
    return ended()[0]


@pytest.fixture
def loaded(qtbot, worker, rec, llama_dir, llama_adapters):
    kind, _, info = call(qtbot, worker, rec, "load_model", model_dir=str(llama_dir), device="cpu")
    assert kind == "done", info
    for name in ("alpha", "beta", "gamma"):
        assert call(qtbot, worker, rec, "add_adapter", path=str(llama_adapters[name]), name=name)[0] == "done"
    return worker


def test_load_reports_plain_model_info(qtbot, worker, rec, llama_dir):
    kind, name, info = call(qtbot, worker, rec, "load_model", model_dir=str(llama_dir), device="cpu")
    assert (kind, name) == ("done", "load_model")
    assert info["model_name"] == llama_dir.name and info["device"] == "cpu"
    assert info["adapters"] == [] and info["router"] is False and info["demo"] is False
    assert any(e[1].startswith("Loading") for e in rec.since(0, "progress"))


def test_generate_streams_routing_then_tokens_per_sentence(qtbot, loaded, rec):
    start = len(rec.events)
    kind, _, stats = call(qtbot, loaded, rec, "generate", messages=PROMPT, route=fixed_route, max_new_tokens=60,
                          ignore_eos=True)
    assert kind == "done" and stats["tokens"] == 60 and stats["stop_reason"] == "length"
    stream = [e for e in rec.events[start:] if e[0] in ("routing", "tokens")]
    routings = [e[1] for e in stream if e[0] == "routing"]
    assert stream[0][0] == "routing" and len(routings) >= 2  # routed before the first token, then per sentence
    assert all(isinstance(r, dict) and set(r) == {"sentence", "probs", "selected", "latency_ms", "row",
                                                   "context"} for r in routings)
    assert [r["sentence"] for r in routings] == list(range(len(routings)))
    assert routings[1]["probs"] == {"alpha": 0.1, "beta": 0.2, "gamma": 0.7}
    for i, e in enumerate(stream[1:], 1):  # tokens are flushed (ending the sentence) before each new routing
        if e[0] == "routing":
            assert stream[i - 1][0] == "tokens" and stream[i - 1][2] is True
    assert "".join(e[1] for e in stream if e[0] == "tokens")


def test_tokens_are_batched(qtbot, loaded, rec, monkeypatch):
    monkeypatch.setattr(app.worker, "TOKEN_BATCH_S", 3600.0)  # only sentence ends, routing and Done flush
    start = len(rec.events)
    _, _, stats = call(qtbot, loaded, rec, "generate", messages=PROMPT, max_new_tokens=60, ignore_eos=True)
    signals = rec.since(start, "tokens")
    sentence_ends = sum(1 for e in signals if e[2])
    assert len(signals) <= sentence_ends + 1 < stats["tokens"]


def test_cancel_from_the_ui_thread_stops_generation(qtbot, loaded, rec):
    start = len(rec.events)
    loaded.tokens.connect(loaded.cancel)  # Stop pressed as soon as text appears
    kind, _, stats = call(qtbot, loaded, rec, "generate", messages=PROMPT, max_new_tokens=200, ignore_eos=True)
    loaded.tokens.disconnect(loaded.cancel)
    assert kind == "done" and stats["stop_reason"] == "cancel" and stats["tokens"] < 200
    assert rec.since(start, "tokens")


def test_stop_before_generation_starts_still_cancels_but_a_stale_stop_does_not(qtbot, loaded, rec):
    loaded.cancel()  # idle: pressed with nothing running; must not cancel the next reply
    _, _, stats = call(qtbot, loaded, rec, "generate", messages=PROMPT, max_new_tokens=20, ignore_eos=True)
    assert stats["stop_reason"] == "length"
    loaded.submit("generate", messages=PROMPT, max_new_tokens=200, ignore_eos=True)
    loaded.cancel()  # right after Send, before the worker picked the command up
    start = len(rec.events)
    qtbot.waitUntil(lambda: bool(rec.since(start, "done")), timeout=30_000)
    assert rec.since(start, "done")[0][2]["stop_reason"] == "cancel"


def test_errors_are_signals_and_the_worker_stays_usable(qtbot, worker, rec, tmp_path, llama_dir):
    kind, _, message = call(qtbot, worker, rec, "generate", messages=PROMPT)
    assert kind == "failed" and "no model is loaded" in message
    kind, _, message = call(qtbot, worker, rec, "load_model", model_dir=str(tmp_path / "missing"))
    assert kind == "failed" and "missing" in message
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    kind, _, message = call(qtbot, worker, rec, "load_model", model_dir=str(tmp_path / "bad"))
    assert kind == "failed" and "bad" in message
    assert call(qtbot, worker, rec, "load_model", model_dir=str(llama_dir), device="cpu")[0] == "done"
    kind, _, message = call(qtbot, worker, rec, "add_adapter", path=str(tmp_path / "bad"))
    assert kind == "failed" and "bad" in message
    assert call(qtbot, worker, rec, "generate", messages=PROMPT, max_new_tokens=5)[0] == "done"


def test_cuda_out_of_memory_is_reported_and_generation_works_after(qtbot, loaded, rec, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        yield  # a generator, like Engine.generate

    monkeypatch.setattr(loaded._engine, "generate", oom)
    kind, _, message = call(qtbot, loaded, rec, "generate", messages=PROMPT)
    assert kind == "failed" and "GPU out of memory" in message and "20.00 GiB" in message
    monkeypatch.undo()
    assert call(qtbot, loaded, rec, "generate", messages=PROMPT, max_new_tokens=5)[0] == "done"


def test_add_and_remove_adapters(qtbot, loaded, rec):
    _, _, info = call(qtbot, loaded, rec, "remove_adapter", name="beta")
    assert info["adapters"] == ["alpha", "gamma"]
    kind, _, message = call(qtbot, loaded, rec, "remove_adapter", name="nope")
    assert kind == "failed" and "nope" in message


def test_library_jobs_run_on_the_engine_thread_with_or_without_a_model(qtbot, worker, rec, llama_dir):
    import threading
    seen = []

    def job(engine, progress):  # e.g. a router retrain supplied by the library manager
        seen.append((threading.current_thread(), engine and engine.adapters))
        progress("Training router", 0.5)
        return {"accuracy": 1.0}

    kind, _, result = call(qtbot, worker, rec, "library", job=job)
    assert kind == "done" and result == {"library": {"accuracy": 1.0}}  # no model: the job gets None
    call(qtbot, worker, rec, "load_model", model_dir=str(llama_dir), device="cpu")
    start = len(rec.events)
    kind, _, result = call(qtbot, worker, rec, "library", job=job)
    assert kind == "done" and result["library"] == {"accuracy": 1.0} and result["adapters"] == []
    assert [s[1] for s in seen] == [None, []] and all(s[0] is not threading.main_thread() for s in seen)
    assert ("progress", "Training router", 0.5) in rec.events[start:]


def test_stop_during_generation_ends_the_thread(qtbot, loaded, rec):
    start = len(rec.events)
    loaded.submit("generate", messages=PROMPT, max_new_tokens=200, ignore_eos=True)
    qtbot.waitUntil(lambda: bool(rec.since(start, "tokens")), timeout=30_000)
    loaded.stop()
    assert not loaded.isRunning()


def test_unknown_command_is_refused_at_submit(worker):
    with pytest.raises(ValueError, match="no command 'fly'"):
        worker.submit("fly")
