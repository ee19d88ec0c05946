"""Events that Engine.generate yields. Plain data: the UI thread receives them as signal payloads."""
from dataclasses import dataclass, field

BASE = "base model"  # the router's choice of no adapter: a key of RoutingEvent.probs and .selected, never an adapter


@dataclass(frozen=True)
class RoutingEvent:
    """The routing of one sentence.

    The base model is one of the router's choices (a router trained with a base class, engine/router.py): then
    `probs` has a BASE entry after the adapters, and `selected` holds BASE with its share of the mix when top-p
    kept it. The engine fuses only the adapters' shares: {"units": 0.6, BASE: 0.4} writes 0.6 x the units delta,
    {BASE: 1.0} runs the base model alone. So a chart shows BASE as one more bar, a timeline as a "base model"
    row when BASE leads the mix, and `switchboard chat` prints "base model" in the mix. `selected` is {} when
    the base model runs without having been chosen (no router, or every adapter muted).
    """
    sentence: int                 # index of the sentence about to be generated (0 = first)
    probs: dict[str, float]       # router probability of every adapter in bank order, then BASE ({} without a router)
    selected: dict[str, float]    # the mix in force for this sentence: {adapter or BASE: weight}, weights sum to 1
    latency_ms: float = 0.0       # router time (featurize + MLP + top-p)
    row: int = 0                  # batch row (always 0 for a chat)
    context: str = ""             # the text routed on (engine/context.py: by default the current turn)


@dataclass(frozen=True)
class TokenEvent:
    text: str                     # newly decoded text (may be empty for partial UTF-8)
    sentence_end: bool = False    # True when this text ends a sentence
    row: int = 0


@dataclass(frozen=True)
class DoneEvent:
    stats: dict = field(default_factory=dict)  # tokens, tokens_per_s, ttft_ms, stop_reason, decode_ms_per_token, ...
    row: int = 0
