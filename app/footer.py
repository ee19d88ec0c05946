"""The line under a reply: its length and speed, why it stopped, and what the engine noted about it."""
from .plural import plural

STOPPED = {"cancel": "stopped", "length": "cut off at max new tokens", "stop": "ended at a stop string"}


def footer(stats: dict, text: str) -> str:
    """The footer of a reply: `stats` its DoneEvent's ({} while it is generated), `text` what it says."""
    if not stats:
        return "generating…"
    if stats.get("stop_reason") == "error":
        return f"Error: {stats['error']}"
    tokens, reason = stats.get("tokens", 0), stats.get("stop_reason")
    if text.strip():
        parts = [plural(tokens, "token")]
        if stats.get("tokens_per_s"):
            parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    elif tokens == 0:
        parts = ["Empty reply: the model ended its turn before writing anything"]
    else:
        parts = [f"Empty reply: {plural(tokens, 'token')}, none of them visible text"]
    if reason in STOPPED:
        parts.append(STOPPED[reason])
    if stats.get("dropped_turns"):
        parts.append(f"{plural(stats['dropped_turns'], 'earlier message')} left out of the prompt: the "
                     "conversation is longer than the model's context")
    return " · ".join(parts + stats.get("notes", []))
