"""LibraryService: the library manager's work on the adapter library (app/library/) and the running engine.

The methods that take `engine` run on the engine thread (app/worker.py's library jobs call them). They change the
engine only when it mirrors the library (`matches`: its bank holds exactly the library's enabled adapters, in
order); otherwise (no model, the bundled demo's own adapters, an adapter refused at load) they change the disk
alone and the model picks the changes up when it is reopened. They report their steps as events: Progress for
the status bar, ImportStep and Epoch for the library window. Reads, colours and examples are small atomic file
writes: the window's thread calls `library` directly for those.
"""
import random
import re
from dataclasses import dataclass

from engine.errors import ModelError
from engine.generation import GenerationSettings

from .library import ImportResult, Library
from .worker import Progress

PROBE_PROMPTS = (  # generic openers: with one adapter active, its task shows in what the model says
    "Write one typical request a user might send you.",
    "Give a short example of the kind of task you handle.",
    "Start a conversation about what you do best.",
    "Ask me a question.",
)
PROBE_ROWS = 8              # samples per request, generated as one batch
PROBE_TOKENS = 48           # short texts: a sentence or two
PROBE_TEMPERATURE = 0.9
PROBE_CHARS = 300           # a sample is cut at the last sentence end before this


@dataclass(frozen=True)
class ImportStep:
    done: int
    total: int
    result: ImportResult    # the adapter just added or refused


@dataclass(frozen=True)
class Epoch:
    epoch: int
    epochs: int
    loss: float
    accuracy: float | None  # held-out accuracy (None: too few examples to hold any out)


@dataclass(frozen=True)
class Outcome:
    value: object           # the Library call's result
    loaded: bool            # the running engine was changed too (else only the disk)


class LibraryService:
    def __init__(self, root):
        self.library = Library(root)

    @property
    def root(self):
        return self.library.root

    def matches(self, engine) -> bool:
        """The engine mirrors the library: its bank is the library's enabled adapters, in order."""
        return engine is not None and engine.adapters == [a.name for a in self.library.list() if a.loadable]

    # ---- engine thread ----
    def import_paths(self, engine, paths: list[str], report, cancel) -> Outcome:
        """Import adapter folders and archives, reporting each adapter's result as soon as it is known."""
        engine = engine if self.matches(engine) else None

        def step(done, total, result):
            report(Progress(f"Importing adapters: {done} of {total}", done / total))
            report(ImportStep(done, total, result))

        results = self.library.import_paths(paths, engine=engine, progress=step, cancel=cancel)
        return Outcome(results, engine is not None)

    def rename(self, engine, old: str, new: str):
        self.library.rename(old, new, engine if self.matches(engine) else None)

    def set_enabled(self, engine, name: str, enabled: bool):
        self.library.set_enabled(name, enabled, engine if self.matches(engine) else None)

    def remove(self, engine, name: str):
        self.library.remove(name, engine if self.matches(engine) else None)

    def retrain(self, engine, full: bool, report, cancel) -> Outcome:
        """Retrain the router, reporting each epoch. -> Outcome(the router's report, or None when cancelled)."""
        engine = engine if self.matches(engine) else None

        def epoch(e, epochs, loss, acc):
            held = "" if acc is None else f", held-out accuracy {acc:.0%}"
            report(Progress(f"Retraining the router: epoch {e}/{epochs}, loss {loss:.3f}{held}", e / epochs))
            report(Epoch(e, epochs, loss, acc))

        return Outcome(self.library.retrain(engine, full=full, progress=epoch, cancel=cancel), engine is not None)

    def sample_probes(self, engine, name: str, report) -> list[str]:
        """PROBE_ROWS short texts sampled with only adapter `name` active (new ones on every call), one line each,
        without repeats: candidates for its router examples."""
        if not self.matches(engine) or name not in engine.adapters:
            raise ModelError(f"probe examples for '{name}' need a loaded model with this library's adapters "
                             "(open your model, and enable the adapter)")
        report(Progress(f"Sampling probe examples from {name}…"))
        conversations = [[{"role": "user", "content": PROBE_PROMPTS[i % len(PROBE_PROMPTS)]}]
                         for i in range(PROBE_ROWS)]
        settings = GenerationSettings(max_new_tokens=PROBE_TOKENS, temperature=PROBE_TEMPERATURE,
                                      seed=random.randrange(2**31))
        rows = engine.generate_batch(conversations, settings, mixes=[{name: 1.0}] * PROBE_ROWS)
        return list(dict.fromkeys(t for t in (_clean(r["text"]) for r in rows) if t))


def _clean(text: str) -> str:
    """One line, at most PROBE_CHARS, cut after a sentence end when there is one."""
    text = re.sub(r"\s+", " ", text.replace("\ufffd", "")).strip()  # U+FFFD: undecodable bytes
    if len(text) > PROBE_CHARS:
        cut = max(text.rfind(c, 0, PROBE_CHARS) for c in ".!?")
        text = text[:cut + 1] if cut > 0 else text[:PROBE_CHARS]
    return text
