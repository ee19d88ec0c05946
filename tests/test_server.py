"""The local OpenAI-compatible server (app/server), spoken to by the official `openai` client, on the demo."""
import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

# the test extras and the server's stack; a machine without them (the GPU machine, offline) skips this module
openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from app.loading import open_engine  # noqa: E402
from app.paths import DEMO_DIR  # noqa: E402
from app.server import LocalServer  # noqa: E402
from engine import BASE, DoneEvent, RoutingEvent, SwitchboardError, TokenEvent  # noqa: E402

KEY = "test-key"


def _held_out(task: str, n: int = 1) -> list[dict]:
    lines = (DEMO_DIR / "tasks" / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def served():
    """(server, client, engine, served-request log) for one server on a free loopback port."""
    log = []
    server = LocalServer(port=0, api_key=KEY, listener=lambda state, request: log.append((state, request)))
    server.start()
    engine = server.engine_thread.call(lambda: open_engine(None).engine).result()
    server.set_engine(engine)
    client = openai.OpenAI(base_url=f"{server.address}/v1", api_key=KEY, max_retries=0, timeout=60)
    yield server, client, engine, log
    client.close()
    server.stop()


def _reference(served, messages, **changes) -> tuple[str, list[RoutingEvent]]:
    """What `switchboard chat` answers: Engine.generate with its defaults, on the engine thread."""
    server, _, engine, _ = served

    def run():
        events = list(engine.generate(messages, **changes))
        return ("".join(e.text for e in events if isinstance(e, TokenEvent)),
                [e for e in events if isinstance(e, RoutingEvent)])
    return server.engine_thread.call(run).result()


def _eventually(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _in_one_batch(server, *calls) -> list[threading.Thread]:
    """Start each call in a thread while the engine thread is kept busy, so that their requests wait together
    for the next batch; -> the threads, running, once the engine is free again."""
    gate = threading.Event()
    server.engine_thread.submit(gate.wait)
    threads = [threading.Thread(target=call) for call in calls]
    for t in threads:
        t.start()
    _eventually(lambda: len(server.scheduler._pending) == len(calls))
    gate.set()
    return threads


def test_default_bind_is_loopback_and_elsewhere_needs_a_key(served):
    assert LocalServer().host == "127.0.0.1"
    assert served[0].address.startswith("http://127.0.0.1:")
    from app.cli import parser
    assert parser()[0].parse_args(["serve"]).host == "127.0.0.1"
    with pytest.raises(SwitchboardError, match="api-key"):
        LocalServer(host="0.0.0.0")
    LocalServer(host="0.0.0.0", api_key="k", run_on_engine=lambda job: None)  # with a key it may


def test_models_list_switchboard_base_and_each_adapter(served):
    _, client, engine, _ = served
    ids = [m.id for m in client.models.list()]
    assert ids == ["switchboard", "base", *engine.adapters] and len(engine.adapters) == 7
    assert client.models.retrieve("reverse").id == "reverse"


def test_chat_answers_as_the_chat_command_routing_trace_and_usage(served):
    _, client, _, _ = served
    for task in ("arithmetic", "dates", "reverse"):
        example = _held_out(task)[0]
        text, routing = _reference(served, _user(example["prompt"]))
        reply = client.chat.completions.create(model="switchboard", messages=_user(example["prompt"]))
        assert reply.choices[0].message.content == text == example["response"]
        assert reply.choices[0].finish_reason == "stop"
        trace = reply.switchboard["routing"]
        assert [r["selected"] for r in trace] == [ev.selected for ev in routing]
        assert max(trace[0]["selected"], key=trace[0]["selected"].get) == task
        assert set(trace[0]["probs"]) == {*served[2].adapters, BASE}  # the demo's router has a base-model class
        assert reply.usage.prompt_tokens == reply.switchboard["stats"]["prompt_tokens"] > 5
        assert reply.usage.completion_tokens == reply.switchboard["stats"]["tokens"] >= 1
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_chat_equals_the_whole_reply_and_ends_with_the_trace(served):
    _, client, _, _ = served
    example = _held_out("number_words")[0]
    whole = client.chat.completions.create(model="switchboard", messages=_user(example["prompt"]))
    chunks = list(client.chat.completions.create(model="switchboard", messages=_user(example["prompt"]), stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content == example["response"]
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # streamed, not one piece
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert final.choices[0].finish_reason == "stop"
    assert [r["selected"] for r in final.switchboard["routing"]] == \
        [r["selected"] for r in whole.switchboard["routing"]]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_endpoint_continues_a_raw_prompt(served):
    _, client, engine, _ = served
    example = _held_out("sort")[0]
    raw = engine.tokenizer.apply_chat_template(_user(example["prompt"]), add_generation_prompt=True, tokenize=False)
    reply = client.completions.create(model="sort", prompt=raw)
    assert reply.choices[0].text == example["response"]
    assert reply.switchboard["routing"][0]["selected"] == {"sort": 1.0}
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="sort", prompt=raw, stream=True))
    assert streamed == example["response"]


def test_stop_strings_and_max_tokens(served):
    _, client, _, _ = served
    prompt = _held_out("dates")[0]["prompt"]        # -> "December 27, 1956"
    cut = client.chat.completions.create(model="switchboard", messages=_user(prompt), stop=[","])
    assert cut.choices[0].message.content == "December 27"
    assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="switchboard", messages=_user(prompt), stop="27", stream=True) if c.choices)
    assert streamed == "December "
    short = client.chat.completions.create(model="switchboard", messages=_user(prompt), max_tokens=3)
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 3
    assert "December 27, 1956".startswith(short.choices[0].message.content) and short.choices[0].message.content


