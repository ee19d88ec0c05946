"""GenerationSettings: every knob of one reply, with its default written once.

The window, the CLI, the worker, the evaluation and the engine all pass this one frozen value; a bad value is
refused here, with a message that names the field, before any work starts.
"""
from dataclasses import dataclass, fields, replace

from .context import POLICIES
from .errors import SwitchboardError


@dataclass(frozen=True)
class GenerationSettings:
    # routing: which adapters each sentence is generated under
    top_p: float = 0.8                  # routing top-p: the kept adapters' router probability reaches this
    max_adapters: int | None = None     # at most this many adapters per sentence (None: no limit)
    pinned: tuple[str, ...] = ()        # always in the mix (unless muted)
    muted: tuple[str, ...] = ()         # never in the mix
    enabled: tuple[str, ...] | None = None  # only these may be chosen (None: every adapter)
    routing_context: str = "turn"       # what the router reads before a sentence: one of engine.context.POLICIES
    # sampling: which token comes next
    temperature: float = 0.0            # 0 = greedy
    top_k: int = 0                      # 0 = off
    sample_top_p: float = 1.0           # sampling (nucleus) top-p; 1 = off
    repetition_penalty: float = 1.0     # 1 = off
    seed: int | None = None
    # stopping
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    # the KV cache: a one-row chat prefills only what follows the part of its prompt the cache still holds
    reuse_cache: bool = True

    def __post_init__(self):
        for name in ("pinned", "muted", "stop"):  # lists from JSON or argparse become tuples (hashable, frozen)
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.enabled is not None:
            object.__setattr__(self, "enabled", tuple(self.enabled))
        checks = [
            (0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]"),
            (self.max_adapters is None or self.max_adapters >= 1, "max_adapters", "must be at least 1 (or None)"),
            (self.routing_context in POLICIES, "routing_context", f"must be one of {', '.join(POLICIES)}"),
            (self.temperature >= 0.0, "temperature", "must be 0 (greedy) or more"),
            (self.top_k >= 0, "top_k", "must be 0 (off) or more"),
            (0.0 < self.sample_top_p <= 1.0, "sample_top_p", "must be in (0, 1]"),
            (self.repetition_penalty > 0.0, "repetition_penalty", "must be more than 0 (1 = off)"),
            (self.max_new_tokens >= 1, "max_new_tokens", "must be at least 1"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise SwitchboardError(f"{name} {rule}, got {getattr(self, name)!r}")

    def with_(self, **changes) -> "GenerationSettings":
        """A copy with `changes`; an unknown name is refused (a typo must not be silently ignored)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SwitchboardError(f"unknown generation setting(s) {unknown}; known: {sorted(known)}")
        return replace(self, **changes)
