"""EngineWorker against the real engine on a tiny Llama, without Qt: typed commands in, Futures and plain
dataclass events out, token batching, cancel from another thread, errors (CUDA OOM included) that leave the
thread usable, one FIFO queue shared with other work, and a clean stop. (Its Qt face: tests/test_ui.py.)"""
import threading
from concurrent.futures import CancelledError

import pytest
import torch

import app.worker
from app.worker import JobFailed, ModelChanged, Progress
from engine.events import DoneEvent, RoutingEvent, TokenEvent
from engine.generation import GenerationSettings

PROMPT = [{"role": "user", "content": "Translate to French: cat, dog, house."}]
TIMEOUT = 60


class FixedRouter:
    """Stands in for a trained router: alternates between two mixes, sentence by sentence."""
    adapters = ["alpha", "beta", "gamma"]

    def __init__(self):
        self.calls = 0

    def route(self, context, **_settings):
        sentence, self.calls = self.calls, self.calls + 1
        probs = {"alpha": 0.6, "beta": 0.3, "gamma": 0.1} if sentence % 2 == 0 else {"alpha": 0.1, "beta": 0.2,
                                                                                      "gamma": 0.7}
        top = sorted(probs, key=probs.get, reverse=True)[:2]
        return RoutingEvent(sentence, probs, {n: probs[n] / sum(probs[n] for n in top) for n in top}, 0.1)


def of(worker, kind, start=0):
    return [e for e in worker.events[start:] if isinstance(e, kind)]


def failure(future) -> str:
    with pytest.raises(JobFailed) as e:
        future.result(TIMEOUT)
    return str(e.value)


def add(engine, path, name):
    return engine.add_adapter(path, name=name)


@pytest.fixture
def loaded(worker, llama_dir, llama_adapters):
    worker.load_model(str(llama_dir), device="cpu").result(TIMEOUT)
    for name in ("alpha", "beta", "gamma"):
        worker.submit("add_adapter", lambda engine, n=name: add(engine, llama_adapters[n], n)).result(TIMEOUT)
    return worker


def test_load_reports_plain_model_info(worker, llama_dir):
    loaded = worker.load_model(str(llama_dir), device="cpu").result(TIMEOUT)
    assert loaded.refused == [] and loaded.colors == {}
    info = of(worker, ModelChanged)[-1].info
    assert info.model_name == llama_dir.name and info.device == "cpu"
    assert info.adapters == () and info.router is False and info.demo is False
    assert any(p.message.startswith("Loading") for p in of(worker, Progress))


def test_generate_streams_routing_then_tokens_per_sentence(loaded):
    loaded._engine.router = FixedRouter()
    start = len(loaded.events)
    done = loaded.generate(PROMPT, GenerationSettings(max_new_tokens=60, ignore_eos=True)).result(TIMEOUT)
    assert isinstance(done, DoneEvent) and done.stats["tokens"] == 60 and done.stats["stop_reason"] == "length"
    stream = [e for e in loaded.events[start:] if isinstance(e, (RoutingEvent, TokenEvent))]
    routings = [e for e in stream if isinstance(e, RoutingEvent)]
    assert isinstance(stream[0], RoutingEvent) and len(routings) >= 2  # routed before the first token, then per sentence
    assert [r.sentence for r in routings] == list(range(len(routings)))
    assert routings[1].probs == {"alpha": 0.1, "beta": 0.2, "gamma": 0.7}
    for i, e in enumerate(stream[1:], 1):  # tokens are flushed (ending the sentence) before each new routing
        if isinstance(e, RoutingEvent):
            assert isinstance(stream[i - 1], TokenEvent) and stream[i - 1].sentence_end is True
    assert "".join(e.text for e in stream if isinstance(e, TokenEvent))


def test_tokens_are_batched(loaded, monkeypatch):
    monkeypatch.setattr(app.worker, "TOKEN_BATCH_S", 3600.0)  # only sentence ends, routing and Done flush
    start = len(loaded.events)
    done = loaded.generate(PROMPT, GenerationSettings(max_new_tokens=60, ignore_eos=True)).result(TIMEOUT)
    batches = of(loaded, TokenEvent, start)
    sentence_ends = sum(1 for e in batches if e.sentence_end)
    assert len(batches) <= sentence_ends + 1 < done.stats["tokens"]


