"""Saved conversations: one JSON file per conversation in the user data folder, each replaced atomically.

    <root>/<id>.json   {"format": "lora-switchboard-conversation", "version": 1,
                        "title": str, "created": ISO time, "updated": ISO time,
                        "system_prompt": str, "settings": {GenerationSettings field: value},
                        "turns": [{Turn field: value, "sentences": [{Sentence field: value}, ...]}, ...]}

<root> is app.paths.user_data_dir() / "conversations" unless given. The id is the file name: the creation time
and a random suffix, so names sort by age and never collide. Turns and sentences are app/conversation.py's
dataclasses written field by field, the routing trace of every sentence included (router probabilities, the
mix it was generated under, routing latency).

Crash safety: a save writes a temp file, fsyncs it and renames it over the old file (engine/atomic.py), so
after a SIGKILL or power cut the file holds the previous save or the new one, never a mix. A file that is not
a readable conversation of this format (damaged, hand-edited, from a newer version, or not ours) is skipped
with a message in `problems` and never deleted or rewritten.
"""
from __future__ import annotations  # `list` is also a method name below

import functools
import json
import secrets
import time
import types
import typing
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from engine.atomic import json_bytes, write_bytes
from engine.errors import SwitchboardError
from engine.generation import GenerationSettings

from .conversation import Conversation, Sentence, Turn
from .paths import user_data_dir

FORMAT, VERSION = "lora-switchboard-conversation", 1
UNTITLED = "New conversation"
TITLE_CHARS = 60                        # a title taken from the first message is cut to this
_STALE_TMP_S = 3600                     # a temp file this old is a save killed midway, not one in progress


class ConversationError(SwitchboardError):
    """A conversation file that cannot be read, or a request for one that does not exist."""


@dataclass
class Summary:
    """One line of the conversation list."""
    id: str
    title: str
    created: str
    updated: str
    snippet: str = ""                   # search: the matching text with a little context


@dataclass
class SavedConversation:
    id: str
    title: str
    created: str                        # ISO 8601, UTC
    updated: str
    system_prompt: str
    settings: GenerationSettings        # this conversation's sampling and routing settings
    conversation: Conversation


class ConversationStore:
    def __init__(self, root=None):
        self.root = Path(root).expanduser() if root is not None else user_data_dir() / "conversations"
        self.problems: list[str] = []   # files the last list() or search() skipped, each "path: reason"
        self._cache: dict[Path, tuple[tuple[int, int], SavedConversation]] = {}  # path -> ((mtime, size), read)

    # ---- reading ---------------------------------------------------------------------------------------
    def list(self) -> list[Summary]:
        """Every readable conversation, the most recently updated first."""
        return [_summary(c) for c in self._read_all()]

    def search(self, query: str) -> list[Summary]:
        """Conversations whose title or text holds every word of `query` (any case), newest first."""
        words = query.lower().split()
        found = []
        for c in self._read_all():
            texts = [c.title] + [t.text for t in c.conversation.turns]
            haystack = "\n".join(texts).lower()
            if all(w in haystack for w in words):
                found.append(_summary(c, _snippet(texts, words[0]) if words else ""))
        return found

    def load(self, conversation_id: str) -> SavedConversation:
        return _read(self._path(conversation_id))

    # ---- writing ---------------------------------------------------------------------------------------
    def new(self, system_prompt: str = "", settings: GenerationSettings | None = None,
            title: str = "") -> SavedConversation:
        """A new, empty conversation, written at once (so it can be listed and renamed before its first turn)."""
        now = datetime.now(timezone.utc)
        created = _iso(now)
        saved = SavedConversation(f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}", title.strip(), created,
                                  created, system_prompt, settings or GenerationSettings(), Conversation())
        self._write(saved)
        return saved

    def save(self, saved: SavedConversation):
        """Write `saved` (after a turn, an edit, a change of settings); sets its `updated` time. An untitled
        conversation takes its title from the first line of its first message."""
        if not saved.title:
            first = next((t.text for t in saved.conversation.turns if t.role == "user" and t.text.strip()), "")
            line = first.strip().splitlines()[0] if first.strip() else ""
            cut = line[:TITLE_CHARS - 1].rsplit(" ", 1)[0] if " " in line[:TITLE_CHARS - 1] else line[:TITLE_CHARS - 1]
            saved.title = line if len(line) <= TITLE_CHARS else cut.rstrip(" ,.;:") + "…"  # cut between words
        saved.updated = _iso(datetime.now(timezone.utc))
        self._write(saved)

    def rename(self, conversation_id: str, title: str) -> SavedConversation:
        if not title.strip():
            raise ConversationError("a conversation's title cannot be empty")
        saved = self.load(conversation_id)
        saved.title = title.strip()
        self._write(saved)  # renaming does not make it newer in the list
        return saved

    def delete(self, conversation_id: str):
        self._path(conversation_id).unlink()

    # ---- files -----------------------------------------------------------------------------------------
    def _path(self, conversation_id: str) -> Path:
        path = self.root / f"{conversation_id}.json"
        if Path(conversation_id).name != conversation_id or conversation_id.startswith(".") or not path.is_file():
            raise ConversationError(f"no saved conversation {conversation_id!r} in {self.root}")
        return path

    def _write(self, saved: SavedConversation):
        self.root.mkdir(parents=True, exist_ok=True)
        write_bytes(self.root / f"{saved.id}.json", json_bytes(_to_json(saved)))

    def _read_all(self) -> list[SavedConversation]:
        """Every readable conversation, newest first. A file unchanged since the last call (same modification
        time and size) is not parsed again: a search box calls this at every key."""
        self.problems = []
        cache, self._cache = self._cache, {}
        for path in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if path.name.startswith("."):
                _drop_stale_tmp(path)
                continue
            if path.suffix != ".json":
                continue
            try:
                stat = path.stat()
                key = (stat.st_mtime_ns, stat.st_size)
                self._cache[path] = cache[path] if cache.get(path, (None,))[0] == key else (key, _read(path))
            except FileNotFoundError:
                pass  # deleted since the listing
            except ConversationError as e:
                self.problems.append(f"{e}; the file is left as it is")
        return sorted((c for _, c in self._cache.values()), key=lambda c: (c.updated, c.id), reverse=True)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def _summary(c: SavedConversation, snippet: str = "") -> Summary:
    return Summary(c.id, c.title or UNTITLED, c.created, c.updated, snippet)