def test_fixed_mix_through_the_extension_field(served):
    _, client, _, _ = served
    example = _held_out("reverse")[0]
    routed = client.chat.completions.create(model="switchboard", messages=_user(example["prompt"]))
    assert routed.choices[0].message.content == example["response"]
    fixed = client.chat.completions.create(model="switchboard", messages=_user(example["prompt"]),
                                           extra_body={"switchboard": {"mix": {"arithmetic": 1.0}}})
    assert all(r["selected"] == {"arithmetic": 1.0} for r in fixed.switchboard["routing"])
    text, _ = _reference(served, _user(example["prompt"]), mix={"arithmetic": 1.0})
    assert fixed.choices[0].message.content == text != example["response"]  # the mix, not the router, answered
    base = client.chat.completions.create(model="base", messages=_user(example["prompt"]))
    assert all(r["selected"] == {} for r in base.switchboard["routing"])
    assert base.choices[0].message.content == _reference(served, _user(example["prompt"]), mix={})[0]


def test_routing_options_steer_the_router(served):
    _, client, _, _ = served
    example = _held_out("units")[0]
    muted = client.chat.completions.create(model="switchboard", messages=_user(example["prompt"]),
                                           extra_body={"switchboard": {"muted": ["units"], "max_adapters": 1}})
    for r in muted.switchboard["routing"]:
        assert "units" not in r["selected"] and len(r["selected"]) == 1
    pinned = client.chat.completions.create(model="switchboard", messages=_user(example["prompt"]),
                                            extra_body={"switchboard": {"pinned": ["dates"], "top_p": 0.5}})
    assert all("dates" in r["selected"] for r in pinned.switchboard["routing"])


def _error(call, **kw):
    with pytest.raises(openai.APIStatusError) as info:
        call(**kw)
    return info.value.status_code, info.value.body


@pytest.mark.parametrize("changes, param", [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"n": 2}, "n"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"extra_body": {"switchboard": {"top_p": 2}}}, "switchboard.top_p"),
    ({"extra_body": {"switchboard": {"mix": {"nope": 1}}}}, "switchboard.mix"),
    ({"extra_body": {"switchboard": {"mix": {"sort": 1}, "top_p": 0.5}}}, "switchboard.top_p"),
    ({"extra_body": {"switchboard": {"pinned": ["nope"]}}}, "switchboard.pinned"),
    ({"extra_body": {"colour": "red"}}, "colour"),
    ({"max_tokens": 2000}, "messages"),
    ({"messages": [{"role": "user", "content": "x" * 1500}]}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
])
def test_bad_parameters_are_400_naming_the_field(served, changes, param):
    _, client, _, _ = served
    kw = {"model": "switchboard", "messages": _user("What is 8 plus 9?"), **changes}
    status, body = _error(client.chat.completions.create, **kw)
    assert status == 400 and body["param"] == param and body["type"] == "invalid_request_error", body
    assert body["message"]


