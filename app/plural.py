"""Counts in words: "1 token", "2 tokens", "0 adapters" (every count the app and the commands print)."""


def noun(n: int, one: str, many: str = "") -> str:
    """The word for n of them; `many` for an irregular plural: noun(2, "entry", "entries") -> "entries"."""
    return one if n == 1 else many or one + "s"


def plural(n: int, one: str, many: str = "") -> str:
    """plural(1, "token") -> "1 token", plural(0, "token") -> "0 tokens"."""
    return f"{n} {noun(n, one, many)}"