def _snippet(texts: list[str], word: str, context: int = 40) -> str:
    for text in texts:
        at = text.lower().find(word)
        if at >= 0:
            start, end = max(at - context, 0), min(at + len(word) + context, len(text))
            return ("…" if start else "") + " ".join(text[start:end].split()) + ("…" if end < len(text) else "")
    return ""


def _drop_stale_tmp(path: Path):
    """A hidden temp file left by a save that was killed (atomic writes name them .<file>.<pid>.<thread>.tmp)."""
    try:
        if path.suffix == ".tmp" and time.time() - path.stat().st_mtime > _STALE_TMP_S:
            path.unlink()
    except OSError:
        pass  # another process cleaned it, or cannot: harmless either way


# ---- JSON <-> dataclasses ----------------------------------------------------------------------------------

def _to_json(saved: SavedConversation) -> dict:
    return {"format": FORMAT, "version": VERSION, "title": saved.title, "created": saved.created,
            "updated": saved.updated, "system_prompt": saved.system_prompt, "settings": asdict(saved.settings),
            "turns": [asdict(t) for t in saved.conversation.turns]}


def _read(path: Path) -> SavedConversation:
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
        json.dumps(raw, ensure_ascii=False).encode("utf-8")  # a \ud800 escape reads as text that cannot be saved
    except (OSError, UnicodeError, json.JSONDecodeError) as e:
        raise ConversationError(f"{path}: not a readable conversation file ({e})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ConversationError(f"{path}: not a LoRA Switchboard conversation")
    if raw.get("version") != VERSION:
        raise ConversationError(f"{path}: conversation format version {raw.get('version')!r}; this app reads "
                                f"version {VERSION}")
    try:
        for key in ("title", "created", "updated", "system_prompt"):
            _check(raw.get(key), str, key)
        settings = _settings(raw.get("settings"), "settings")
        _check(raw.get("turns"), list, "turns")
        conversation = Conversation()
        conversation.turns = [_turn(t, i) for i, t in enumerate(raw["turns"])]
    except ConversationError as e:
        raise ConversationError(f"{path}: {e}") from None
    return SavedConversation(path.stem, raw["title"], raw["created"], raw["updated"], raw["system_prompt"],
                             settings, conversation)


def _turn(raw, i: int) -> Turn:
    _check(raw, dict, f"turns[{i}]")
    turn = _dataclass(Turn, {k: v for k, v in raw.items() if k != "sentences"}, f"turns[{i}]")
    _check(raw.get("sentences", []), list, f"turns[{i}].sentences")
    turn.sentences = [_dataclass(Sentence, _check(s, dict, f"turns[{i}].sentences[{j}]"),
                                 f"turns[{i}].sentences[{j}]") for j, s in enumerate(raw.get("sentences", []))]
    if turn.role not in ("user", "assistant"):
        raise ConversationError(f"turns[{i}].role must be 'user' or 'assistant', got {turn.role!r}")
    return turn


def _dataclass(cls, raw: dict, where: str):
    """cls(**raw) with each field read as its annotation says; a missing field takes its default, an unknown one
    (from a newer version) is dropped."""
    return cls(**{name: _value(raw[name], kind, f"{where}.{name}") for name, kind in _fields(cls) if name in raw})


@functools.cache
def _fields(cls) -> tuple[tuple[str, type], ...]:
    """(name, type) of each field read by _value (Turn.sentences is read on its own)."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in fields(cls) if f.name != "sentences")


def _value(value, kind, where: str):
    """`value` from JSON as annotation `kind` says: X | None, GenerationSettings (saved as its fields), or a plain
    type (str, float, bool, dict[str, float], ...)."""
    if kind is GenerationSettings:
        return _settings(value, where)
    if typing.get_origin(kind) in (types.UnionType, typing.Union) and type(None) in typing.get_args(kind):
        inner, = (a for a in typing.get_args(kind) if a is not type(None))
        return None if value is None else _value(value, inner, where)
    return _check(value, kind, where)


def _settings(raw, where: str) -> GenerationSettings:
    _check(raw, dict, where)
    known = {f.name for f in fields(GenerationSettings)}  # a knob of a newer version is dropped
    try:
        return GenerationSettings(**{k: v for k, v in raw.items() if k in known})
    except (SwitchboardError, TypeError) as e:  # its own rules, or a value of the wrong type
        raise ConversationError(f"{where}: {e}") from None


def _check(value, kind, where: str):
    """`value` if it has type `kind`, else ConversationError naming `where`."""
    if not _is(value, kind):
        raise ConversationError(f"{where} should be {kind.__name__ if isinstance(kind, type) else kind}, "
                                f"got {value!r:.60}")
    return value


def _is(value, kind) -> bool:
    """isinstance for the annotations the conversation dataclasses use: str, float, bool, dict[str, float], ..."""
    origin, args = typing.get_origin(kind) or kind, typing.get_args(kind)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and (not args or _is(v, args[1]))
                                               for k, v in value.items())
    return isinstance(value, origin)

