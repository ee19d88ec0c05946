"""What the context meter says: the tokens a conversation's prompt takes against the model's context, and a
warning before the engine has to leave its oldest turns out (it keeps the system prompt and the newest turns
that fit in the context less the reply's room, engine/chat.py's build_prompt)."""
from dataclasses import dataclass

NEAR = 0.8  # of the prompt's room: warn from here on


@dataclass(frozen=True)
class Usage:
    text: str         # "1,234 / 4,096 tokens"
    fraction: float   # of the context, for the bar
    warning: str      # "" when there is room


def usage(used: int, context_len: int, max_new_tokens: int) -> Usage:
    """`used`: the conversation's prompt tokens now (before the next message)."""
    room = max(context_len - max_new_tokens, 0)  # what a prompt may take, the reply's room kept free
    warning = ""
    if used >= room:
        warning = ("Context full: the next reply leaves out the oldest messages (the system prompt is kept). "
                   "Start a new conversation, or lower max new tokens.")
    elif used >= NEAR * room:
        warning = (f"Context nearly full: {room - used:,} tokens left before the oldest messages are left out "
                   "of the prompt.")
    return Usage(f"{used:,} / {context_len:,} tokens", min(used / context_len, 1.0) if context_len else 0.0,
                 warning)
