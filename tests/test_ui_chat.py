"""The window as a chat app people keep open, on the tiny Llama of tests/test_ui.py (pytest-qt, offscreen): saved
conversations, editing and resending, regenerating any reply, continuing a cut-off one, the system prompt, sampling
presets, the context meter, Esc, and the local server run from Settings."""
import json
import urllib.request

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QFormLayout

from app.conversation_store import ConversationStore
from app.settings import Settings
from engine.generation import GenerationSettings
from ui import main_window

from test_ui import app, make_app, router_path, send, settings, wait_idle  # noqa: F401 - fixtures


def reply_done(qtbot, app):
    qtbot.waitUntil(lambda: not app.generating, timeout=60_000)
    wait_idle(qtbot, app)


def test_conversations_are_saved_with_their_routing_and_listed_renamed_searched_and_deleted(qtbot, app, settings):
    window, sidebar = app.window, app.window.conversations
    window.controls.max_new_tokens.setValue(24)
    send(qtbot, app, "Translate to French: cat, dog, house.")
    reply_done(qtbot, app)
    store = ConversationStore()
    [first] = store.list()
    saved = store.load(first.id)
    assert first.title.startswith("Translate to French")
    assert [t.text for t in saved.conversation.turns] == [t.text for t in app.conv.turns]
    routed = saved.conversation.turns[1].sentences
    assert routed and all(s.probs and set(s.probs) == set(app.model.adapters) for s in routed)
    assert saved.settings.max_new_tokens == 24
    assert sidebar.list.count() == 1 and sidebar.list.currentItem().text().startswith("Translate to French")

    window.chat.clear.click()  # New: an empty conversation, listed once its first message is sent
    assert app.conv.turns == [] and window.chat.messages == [] and window.timeline.count() == 0
    send(qtbot, app, "Write a haiku about rain.")
    reply_done(qtbot, app)
    assert sidebar.list.count() == 2
    second = app.conversations.saved.id

    sidebar.renameRequested.emit(first.id, "French lesson")
    sidebar.search.setText("french")
    assert sidebar.list.count() == 1 and sidebar.list.item(0).text().startswith("French lesson")
    sidebar.search.setText("no such words anywhere")
    assert sidebar.list.count() == 0 and "No conversation holds" in sidebar.note.text()
    sidebar.search.setText("")

    sidebar.openRequested.emit(first.id)  # the first one again, with its routing in the timeline
    assert app.conv.turns[0].text == "Translate to French: cat, dog, house."
    assert window.timeline.count() == len(routed) and len(window.chat.messages) == 2

    sidebar.deleteRequested.emit(second)
    assert [s.id for s in store.list()] == [first.id] and sidebar.list.count() == 1
    window.close()

    again = make_app(qtbot, Settings(QSettings(settings.q.fileName(), QSettings.IniFormat)))
    assert again.conversations.saved.id == first.id  # reopened where the user left off
    assert [t.text for t in again.conv.turns] == [t.text for t in saved.conversation.turns]
    assert again.window.timeline.count() == len(routed)


