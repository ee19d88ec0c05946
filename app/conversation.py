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
        self._earlier_tokens = 0  # tokens of a continued reply before the part now generated

    @property
    def replying(self) -> bool:
        """The last turn is an assistant reply that has not finished (no stats yet)."""
        return bool(self.turns) and self.turns[-1].role == "assistant" and not self.turns[-1].stats

    def add_user(self, text: str) -> Turn:
        turn = Turn("user", [Sentence(text, closed=True)])
        self.turns.append(turn)
        return turn

    def start_assistant(self, settings: GenerationSettings) -> Turn:
        turn = Turn("assistant", settings=settings)
        self.turns.append(turn)
        self._earlier_tokens = 0
        return turn

    def resume_assistant(self, settings: GenerationSettings) -> Turn:
        """Go on with the last reply (cut off by max tokens or a Stop): its next sentences are appended to it."""
        turn = self.turns[-1]
        self._earlier_tokens = turn.stats.get("tokens", 0)
        turn.settings, turn.stats = settings, {}
        return turn

    def messages(self, system_prompt: str = "") -> list[dict]:
        """Engine input: the system prompt (if any) and the turns so far (taken before a new assistant turn
        starts; for a continued reply, with it)."""
        system = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
        return system + [{"role": t.role, "content": t.text} for t in self.turns]

    def truncate(self, n_turns: int):
        """Keep the first `n_turns` turns (an edited message or a regenerated reply drops what came after)."""
        del self.turns[n_turns:]

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
        self.turns[-1].stats = {**stats, "tokens": stats.get("tokens", 0) + self._earlier_tokens}

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
