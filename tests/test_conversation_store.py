"""Saved conversations: every field and the routing trace of every sentence survive a save and a load; list,
search, rename, delete; damaged and foreign files are skipped with a message and left alone; a save killed at
any point leaves the old or the new conversation, whole."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from app.conversation import Conversation
from app.conversation_store import ConversationError, ConversationStore, SavedConversation
from engine.events import RoutingEvent
from engine.generation import GenerationSettings

WORKER = Path(__file__).with_name("conversation_worker.py")
ADAPTERS = ["arithmetic", "dates", "number_words", "reverse", "sort", "translate", "units"]


def chat(conv: Conversation, question: str, sentences: list[str], rng: random.Random):
    """One exchange, filled the way the window fills it: routing events, token chunks, the done stats."""
    conv.add_user(question)
    conv.start_assistant(GenerationSettings(temperature=0.7, top_k=40, stop=("\n\n",)))
    for i, text in enumerate(sentences):
        weights = [rng.random() for _ in ADAPTERS]
        probs = {a: w / sum(weights) for a, w in zip(ADAPTERS, weights)}
        top = max(probs, key=probs.get)
        conv.on_routing(RoutingEvent(i, probs, {top: 1.0}, rng.uniform(0.1, 2.0)))
        conv.on_tokens(text[: len(text) // 2], False)
        conv.on_tokens(text[len(text) // 2:], True)
    conv.finish({"tokens": 9 * len(sentences), "tokens_per_s": 41.5, "stop_reason": "eos", "ttft_ms": 12.0})


def fill(saved: SavedConversation, turns: int = 2, seed: int = 0) -> SavedConversation:
    rng = random.Random(seed)
    for i in range(turns):
        chat(saved.conversation, f"Question {i}: convert {i} km to m.",
             [f"Sentence {j} of reply {i}." for j in range(3)], rng)
    return saved


@pytest.fixture
def store(tmp_path):
    return ConversationStore(tmp_path / "conversations")


def test_a_conversation_comes_back_as_it_was_saved(store):
    settings = GenerationSettings(temperature=0.7, top_k=40, sample_top_p=0.9, repetition_penalty=1.1, top_p=0.6,
                                  max_adapters=2, stop=("\n\n",), seed=3)
    saved = fill(store.new(system_prompt="You are terse.", settings=settings))
    store.save(saved)
    back = store.load(saved.id)
    assert (back.system_prompt, back.settings, back.title) == ("You are terse.", settings, saved.title)
    assert (back.created, back.updated) == (saved.created, saved.updated)
    assert [asdict(t) for t in back.conversation.turns] == [asdict(t) for t in saved.conversation.turns]
    sentence = back.conversation.turns[1].sentences[2]  # the routing trace of a sentence
    assert sentence.text == "Sentence 2 of reply 0." and sentence.closed and sum(sentence.probs.values()) == \
        pytest.approx(1.0) and list(sentence.selected.values()) == [1.0] and 0.1 <= sentence.latency_ms <= 2.0
    assert back.conversation.turns[1].settings == GenerationSettings(temperature=0.7, top_k=40, stop=("\n\n",))
    assert back.conversation.turns[0].settings is None  # a user turn has none
    assert back.conversation.messages() == saved.conversation.messages()  # and the engine input it gives


def test_new_conversations_are_listed_newest_first_and_titled_by_their_first_message(store):
    first = store.new()
    assert store.list()[0].title == "New conversation"  # listed before its first turn
    second = fill(store.new(), turns=1)
    store.save(second)
    assert [s.id for s in store.list()] == [second.id, first.id]
    assert store.list()[0].title == "Question 0: convert 0 km to m."
    first.conversation.add_user("A much later question, on a line long enough to be cut short in the list\nline 2")
    store.save(first)
    listed = store.list()
    assert [s.id for s in listed] == [first.id, second.id]  # updated last: first in the list
    assert listed[0].title == "A much later question, on a line long enough to be cut…"  # between words


def test_rename_delete_and_search(store):
    a = fill(store.new(title="Units"), turns=1)
    store.save(a)
    b = store.new()
    b.conversation.add_user("Sort these numbers: 5 2 9")
    store.save(b)
    renamed = store.rename(b.id, "  Sorting  ")
    assert renamed.title == "Sorting" and store.load(b.id).title == "Sorting"
    assert store.load(b.id).updated == b.updated  # a rename does not move it up the list
    with pytest.raises(ConversationError, match="cannot be empty"):
        store.rename(a.id, " ")

    assert [s.id for s in store.search("sorting")] == [b.id]             # the title
    hits = store.search("5 2")                                           # the text
    assert [s.id for s in hits] == [b.id] and "numbers: 5 2 9" in hits[0].snippet
    assert [s.id for s in store.search("KM reply")] == [a.id]           # every word, any case, user or assistant
    assert store.search("km sorting") == []
    assert {s.id for s in store.search("")} == {a.id, b.id}

    store.delete(a.id)
    assert [s.id for s in store.list()] == [b.id]
    with pytest.raises(ConversationError, match="no saved conversation"):
        store.load(a.id)
    with pytest.raises(ConversationError, match="no saved conversation"):
        store.load("../conversations/" + b.id)  # only names inside the folder


@pytest.mark.parametrize("content, says", [
    (b"{\"format\": \"lora-switch", "not a readable conversation file"),
    (b"\xff\xfe not text", "not a readable conversation file"),
    (b'{"name": "a chat from another app"}', "not a LoRA Switchboard conversation"),
    (b'[1, 2]', "not a LoRA Switchboard conversation"),
    (None, "conversation format version 2; this app reads version 1"),
    (None, "settings"),
    (None, "turns[1].sentences[0].probs should be"),
    (None, "turns[0].role must be 'user' or 'assistant'"),
    (None, "turns[1].settings: top_p must be in (0, 1]"),
    (None, "surrogates not allowed"),  # a lone \ud800 escape: text that could never be saved again
])
def test_damaged_or_foreign_files_are_skipped_with_a_message_and_left_alone(store, content, says):
    good = fill(store.new(title="good"))
    store.save(good)
    bad = fill(store.new(title="bad"))
    store.save(bad)
    path = store.root / f"{bad.id}.json"
    if content is None:  # a well-formed file with one thing wrong
        raw = json.loads(path.read_text())
        if "version" in says:
            raw["version"] = 2
        elif says == "settings":
            raw["settings"]["top_p"] = 5
        elif "surrogates" in says:
            raw["turns"][0]["sentences"][0]["text"] = "\ud800"
        elif "turns[1].settings" in says:
            raw["turns"][1]["settings"]["top_p"] = 5
        elif "probs" in says:
            raw["turns"][1]["sentences"][0]["probs"] = {"units": "high"}
        else:
            raw["turns"][0]["role"] = "narrator"
        content = json.dumps(raw).encode()
    path.write_bytes(content)
    assert [s.title for s in store.list()] == ["good"]
    assert len(store.problems) == 1 and store.problems[0].startswith(str(path)) and says in store.problems[0]
    assert store.problems[0].endswith("the file is left as it is")
    with pytest.raises(ConversationError, match="top_p" if "settings" in says else None):
        store.load(bad.id)
    assert path.read_bytes() == content  # never deleted or rewritten


def test_files_of_a_newer_version_keep_their_known_fields(store):
    """Fields a newer version adds (to a sentence, a turn or the settings) are dropped, the rest loads."""
    saved = fill(store.new())
    store.save(saved)
    path = store.root / f"{saved.id}.json"
    raw = json.loads(path.read_text())
    raw["turns"][1]["sentences"][0]["confidence"] = 0.5
    raw["turns"][1]["rating"] = "good"
    raw["settings"]["min_p"] = 0.05
    path.write_text(json.dumps(raw))
    back = store.load(saved.id)
    assert [asdict(t) for t in back.conversation.turns] == [asdict(t) for t in saved.conversation.turns]


def test_the_store_is_pure_python():
    code = ("import sys; import app.conversation_store, app.presets; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'numpy')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- kill -9 during a save ------------------------------------------------------------------------------------

def worker(root: Path, conversation_id: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), str(root), conversation_id, *args], stdout=subprocess.PIPE,
                            text=True)


def found_version(store: ConversationStore, conversation_id: str, original: list[str]) -> int:
    """The conversation loads, nothing else is listed or reported, and its reply is one version's, whole:
    -> that version (0: `original`, as saved before the worker started)."""
    assert [s.id for s in store.list()] == [conversation_id] and store.problems == []
    saved = store.load(conversation_id)
    n = int(saved.title.removeprefix("version "))
    assert [s.text for s in saved.conversation.turns[1].sentences] == (original if n == 0 else [str(n)] * len(original))
    return n


def reset(store: ConversationStore, conversation_id: str, original: list[str]):
    """Put the conversation back to version 0 before the next killed save."""
    saved = store.load(conversation_id)
    saved.title = "version 0"
    for s, text in zip(saved.conversation.turns[1].sentences, original):
        s.text = text
    store.save(saved)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_save_killed_at_every_step_leaves_the_old_or_the_new_conversation(store):
    saved = fill(store.new(title="version 0"), turns=1)
    store.save(saved)
    original = [s.text for s in saved.conversation.turns[1].sentences]
    done = worker(store.root, saved.id, "once", "0")
    steps = int(done.communicate(timeout=60)[0])
    assert done.returncode == 0 and steps >= 3  # (mkdir of the existing folder,) fsync, replace, fsync the folder
    versions = []
    for kill_at in range(1, steps + 1):
        reset(store, saved.id, original)
        run = worker(store.root, saved.id, "once", str(kill_at))
        run.communicate(timeout=60)
        assert run.returncode == -signal.SIGKILL
        versions.append(found_version(store, saved.id, original))
    assert versions[0] == 0 and versions[-1] == 1 and versions == sorted(versions)  # old until the rename, then new
    leftovers = list(store.root.glob(".*.tmp"))
    assert leftovers  # the temp files of saves killed before their rename: hidden, never listed ...
    stale = time.time() - 2 * 3600
    for f in leftovers:
        os.utime(f, (stale, stale))
    store.list()
    assert not list(store.root.glob(".*.tmp"))  # ... and cleared once they are stale


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_saves_killed_at_random_times_leave_a_whole_conversation(store):
    saved = fill(store.new(title="version 0"), turns=1)
    saved.conversation.turns[1].sentences *= 400  # a long reply (1,200 sentences): a save takes a while
    store.save(saved)
    original = [s.text for s in saved.conversation.turns[1].sentences]
    rng = random.Random(0)
    for _ in range(4):
        reset(store, saved.id, original)
        run = worker(store.root, saved.id, "loop")
        assert run.stdout.readline() == "saving\n"
        time.sleep(rng.uniform(0.05, 0.5))  # the worker does nothing but save: the kill lands in a save
        run.kill()
        run.wait(timeout=60)
        assert run.returncode == -signal.SIGKILL
        found_version(store, saved.id, original)


def test_listing_again_reads_only_the_files_that_changed(store, monkeypatch):
    import app.conversation_store as module

    a, b = store.new(title="a"), store.new(title="b")
    reads = []
    read = module._read
    monkeypatch.setattr(module, "_read", lambda path: reads.append(path.stem) or read(path))
    store.list()
    assert sorted(reads) == sorted([a.id, b.id])
    reads.clear()
    assert store.search("a") and reads == []  # unchanged: no file parsed (a search box searches at every key)
    b.conversation.add_user("news")
    store.save(b)
    assert [s.id for s in store.search("news")] == [b.id] and reads == [b.id]
