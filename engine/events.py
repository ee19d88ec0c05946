"""Events that Engine.generate yields. Plain data: the UI thread receives them as signal payloads."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RoutingEvent:
    sentence: int                 # index of the sentence about to be generated (0 = first)
    probs: dict[str, float]       # router probability of every adapter in bank order ({} without a router)
    selected: dict[str, float]    # the mix in force for this sentence: {adapter: weight}, weights sum to 1
    latency_ms: float = 0.0       # router time (featurize + MLP + top-p)
    row: int = 0                  # batch row (always 0 for a chat)


@dataclass(frozen=True)
class TokenEvent:
    text: str                     # newly decoded text (may be empty for partial UTF-8)
    sentence_end: bool = False    # True when this text ends a sentence
    row: int = 0


@dataclass(frozen=True)
class DoneEvent:
    stats: dict = field(default_factory=dict)  # tokens, tokens_per_s, ttft_ms, stop_reason, decode_ms_per_token, ...
    row: int = 0