def test_context_errors_say_how_much_fits(served):
    _, client, engine, _ = served
    status, body = _error(client.chat.completions.create, model="base", messages=_user("hi"), max_tokens=2000)
    assert status == 400 and body["code"] == "context_length_exceeded"
    assert str(engine.context_len) in body["message"] and "2000" in body["message"]


def test_unknown_model_is_404_and_a_missing_key_401(served):
    server, client, _, _ = served
    status, body = _error(client.chat.completions.create, model="gpt-4", messages=_user("hi"))
    assert status == 404 and body["code"] == "model_not_found" and "reverse" in body["message"]
    assert _error(client.models.retrieve, model="gpt-4")[0] == 404
    stranger = openai.OpenAI(base_url=f"{server.address}/v1", api_key="wrong", max_retries=0)
    status, body = _error(stranger.models.list)
    assert status == 401 and body["code"] == "invalid_api_key"
    assert _error(stranger.chat.completions.create, model="base", messages=_user("hi"))[0] == 401
    with pytest.raises(urllib.error.HTTPError) as info:  # no key at all (the openai client insists on one)
        urllib.request.urlopen(f"{server.address}/v1/models", timeout=30)
    assert info.value.code == 401 and json.loads(info.value.read())["error"]["code"] == "invalid_api_key"


def test_503_while_the_model_loads(served):
    server, client, engine, _ = served
    server.set_engine(None)
    try:
        status, body = _error(client.chat.completions.create, model="switchboard", messages=_user("hi"))
        assert status == 503 and body["code"] == "model_loading"
        assert _error(client.models.list)[0] == 503
    finally:
        server.set_engine(engine)
    assert client.models.list().data


def test_request_bodies_are_size_limited(served):
    server = served[0]
    host, port = server.address.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/v1/chat/completions")  # a body over the limit is refused before it is read
    for name, value in {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json",
                        "Content-Length": str(server.max_body_bytes + 1)}.items():
        conn.putheader(name, value)
    conn.endheaders()
    reply = conn.getresponse()
    assert reply.status == 413 and json.loads(reply.read())["error"]["code"] == "request_too_large"
    conn.close()


def test_concurrent_streams_with_different_adapters_share_one_batch(served):
    server, client, _, _ = served
    jobs = {"arithmetic": _held_out("arithmetic", 2)[1], "translate": _held_out("translate")[0]}
    results = {}

    def stream(model, prompt):
        chunks = list(client.chat.completions.create(model=model, messages=_user(prompt), stream=True))
        results[model] = ("".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                          [c for c in chunks if c.choices and c.choices[0].finish_reason][0].switchboard)

    for t in _in_one_batch(server, *(lambda m=m, j=j: stream(m, j["prompt"]) for m, j in jobs.items())):
        t.join(timeout=60)
    for model, job in jobs.items():
        text, trace = results[model]
        assert text == job["response"], model
        assert trace["stats"]["batch_rows"] == 2
        assert all(r["selected"] == {model: 1.0} for r in trace["routing"])


