"""The conversation and its routing trace, in plain Python: the chat pane, timeline, routing chart and export read
it. Sentences are numbered through the whole conversation (the timeline's bars, the ids the chat pane reports)."""
from dataclasses import dataclass, field

from engine.events import RoutingEvent
from engine.generation import GenerationSettings


@dataclass
class Sentence:
    text: str = ""
    probs: dict[str, float] = field(default_factory=dict)     # router probability per adapter ({} without router)
    selected: dict[str, float] = field(default_factory=dict)  # mix in force while this sentence was generated
    latency_ms: float = 0.0
    closed: bool = False                                      # its sentence-ending text has arrived

    @property
    def leader(self) -> str | None:
        """The adapter with the largest weight, or None for the base model."""
        return max(self.selected, key=self.selected.get) if self.selected else None


@dataclass
class Turn:
    role: str                                   # "user" | "assistant"
    sentences: list[Sentence] = field(default_factory=list)  # user turns: one sentence holding the whole text
    settings: GenerationSettings | None = None   # how an assistant turn was generated
    stats: dict = field(default_factory=dict)     # DoneEvent stats once finished

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.sentences)


class Conversation:
    def __init__(self):
        self.turns: list[Turn] = []

    def add_user(self, text: str) -> Turn:
        turn = Turn("user", [Sentence(text, closed=True)])
        self.turns.append(turn)
        return turn

    def start_assistant(self, settings: GenerationSettings) -> Turn:
        turn = Turn("assistant", settings=settings)
        self.turns.append(turn)
        return turn

    def messages(self) -> list[dict]:
        """Engine input: the turns so far (taken before the new assistant turn starts)."""
        return [{"role": t.role, "content": t.text} for t in self.turns]

    def on_routing(self, event: RoutingEvent) -> Sentence:
        """A routing event for the live assistant turn: the next sentence starts under this mix."""
        sentences = self.turns[-1].sentences
        # the engine routes before the first token and after each sentence end; an empty open sentence is reused
        if not sentences or sentences[-1].text or sentences[-1].closed:
            sentences.append(Sentence())
        s = sentences[-1]
        s.probs, s.selected, s.latency_ms = dict(event.probs), dict(event.selected), event.latency_ms
        return s

    def on_tokens(self, text: str, sentence_end: bool):
        sentences = self.turns[-1].sentences
        if not sentences or sentences[-1].closed:  # no routing event came for this sentence (no router)
            sentences.append(Sentence(selected=dict(sentences[-1].selected) if sentences else {}))
        sentences[-1].text += text
        sentences[-1].closed = sentence_end

    def finish(self, stats: dict):
        self.turns[-1].stats = dict(stats)

    def drop_last_reply(self) -> str | None:
        """Remove the last assistant turn (for regenerate); returns the user text it answered."""
        if self.turns and self.turns[-1].role == "assistant":
            self.turns.pop()
        return self.turns[-1].text if self.turns and self.turns[-1].role == "user" else None

    def routed_sentences(self) -> list[tuple[int, int, Sentence]]:
        """(turn index, sentence index, sentence) for every assistant sentence, in order: the timeline's bars."""
        return [(ti, si, s) for ti, t in enumerate(self.turns) if t.role == "assistant"
                for si, s in enumerate(t.sentences)]

    def first_sentence(self, turn_index: int) -> int:
        """The number of the first sentence of turn `turn_index` (an assistant turn)."""
        return sum(len(t.sentences) for t in self.turns[:turn_index] if t.role == "assistant")

    def where(self, sid: int) -> tuple[int, int, int]:
        """Sentence `sid` -> (turn index, reply number, sentence number in that reply), both numbers from 1."""
        ti, si, _ = self.routed_sentences()[sid]
        return ti, sum(1 for t in self.turns[:ti + 1] if t.role == "assistant"), si + 1

    def timeline(self) -> tuple[list[dict[str, float]], list[int]]:
        """-> (the mix of every sentence, the number of each reply's first sentence): the timeline's bars."""
        mixes, starts = [], []
        for t in self.turns:
            if t.role == "assistant":
                starts.append(len(mixes))
                mixes += [s.selected for s in t.sentences]
        return mixes, starts
