"""The OpenAI request bodies the server accepts, and how each of their fields maps onto GenerationSettings.

Fields left out take the app's own defaults (greedy decoding, 256 new tokens: what `switchboard chat` does).
Fields of OpenAI's API that this server cannot honour are refused by name when they ask for something
(a non-zero penalty, tools, log-probabilities), and accepted at their neutral values, which clients send.
"""
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import SwitchboardError
from engine.generation import GenerationSettings

Number = Annotated[float, Field(allow_inf_nan=False)]

# request field -> GenerationSettings field, for the fields whose names differ
_SETTING_OF = {"max_tokens": "max_new_tokens", "top_p": "sample_top_p", "switchboard.top_p": "top_p",
               "switchboard.max_adapters": "max_adapters", "switchboard.pinned": "pinned",
               "switchboard.muted": "muted"}
_REQUEST_NAME = {v: k for k, v in _SETTING_OF.items()}
RESERVED = ("switchboard", "base")   # model names that are not adapters
_UNION_TAGS = {"str", "list[str]", "list[_Part]"}   # pydantic names a union's member in an error's location


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Routing(_Strict):
    """The `switchboard` extension field: a fixed mix, or how the router picks each sentence's adapters."""
    mix: dict[str, Number] | None = None
    top_p: Number | None = None
    max_adapters: int | None = None
    pinned: list[str] | None = None
    muted: list[str] | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class _Common(_Strict):
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    user: str | None = None
    # vLLM's extensions, which tools written for local servers send
    top_k: int | None = None
    repetition_penalty: Number | None = None
    ignore_eos: bool = False
    switchboard: Routing | None = None
    # accepted at their neutral values only
    frequency_penalty: Number = 0.0
    presence_penalty: Number = 0.0
    logit_bias: dict[str, Number] | None = None
    logprobs: bool | int | None = None

    def _refuse_unsupported(self, extra: dict):
        asks = {"frequency_penalty": self.frequency_penalty, "presence_penalty": self.presence_penalty,
                "logit_bias": self.logit_bias, "logprobs": self.logprobs, **extra}
        for name, value in asks.items():
            if value:
                raise ApiError(400, f"{name} is not supported by this server", param=name, code="unsupported")
        if self.n != 1:
            raise ApiError(400, f"n must be 1 (one reply per request), got {self.n}", param="n")

    def limit(self) -> int | None:
        return self.max_tokens

    def settings(self) -> GenerationSettings:
        """The request as GenerationSettings; a bad value is refused naming the request's own field."""
        values = {"max_tokens": self.limit(), "temperature": self.temperature, "top_p": self.top_p,
                  "seed": self.seed, "top_k": self.top_k, "repetition_penalty": self.repetition_penalty,
                  "stop": [self.stop] if isinstance(self.stop, str) else self.stop,
                  "ignore_eos": self.ignore_eos or None}
        if self.switchboard is not None:
            values.update({f"switchboard.{k}": v for k, v in self.switchboard.model_dump().items() if k != "mix"})
        changes = {_SETTING_OF.get(k, k): v for k, v in values.items() if v is not None}
        # each request is answered from its own tokens: a cache kept from another client's request would hold KV
        # computed under that request's mixes, and the same request could then get another reply
        changes["reuse_cache"] = False
        try:
            return GenerationSettings(**changes)
        except SwitchboardError as e:
            field, _, rule = str(e).partition(" ")
            name = _REQUEST_NAME.get(field, field)
            raise ApiError(400, f"{name} {rule}", param=name) from None

    def mix(self, adapters: list[str]) -> dict | None:
        """The fixed mix this request asks for ({} = the base model), or None when the router picks it.
        The model is `switchboard` (routed, or the extension's mix), `base`, or one adapter alone."""
        sb = self.switchboard or Routing()
        routing_fields = [k for k in ("top_p", "max_adapters", "pinned", "muted") if getattr(sb, k) is not None]
        for field in ("mix", "pinned", "muted"):
            unknown = [a for a in (getattr(sb, field) or ()) if a not in adapters]
            if unknown:
                raise ApiError(400, f"switchboard.{field} names {unknown[0]!r}, which is not an adapter of this "
                                    f"server (adapters: {', '.join(adapters) or 'none'})", param=f"switchboard.{field}")
        if self.model == "switchboard":
            if sb.mix is not None and not sb.mix:
                raise ApiError(400, "switchboard.mix is empty: name at least one adapter, or use model 'base'",
                               param="switchboard.mix")
            fixed = sb.mix
        elif self.model == "base" or self.model in adapters:
            if sb.mix is not None:
                raise ApiError(400, f"switchboard.mix needs model 'switchboard' (model {self.model!r} fixes the "
                                    "adapters already)", param="switchboard.mix")
            fixed = {} if self.model == "base" else {self.model: 1.0}
        else:
            raise ApiError(404, f"the model {self.model!r} does not exist: the models are "
                                f"{', '.join([*RESERVED, *adapters])}", param="model", code="model_not_found")
        if fixed is not None and routing_fields:
            raise ApiError(400, f"switchboard.{routing_fields[0]} steers the router, which a fixed mix or model "
                                f"{self.model!r} does not use", param=f"switchboard.{routing_fields[0]}")
        return fixed


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")  # an image part has no text: refused by name in conversation()
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, refusal, ...: nothing the prompt uses
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_Part]


class ChatBody(_Common):
    messages: list[_Message] = Field(min_length=1)
    max_completion_tokens: int | None = None
    tools: list | None = None
    tool_choice: str | dict | None = None
    response_format: dict | None = None
    top_logprobs: int | None = None

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def conversation(self) -> list[dict]:
        self._refuse_unsupported({"tools": self.tools, "tool_choice": self.tool_choice not in (None, "none") or None,
                                  "response_format": (self.response_format or {}).get("type", "text") != "text",
                                  "top_logprobs": self.top_logprobs})
        for i, m in enumerate(self.messages):
            for part in m.content if isinstance(m.content, list) else ():
                if part.type != "text" or part.text is None:
                    raise ApiError(400, f"messages[{i}] has a {part.type!r} part: this server reads text only",
                                   param=f"messages.{i}.content", code="unsupported")
        return [{"role": "system" if m.role == "developer" else m.role,
                 "content": m.content if isinstance(m.content, str) else "".join(p.text for p in m.content)}
                for m in self.messages]


class CompletionBody(_Common):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def conversation(self) -> str:
        self._refuse_unsupported({"echo": self.echo, "suffix": self.suffix, "best_of": (self.best_of or 1) != 1})
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ApiError(400, f"one prompt per request, got {len(self.prompt)}", param="prompt")
        return self.prompt[0]


def parse(body_type, raw: bytes):
    """-> a ChatBody or CompletionBody; a malformed body is a 400 naming its first bad field."""
    try:
        return body_type.model_validate_json(raw)
    except ValidationError as e:
        err = e.errors()[0]
        if err["type"] == "json_invalid":
            raise ApiError(400, f"the request body is not valid JSON: {err['msg']}") from None
        path = [str(p) for p in err["loc"] if p not in _UNION_TAGS]
        param = ".".join(path) or None
        if err["type"] == "extra_forbidden":
            raise ApiError(400, f"unrecognized request argument supplied: {param}", param=param) from None
        raise ApiError(400, f"{param}: {err['msg']}" if param else err["msg"], param=param) from None
