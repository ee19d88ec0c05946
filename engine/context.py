"""What the router reads before each sentence: the routing-context policy.

    turn      the latest user message and the reply so far (the default: a follow-up on another task is
              routed on its own words instead of being outvoted by the previous task's)
    sentence  the latest user message and the reply's last finished sentence
    decayed   the current turn at full weight, the earlier turns (and a system prompt) at EARLIER_WEIGHT
    history   the whole conversation and the reply so far, as one text (the router reads its last 256 words)

Compared on `switchboard eval --conversations` (docs/PERFORMANCE.md, "Routing in conversations").
A context is a list of parts [(text, weight)] in conversation order; the featurizer sums them at their weights
(engine/features.py).
"""
from .text import split_sentences

POLICIES = ("turn", "sentence", "decayed", "history")
EARLIER_WEIGHT = 0.3


def router_context(policy: str, messages: list[dict], reply: str) -> list[tuple[str, float]]:
    """messages: the conversation the reply answers; reply: the reply's text so far."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
    earlier = [m["content"] for m in messages[:last]]
    current = [m["content"] for m in messages[last:]]  # the user message and any assistant text after it
    if policy == "sentence":
        finished = [s for s in split_sentences(reply) if s.strip()]
        reply = finished[-1].strip() if finished else ""
    turn = "\n".join(current + [reply] if reply else current)
    if policy == "history":
        return [("\n".join(earlier + [turn]), 1.0)]
    if policy == "decayed" and earlier:
        return [("\n".join(earlier), EARLIER_WEIGHT), (turn, 1.0)]
    return [(turn, 1.0)]


def context_text(parts: list[tuple[str, float]]) -> str:
    """The text a context holds, as a RoutingEvent reports it."""
    return "\n".join(text for text, _ in parts)