def test_a_client_that_leaves_mid_stream_cancels_its_row_only(served):
    server, client, _, log = served
    kw = dict(messages=_user("Tell me about your day."), max_tokens=60, extra_body={"ignore_eos": True},
              stream=True)
    stayed = {}

    def stay():
        stayed["chunks"] = list(client.chat.completions.create(model="base", **kw))

    leaving = []
    staying, opened = _in_one_batch(server, stay,
                                    lambda: leaving.append(client.chat.completions.create(model="dates", **kw)))
    opened.join(timeout=60)
    stream = leaving[0]
    first = [next(stream) for _ in range(3)]
    assert first[2].choices[0].delta.content
    stream.close()
    staying.join(timeout=120)
    assert not staying.is_alive(), "the row that stayed never finished"
    final = [c for c in stayed["chunks"] if c.choices and c.choices[0].finish_reason][0]
    assert final.choices[0].finish_reason == "length" and final.switchboard["stats"]["tokens"] == 60
    assert final.switchboard["stats"]["batch_rows"] == 2
    _eventually(lambda: any(r.info["model"] == "dates" and state != "running" for state, r in log))
    left = [r for state, r in log if state == "cancelled" and r.info["model"] == "dates"]
    assert len(left) == 1 and left[0].stats["stop_reason"] == "cancel" and left[0].stats["tokens"] < 60


def test_concurrent_requests_with_other_settings_wait_for_the_next_batch(served):
    server, client, _, _ = served
    replies = {}

    def ask(name, **kw):
        replies[name] = client.chat.completions.create(model="base", messages=_user("hi"), **kw)

    for t in _in_one_batch(server, lambda: ask("a", max_tokens=5), lambda: ask("b", max_tokens=6)):
        t.join(timeout=60)
    assert replies["a"].switchboard["stats"]["batch_rows"] == replies["b"].switchboard["stats"]["batch_rows"] == 1


@pytest.mark.parametrize("open_connections, window_s, waits", [(1, 30.0, False), (2, 0.3, True)])
def test_a_lone_client_starts_at_once_and_others_wait_for_the_window(open_connections, window_s, waits):
    from app.server.scheduler import Scheduler, ServedRequest
    from engine.generation import GenerationSettings

    class Engine:  # answers at once: what is timed is the wait before the batch starts
        def generate_rows(self, conversations, settings, mix=None):
            started.append(time.monotonic())
            yield DoneEvent(row=0, stats={"tokens": 0})

    started, done = [], threading.Event()
    scheduler = Scheduler(lambda job: threading.Thread(target=job).start(), window_s=window_s,
                          connections=lambda: open_connections)
    scheduler.set_engine(Engine())
    request = ServedRequest([{"role": "user", "content": "hi"}], GenerationSettings(), None,
                            lambda kind, _payload: kind == "done" and done.set())
    scheduler.arrive()
    scheduler.submit(request)
    assert done.wait(timeout=10)
    waited = started[0] - request.submitted
    assert waited >= window_s if waits else waited < 5  # the lone request did not wait for its 30 s window


def test_engine_cancel_of_one_row_leaves_the_others_and_the_next_call(served):
    server, _, engine, _ = served

    def run(cancel_row):
        stats = {}
        for ev in engine.generate_rows([_user("hi"), _user("hello")], mix=[{}, {}], max_new_tokens=20,
                                       ignore_eos=True):
            if isinstance(ev, TokenEvent) and ev.row == cancel_row:
                engine.cancel(row=cancel_row)
            elif isinstance(ev, DoneEvent):
                stats[ev.row] = ev.stats
        return stats
    stats = server.engine_thread.call(lambda: run(0)).result()
    assert stats[0]["stop_reason"] == "cancel" and stats[0]["tokens"] < 20
    assert stats[1]["stop_reason"] == "length" and stats[1]["tokens"] == 20
    stats = server.engine_thread.call(lambda: run(None)).result()  # the cancelled row is forgotten
    assert [s["stop_reason"] for s in stats.values()] == ["length", "length"]