def test_edit_a_message_regenerate_any_reply_and_continue_a_cut_off_one(qtbot, app):
    window, chat = app.window, app.window.chat
    window.controls.max_new_tokens.setValue(6)  # every reply is cut off at max new tokens
    send(qtbot, app, "First question about cats.")
    reply_done(qtbot, app)
    send(qtbot, app, "Second question about dogs.")
    reply_done(qtbot, app)
    assert len(app.conv.turns) == 4 and app.conv.turns[3].stats["stop_reason"] == "length"

    # continue the last reply: only the last one offers it, and it grows in place
    cont = [m.actions[1] for m in chat.messages if m.role == "assistant"]
    assert [b.isVisibleTo(chat) for b in cont] == [False, True]
    before, tokens = app.conv.turns[3].text, app.conv.turns[3].stats["tokens"]
    cont[1].click()
    reply_done(qtbot, app)
    assert len(app.conv.turns) == 4 and app.conv.turns[3].text.startswith(before)
    assert app.conv.turns[3].stats["tokens"] > tokens and len(app.conv.turns[3].text) > len(before)
    assert window.timeline.count() == sum(len(app.conv.turns[i].sentences) for i in (1, 3))

    # regenerate the first reply (not the last): the turns after it are dropped
    chat.messages[1].actions[0].click()
    reply_done(qtbot, app)
    assert len(app.conv.turns) == 2 and len(chat.messages) == 2
    assert app.conv.turns[0].text == "First question about cats." and app.conv.turns[1].stats

    # edit the sent message and resend it
    first = chat.messages[0]
    first.actions[0].click()
    assert first.editor.isVisibleTo(chat) and first.editor.toPlainText() == "First question about cats."
    first.editor.setPlainText("An edited question about birds.")
    qtbot.keyClick(first.editor, Qt.Key_Return)
    reply_done(qtbot, app)
    assert [t.text for t in app.conv.turns[:1]] == ["An edited question about birds."] and len(app.conv.turns) == 2
    assert chat.messages[0].body.toPlainText().strip() == "An edited question about birds."
    assert ConversationStore().load(app.conversations.saved.id).conversation.turns[0].text == \
        "An edited question about birds."


def test_the_system_prompt_is_per_conversation_with_a_default_from_settings(qtbot, settings, llama_dir,
                                                                            monkeypatch):
    settings.system_prompt = "You are terse."
    app = make_app(qtbot, settings)
    app.open_default_model(str(llama_dir))
    wait_idle(qtbot, app)
    sent = []
    generate = app.worker.generate
    monkeypatch.setattr(app.worker, "generate", lambda messages, *a: sent.append(messages) or generate(messages, *a))
    assert app.window.system_prompt.text() == "You are terse."  # a new conversation starts with the default
    app.window.system_prompt.set_text("Answer in French.")
    app.window.controls.max_new_tokens.setValue(4)
    send(qtbot, app, "Hello")
    reply_done(qtbot, app)
    assert sent[0][0] == {"role": "system", "content": "Answer in French."}
    first = app.conversations.saved.id
    assert ConversationStore().load(first).system_prompt == "Answer in French."

    app.window.chat.clear.click()
    assert app.window.system_prompt.text() == "You are terse."
    app.window.conversations.openRequested.emit(first)
    assert app.window.system_prompt.text() == "Answer in French."
    app.window.system_prompt.resetRequested.emit()  # back to the default, saved with the conversation
    assert ConversationStore().load(first).system_prompt == "You are terse."


def test_sampling_presets_name_the_two_top_ps_apart_and_are_saved_per_conversation(qtbot, app):
    controls = app.window.controls
    form = controls.findChild(QFormLayout)
    labels = {form.labelForField(box).text() for box in (controls.top_p, controls.sample_top_p)}
    assert labels == {"Routing top-p", "Sampling top-p"}
    index = controls.preset.findText("Balanced")
    controls.preset.activated.emit(index)
    assert (controls.temperature.value(), controls.top_k.value(), controls.sample_top_p.value(),
            controls.repetition_penalty.value()) == (0.7, 40, 0.9, 1.1)
    assert controls.preset.currentText() == "Balanced"
    controls.top_k.setValue(12)
    assert controls.preset.currentText() == "Custom"
    controls.max_new_tokens.setValue(4)
    send(qtbot, app, "Hi")
    reply_done(qtbot, app)
    saved = ConversationStore().load(app.conversations.saved.id)
    assert (saved.settings.temperature, saved.settings.top_k, saved.settings.sample_top_p,
            saved.settings.repetition_penalty) == (0.7, 12, 0.9, 1.1)
    assert app.conv.turns[1].settings.top_k == 12

    app.window.chat.clear.click()
    controls.set_values(GenerationSettings())
    app.window.conversations.openRequested.emit(saved.id)  # its settings come back with it
    assert controls.top_k.value() == 12 and controls.temperature.value() == 0.7