def test_cancel_from_another_thread_stops_generation(loaded):
    start = len(loaded.events)
    events = loaded.on_event

    def stop_at_first_text(event):  # Stop pressed as soon as text appears
        events(event)
        if isinstance(event, TokenEvent):
            threading.Thread(target=loaded.cancel).start()

    loaded.on_event = stop_at_first_text
    done = loaded.generate(PROMPT, GenerationSettings(max_new_tokens=200, ignore_eos=True)).result(TIMEOUT)
    loaded.on_event = events
    assert done.stats["stop_reason"] == "cancel" and done.stats["tokens"] < 200
    assert of(loaded, TokenEvent, start)


def test_stop_before_generation_starts_still_cancels_but_a_stale_stop_does_not(loaded):
    loaded.cancel()  # idle: pressed with nothing running; must not cancel the next reply
    done = loaded.generate(PROMPT, GenerationSettings(max_new_tokens=20, ignore_eos=True)).result(TIMEOUT)
    assert done.stats["stop_reason"] == "length"
    future = loaded.generate(PROMPT, GenerationSettings(max_new_tokens=200, ignore_eos=True))
    loaded.cancel()  # right after Send, before the worker picked the command up
    assert future.result(TIMEOUT).stats["stop_reason"] == "cancel"


def test_errors_fail_their_future_and_the_worker_stays_usable(worker, tmp_path, llama_dir):
    assert "no model is loaded" in failure(worker.generate(PROMPT, GenerationSettings()))
    assert "missing" in failure(worker.load_model(str(tmp_path / "missing")))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    assert "bad" in failure(worker.load_model(str(tmp_path / "bad")))
    assert of(worker, ModelChanged) == []  # never had a model: nothing changed
    worker.load_model(str(llama_dir), device="cpu").result(TIMEOUT)
    assert "bad" in failure(worker.submit("add_adapter", lambda engine: engine.add_adapter(tmp_path / "bad")))
    worker.generate(PROMPT, GenerationSettings(max_new_tokens=5)).result(TIMEOUT)
    assert "missing" in failure(worker.load_model(str(tmp_path / "missing")))
    assert of(worker, ModelChanged)[-1].info is None  # the old model was dropped before the new one failed


def test_cuda_out_of_memory_is_reported_and_generation_works_after(loaded, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        yield  # a generator, like Engine.generate

    monkeypatch.setattr(loaded._engine, "generate", oom)
    message = failure(loaded.generate(PROMPT, GenerationSettings()))
    assert "GPU out of memory" in message and "20.00 GiB" in message
    monkeypatch.undo()
    loaded.generate(PROMPT, GenerationSettings(max_new_tokens=5)).result(TIMEOUT)


def test_submitted_work_shares_the_one_queue_in_order(loaded):
    """Another part of the app (e.g. a server) queues its own work: it runs on the engine thread, after the reply
    queued before it and never at the same time, and its Future gives the result."""
    ran = []
    reply = loaded.generate(PROMPT, GenerationSettings(max_new_tokens=30, ignore_eos=True))
    batch = loaded.submit("batch", lambda engine: (ran.append((threading.current_thread().name, reply.done())),
                                                   engine.generate_batch([PROMPT, PROMPT], max_new_tokens=4))[1])
    rows = batch.result(TIMEOUT)
    assert ran == [("engine", True)] and [r["tokens"] for r in rows] == [4, 4]
    removed = loaded.submit("remove_adapter", lambda engine: engine.remove_adapter("beta"))
    removed.result(TIMEOUT)
    assert of(loaded, ModelChanged)[-1].info.adapters == ("alpha", "gamma")
    assert "nope" in failure(loaded.submit("remove_adapter", lambda engine: engine.remove_adapter("nope")))


def test_stop_during_generation_ends_the_thread_and_drops_the_queue(loaded):
    start = len(loaded.events)
    loaded.generate(PROMPT, GenerationSettings(max_new_tokens=200, ignore_eos=True))
    queued = loaded.warm_up()
    while not of(loaded, TokenEvent, start):
        threading.Event().wait(0.01)
    loaded.stop()
    assert not loaded._thread.is_alive()
    with pytest.raises(CancelledError):
        queued.result(0)