def test_the_apps_engine_worker_hosts_the_server():
    """The app's way: batches are jobs on its EngineWorker's queue, the engine handed over by a worker job."""
    from app.worker import EngineWorker

    worker, states = EngineWorker(on_event=lambda event: None), []
    worker.start()
    server = LocalServer(port=0, run_on_engine=lambda job: worker.submit("serve", lambda engine: job()),
                         listener=lambda state, r: states.append(state))
    assert server.engine_thread is None
    server.start()
    try:
        client = openai.OpenAI(base_url=f"{server.address}/v1", api_key="none", max_retries=0, timeout=60)
        assert _error(client.models.list)[0] == 503
        worker.load_model(None).result()
        worker.submit("serve", server.set_engine).result()
        example = _held_out("units")[0]
        reply = client.chat.completions.create(model="units", messages=_user(example["prompt"]))
        assert reply.choices[0].message.content == example["response"]
        _eventually(lambda: len(states) == 2)  # the listener hears "done" just after the client has its reply
        assert states == ["running", "done"]
        client.close()
    finally:
        server.stop()
        worker.stop()


def test_requests_a_host_refuses_to_run_get_503(served):
    """A host may refuse a batch (the app's worker while no model is loaded): its requests hear so."""
    from concurrent.futures import Future

    _, _, engine, _ = served

    def refuse(job):
        future = Future()
        future.set_exception(RuntimeError("no model is loaded"))
        return future
    server = LocalServer(port=0, run_on_engine=refuse)
    server.start()
    server.set_engine(engine)
    try:
        client = openai.OpenAI(base_url=f"{server.address}/v1", api_key="none", max_retries=0, timeout=60)
        for _ in range(2):  # and the next request is not stuck behind the refused one
            status, body = _error(client.chat.completions.create, model="base", messages=_user("hi"))
            assert status == 503 and body["code"] == "model_loading"
        client.close()
    finally:
        server.stop()


def test_serve_command_serves_the_demo_logs_each_request_and_stops_on_ctrl_c():
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", "0"], stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stderr.readline()
        address = first.split("serving ")[1].split("/v1")[0]
        assert address.startswith("http://127.0.0.1:")
        assert "models: switchboard, base, arithmetic" in proc.stderr.readline()
        client = openai.OpenAI(base_url=f"{address}/v1", api_key="none", max_retries=0, timeout=60)
        assert client.chat.completions.create(model="base", messages=_user("hi"), max_tokens=2).usage
        client.close()
        assert "/v1/chat/completions base from 127.0.0.1" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_serve_command_refuses_an_open_address_without_a_key(capsys):
    from app.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "api-key" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_concurrent_clients_answer_as_one_at_a_time():
    """On CUDA (decode graphs, gathered batch rows): 8 concurrent clients get the replies Engine.generate gives."""
    import torch
    from concurrent.futures import ThreadPoolExecutor

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    server = LocalServer(port=0)
    server.start()
    try:
        engine = server.engine_thread.call(lambda: open_engine(None, device="cuda", dtype="float32").engine).result()
        server.set_engine(engine)
        examples = [ex for task in ("arithmetic", "dates", "reverse", "units") for ex in _held_out(task, 4)]
        alone = [server.engine_thread.call(lambda ex=ex: "".join(
            e.text for e in engine.generate(_user(ex["prompt"])) if isinstance(e, TokenEvent))).result()
            for ex in examples]
        client = openai.OpenAI(base_url=f"{server.address}/v1", api_key="none", max_retries=0, timeout=120)
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda ex: client.chat.completions.create(
                model="switchboard", messages=_user(ex["prompt"])), examples))
        assert [r.choices[0].message.content for r in replies] == alone
        assert max(r.switchboard["stats"]["batch_rows"] for r in replies) > 1
        client.close()
    finally:
        server.stop()


def test_a_follow_up_is_prefilled_from_its_own_tokens(served):
    """The engine may keep a chat's KV cache across turns; the server's requests never reuse another's."""
    _, client, _, _ = served
    first = _held_out("arithmetic")[0]
    reply = client.chat.completions.create(model="switchboard", messages=_user(first["prompt"]))
    follow_up = [*_user(first["prompt"]), {"role": "assistant", "content": reply.choices[0].message.content},
                 *_user(_held_out("dates")[0]["prompt"])]
    again = client.chat.completions.create(model="switchboard", messages=follow_up)
    assert again.switchboard["stats"]["cached_tokens"] == 0
    assert again.choices[0].message.content == _reference(served, follow_up, reuse_cache=False)[0]
