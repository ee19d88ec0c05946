"""The HTTP side of the local server: OpenAI's routes on Starlette, each request handed to the Scheduler.

Routes: GET /v1/models (and /v1/models/{id}), POST /v1/chat/completions, POST /v1/completions; streamed
replies are server-sent events ending in `data: [DONE]`. Every error has OpenAI's shape. Besides OpenAI's
fields a reply carries `switchboard`: the routing of every sentence and the engine's statistics.
"""
import asyncio
import hmac
import json
import threading
import time
import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.chat import render
from engine.errors import SwitchboardError

from .scheduler import Loading, ReplyFailed, Scheduler, ServedRequest
from .schema import RESERVED, ApiError, ChatBody, CompletionBody, parse

FINISH_REASON = {"eos": "stop", "stop": "stop", "length": "length", "cancel": "abort"}


def build_app(scheduler: Scheduler, *, api_key: str | None, max_body_bytes: int) -> Starlette:
    created = int(time.time())
    mailboxes: dict = {}  # event loop -> its Mailbox (one loop, uvicorn's)

    def authorize(request: Request):
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "this server needs its API key: send the header 'Authorization: Bearer KEY'",
                           code="invalid_api_key")

    def ready_engine():
        engine = scheduler.engine
        if engine is None:
            raise api_error(Loading("the model is loading: try again in a moment"))
        return engine

    def card(name: str) -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "switchboard",
                **({} if name in RESERVED else {"parent": "base"})}

    def model_names() -> list[str]:
        return [*RESERVED, *(a for a in ready_engine().adapters if a not in RESERVED)]

    async def models(request: Request):
        authorize(request)
        return JSONResponse({"object": "list", "data": [card(n) for n in model_names()]})

    async def model(request: Request):
        authorize(request)
        name = request.path_params["name"]
        if name not in model_names():
            raise ApiError(404, f"the model {name!r} does not exist", param="model", code="model_not_found")
        return JSONResponse(card(name))

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        too_big = ApiError(413, f"the request body is over {max_body_bytes} bytes", code="request_too_large")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def complete(request: Request, body_type):
        authorize(request)
        chat = body_type is ChatBody
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue = asyncio.Queue()
        scheduler.arrive()
        try:
            body = parse(body_type, await read_body(request))
            engine = ready_engine()
            conversation = body.conversation()
            settings = body.settings()
            mix = body.mix(engine.adapters)
            prompt_tokens = check_context(engine, conversation, settings, "messages" if chat else "prompt")
        except BaseException:
            scheduler.depart()
            raise
        wanted = ("routing", "text", "done", "error") if body.stream else ("done", "error")
        mailbox = mailboxes.get(loop) or mailboxes.setdefault(loop, Mailbox(loop))

        def deliver(kind, payload):  # engine thread -> this request's event loop
            if kind in wanted:
                mailbox.post(replies, (kind, payload))
        served = ServedRequest(conversation, settings, mix, deliver, info={
            "endpoint": request.url.path, "model": body.model, "stream": body.stream, "prompt_tokens": prompt_tokens,
            "client": f"{request.client.host}:{request.client.port}" if request.client else None})
        # after the event loop's other ready requests (clients that asked at the same moment) have arrived too
        loop.call_soon(scheduler.submit, served)
        first = await unless_gone(request, replies.get())
        if first is None:  # the client left before its batch started
            scheduler.cancel(served)
            return Response(status_code=204)
        if first[0] == "error":
            raise api_error(first[1])
        reply = Reply(served, body, chat)
        if not body.stream:
            return JSONResponse(reply.whole())
        return StreamingResponse(stream(served, reply, first, replies), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def stream(served: ServedRequest, reply: "Reply", first, replies: asyncio.Queue):
        finished = False
        try:
            if reply.chat:
                yield sse(reply.chunk({"role": "assistant", "content": ""}))
            item = first
            while True:
                kind, payload = item
                if kind == "text":
                    parts, item = [payload], None
                    while item is None and not replies.empty():  # what has already arrived goes as one chunk
                        item = replies.get_nowait()
                        if item[0] == "text":
                            parts.append(item[1])
                            item = None
                    yield sse(reply.chunk({"content": "".join(parts)} if reply.chat else "".join(parts)))
                    if item is not None:
                        continue
                elif kind == "done":
                    finished = True
                    yield "".join(sse(c) for c in reply.last_chunks()) + "data: [DONE]\n\n"
                    return
                elif kind == "error":
                    finished = True
                    yield sse(api_error(payload).body()) + "data: [DONE]\n\n"
                    return
                item = await replies.get()
        finally:
            if not finished:  # the client disconnected mid-stream
                scheduler.cancel(served)

    async def chat_completions(request: Request):
        return await complete(request, ChatBody)

    async def completions(request: Request):
        return await complete(request, CompletionBody)

    async def on_api_error(_request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    async def on_http_error(_request, e: HTTPException):
        return JSONResponse(ApiError(e.status_code, e.detail, code="not_found" if e.status_code == 404 else None)
                            .body(), status_code=e.status_code)

    async def on_bug(_request, e: Exception):  # Starlette logs the traceback
        error = api_error(e)
        return JSONResponse(error.body(), status_code=error.status)

    return Starlette(routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{name:path}", model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ], exception_handlers={ApiError: on_api_error, HTTPException: on_http_error, Exception: on_bug})


def check_context(engine, conversation, settings, param: str) -> int:
    """-> the prompt's token count; a prompt and max_tokens that do not fit the model's context are a 400."""
    try:
        prompt = len(render(engine.tokenizer, conversation))
    except SwitchboardError as e:  # the model's chat template refused the conversation
        raise ApiError(400, str(e), param=param) from None
    need = prompt + settings.max_new_tokens
    if need > engine.context_len:
        raise ApiError(400, f"this request needs {prompt} prompt tokens + max_tokens {settings.max_new_tokens} = "
                            f"{need} tokens, but the model's context holds {engine.context_len}: shorten the "
                            "prompt or lower max_tokens", param=param, code="context_length_exceeded")
    return prompt


class Reply:
    """OpenAI's response objects for one served request: the whole reply, or its stream's chunks."""

    def __init__(self, served: ServedRequest, body, chat: bool):
        self.served, self.model, self.chat = served, body.model, chat
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _head(self, stream: bool) -> dict:
        kind = ("chat.completion.chunk" if stream else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _choice(self, content, finish_reason, stream: bool) -> dict:
        if not self.chat:
            return {"index": 0, "text": content, "finish_reason": finish_reason, "logprobs": None}
        key = "delta" if stream else "message"
        return {"index": 0, key: content, "finish_reason": finish_reason, "logprobs": None}

    def chunk(self, content) -> dict:
        return {**self._head(True), "choices": [self._choice(content, None, True)]}

    def _finish_reason(self) -> str:
        reason = self.served.stats["stop_reason"]
        return FINISH_REASON.get(reason, reason)

    def _usage(self) -> dict:
        prompt, completion = self.served.stats["prompt_tokens"], self.served.stats["tokens"]
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _trace(self) -> dict:
        routing = [{"sentence": ev.sentence, "selected": ev.selected, "probs": ev.probs, "latency_ms": ev.latency_ms}
                   for ev in self.served.routing]
        return {"routing": routing, "stats": self.served.stats}

    def whole(self) -> dict:
        text = "".join(self.served.text)
        content = {"role": "assistant", "content": text} if self.chat else text
        return {**self._head(False), "choices": [self._choice(content, self._finish_reason(), False)],
                "usage": self._usage(), "switchboard": self._trace()}

    def last_chunks(self) -> list[dict]:
        """The chunk with the finish reason and the routing trace, then (if asked for) the usage chunk."""
        last = {**self._head(True), "choices": [self._choice({} if self.chat else "", self._finish_reason(), True)],
                "switchboard": self._trace()}
        return [last, {**self._head(True), "choices": [], "usage": self._usage()}] if self.include_usage else [last]


class Mailbox:
    """Engine thread -> event loop. What is posted while a delivery is pending goes with it: one wake-up of the
    loop per burst (a decode step's tokens for every row) instead of one system call per token and row."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop, self._lock = loop, threading.Lock()
        self._items: list = []

    def post(self, queue: asyncio.Queue, item):
        with self._lock:
            self._items.append((queue, item))
            if len(self._items) > 1:
                return
        self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self):
        with self._lock:
            items, self._items = self._items, []
        for queue, item in items:
            queue.put_nowait(item)


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def unless_gone(request: Request, awaitable):
    """The awaitable's result, or None if the client disconnects first."""
    async def gone():
        while (await request.receive())["type"] != "http.disconnect":
            pass
    waiter, watcher = asyncio.ensure_future(awaitable), asyncio.ensure_future(gone())
    await asyncio.wait({waiter, watcher}, return_when=asyncio.FIRST_COMPLETED)
    watcher.cancel()
    if waiter.done():
        return waiter.result()
    waiter.cancel()
    return None


def api_error(e: Exception) -> ApiError:
    if isinstance(e, ApiError):
        return e
    if isinstance(e, Loading):
        return ApiError(503, str(e), kind="server_error", code="model_loading")
    if isinstance(e, ReplyFailed):
        return ApiError(503, str(e), kind="server_error", code="out_of_memory")
    if isinstance(e, SwitchboardError):
        return ApiError(400, str(e))
    return ApiError(500, f"internal error: {type(e).__name__}: {e}", kind="server_error")