def test_the_context_meter_counts_the_prompt_and_warns_before_turns_are_dropped(qtbot, app):
    meter = app.window.chat.meter
    app.window.controls.max_new_tokens.setValue(8)
    send(qtbot, app, "Translate to French: cat, dog, house.")
    reply_done(qtbot, app)
    context = app.model.context_len
    qtbot.waitUntil(lambda: meter.label.text().endswith(f" / {context:,} tokens"))
    used = int(meter.label.text().split(" / ")[0].replace(",", ""))
    assert 10 < used < 200 and not meter.warning.isVisibleTo(app.window)
    app.window.controls.max_new_tokens.setValue(context - used + 1)  # the reply's room leaves too little
    assert meter.warning.isVisibleTo(app.window) and "oldest messages" in meter.warning.text()


def test_escape_stops_the_reply(qtbot, app):
    app.window.controls.max_new_tokens.setValue(200)
    app.signals.tokens.connect(lambda *_: app.generating and qtbot.keyClick(app.window, Qt.Key_Escape))
    send(qtbot, app)
    reply_done(qtbot, app)
    stats = app.conv.turns[1].stats
    assert stats["stop_reason"] == "cancel" and stats["tokens"] < 200, stats
    assert app.window.chat.messages[1].actions[1].isVisibleTo(app.window)  # a stopped reply can be continued


def test_the_local_server_runs_from_settings_and_its_requests_are_logged(qtbot, app, settings, monkeypatch):
    pytest.importorskip("uvicorn")

    def turn_on(dialog):
        dialog.server_enabled.setChecked(True)
        dialog.server_host.setText("0.0.0.0")  # other machines: refused without a key
        assert not dialog.ok.isEnabled() and dialog.server_problem.isVisibleTo(dialog)
        dialog.server_host.setText("127.0.0.1")
        assert dialog.ok.isEnabled()
        return 1

    monkeypatch.setattr(main_window.SettingsDialog, "exec", turn_on)
    settings.server_port = free_port()
    app.open_settings(2)  # Settings > Local server
    assert settings.server_enabled and app.model is not None  # the model did not reload
    status = app.window.status_server
    qtbot.waitUntil(lambda: status.isVisible() and f"127.0.0.1:{settings.server_port}" in status.text())
    wait_idle(qtbot, app)
    address = app.server.address
    qtbot.waitUntil(lambda: app.server.server.scheduler.engine is not None, timeout=10_000)

    body = json.dumps({"model": "switchboard", "messages": [{"role": "user", "content": "Hi"}],
                       "max_tokens": 5}).encode()
    request = urllib.request.Request(f"{address}/v1/chat/completions", body, {"Content-Type": "application/json"})
    answers = []
    import threading

    client = threading.Thread(target=lambda: answers.append(json.load(urllib.request.urlopen(request, timeout=60))))
    client.start()
    qtbot.waitUntil(lambda: not client.is_alive(), timeout=60_000)
    assert answers and answers[0]["choices"][0]["message"]["content"] is not None

    app.window.status_server.click()  # the log window
    log = app.server.log
    qtbot.waitUntil(lambda: log.table.rowCount() == 1 and log.table.item(0, 4).text() == "done")
    assert log.table.item(0, 2).text().endswith("chat/completions") and "token" in log.table.item(0, 5).text()
    log.table.selectRow(0)
    assert log.reply.toPlainText() == answers[0]["choices"][0]["message"]["content"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_quantized_model_is_named_in_the_status_bar_with_its_adapter_in_the_singular(qtbot, settings, llama_dir,
                                                                                        llama_adapters):
    settings.quantize = "int8"  # Settings > Model > Quantization
    app = make_app(qtbot, settings)
    app.open_default_model(str(llama_dir))
    wait_idle(qtbot, app)
    name, path = next(iter(llama_adapters.items()))
    app.run(app.worker.submit("add_adapter", lambda e: e.add_adapter(path, name=name)), lambda _: None)
    wait_idle(qtbot, app)
    assert app.model.quantize == "int8"
    assert app.window.status_model.text() == f"{llama_dir.name} · cpu · int8 weights · 1 adapter · no router"
    app.window.controls.max_new_tokens.setValue(4)
    send(qtbot, app, "Hi")
    reply_done(qtbot, app)
    assert app.conv.turns[1].stats["tokens"] >= 1
