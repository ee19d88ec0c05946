"""The main window on a tiny Llama with four adapters and a trained router (pytest-qt, offscreen)."""
import json

import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QDialog

from app import loading, paths
from app.settings import Settings
from engine.router import Router
from ui import main_window, tinted_markdown
from ui.library_jobs import LibraryJobs
from ui.main_window import MainWindow

PROMPT = "Translate to French: cat, dog, house."


@pytest.fixture(scope="module")
def router_path(tmp_path_factory, llama_adapters):
    # adapters in sorted order: the order the demo loader (folder names, sorted) puts them in the bank
    examples = {name: [f"{name} task {i}: do the {name} thing" for i in range(8)] for name in sorted(llama_adapters)}
    path = tmp_path_factory.mktemp("router") / "router.safetensors"
    Router.train(examples, epochs=1).save(path)
    return path


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "demo_available", lambda: False)
    monkeypatch.setattr(paths, "default_library_dir", lambda: tmp_path / "no-library")
    s = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    s.device = "cpu"
    return s


def make_window(qtbot, settings):
    window = MainWindow(settings)
    qtbot.addWidget(window)  # closed at teardown: closeEvent stops the engine thread
    window.resize(1100, 700)
    window.show()
    return window


def wait_idle(qtbot, window, timeout=60_000):
    qtbot.waitUntil(lambda: window._pending == 0, timeout=timeout)


@pytest.fixture
def window(qtbot, settings, llama_dir, llama_adapters, router_path):
    w = make_window(qtbot, settings)
    w.open_default_model(str(llama_dir))
    wait_idle(qtbot, w)
    for name in sorted(llama_adapters):
        w._submit("add_adapter", path=str(llama_adapters[name]), name=name)
    w._submit("load_router", path=str(router_path))
    wait_idle(qtbot, w)
    assert w.model_info["router"] and w.model_info["adapters"] == sorted(llama_adapters)
    return w


def send(qtbot, window, text=PROMPT):
    window.chat.input.setPlainText(text)
    qtbot.keyClick(window.chat.input, Qt.Key_Return)


def record(signal):
    seen = []
    signal.connect(lambda *args: seen.append(args))
    return seen


def test_send_streams_text_routing_chart_and_timeline(qtbot, window):
    routings = record(window.worker.routing)
    window.controls.max_new_tokens.setValue(200)
    send(qtbot, window)
    assert window.chat.send.text() == "Stop" and window.conv.turns[0].text == PROMPT
    qtbot.waitUntil(lambda: not window.generating, timeout=60_000)
    assert window.chat.send.text() == "Send" and window.chat.input.toPlainText() == ""

    reply = window.conv.turns[1]
    view = window.chat.messages[1]
    assert reply.text and view.source == reply.text and view.body.toPlainText().strip()
    events = [args[0] for args in routings]
    assert len(events) == len(reply.sentences) == window.timeline.count() >= 2
    assert window.chart.bar_values() == pytest.approx(events[-1]["probs"])
    assert set(events[-1]["probs"]) == set(window.model_info["adapters"])
    assert "tok/s" in window.status_speed.text() and window.status_speed.text()[0].isdigit()
    assert "cpu" in window.status_model.text() and "4 adapters" in window.status_model.text()

    # hovering the first sentence charts its routing; leaving goes back to the newest
    doc = view.body.document()
    pos = next(p for p in range(doc.characterCount() - 1) if tinted_markdown.sentence_at(doc, p) == 0)
    cursor = QTextCursor(doc)
    cursor.setPosition(pos)
    caret = view.body.cursorRect(cursor)  # just before the character: move 3 px into it
    qtbot.mouseMove(view.body.viewport(), QPoint(caret.right() + 3, caret.center().y()))
    qtbot.waitUntil(lambda: window.chart.title.text().endswith("sentence 1"))
    assert window.chart.bar_values() == pytest.approx(events[0]["probs"])

    # clicking a timeline bar inspects that sentence
    last = window.timeline.count() - 1
    window.timeline.sentenceClicked.emit(last)
    assert window.timeline.current.isVisible() and window.chart.bar_values() == pytest.approx(events[-1]["probs"])


def test_stop_cancels_promptly_and_regenerate_and_clear(qtbot, window):
    window.controls.max_new_tokens.setValue(200)
    def press_stop_once(*_):
        window.worker.tokens.disconnect(press_stop_once)
        assert window.chat.send.text() == "Stop"
        window.chat.send.click()

    window.worker.tokens.connect(press_stop_once)  # Stop as soon as the first text appears
    send(qtbot, window)
    qtbot.waitUntil(lambda: not window.generating, timeout=60_000)
    stats = window.conv.turns[1].stats
    assert stats["stop_reason"] == "cancel" and stats["tokens"] < 200
    assert "stopped" in window.chat.messages[1].footer.text()

    window.controls.max_new_tokens.setValue(20)
    window.chat.regenerate.click()
    qtbot.waitUntil(lambda: not window.generating, timeout=60_000)
    assert len(window.conv.turns) == 2 and len(window.chat.messages) == 2
    assert window.conv.turns[1].stats["stop_reason"] in ("eos", "length")
    assert window.timeline.count() == len(window.conv.turns[1].sentences)

    window.chat.clear.click()
    assert window.conv.turns == [] and window.chat.messages == [] and window.timeline.count() == 0


def test_closing_during_generation_exits_cleanly(qtbot, window):
    window.controls.max_new_tokens.setValue(200)
    first = record(window.worker.tokens)
    send(qtbot, window)
    qtbot.waitUntil(lambda: bool(first), timeout=60_000)
    assert window.generating
    window.close()
    assert not window.worker.isRunning()


def test_settings_persist_across_windows(qtbot, settings, llama_dir, monkeypatch):
    first = make_window(qtbot, settings)
    first.controls.set_values(0.55, 3, 0.7, 99)

    def fill_and_accept(dialog):
        dialog.model_dir.setText(str(llama_dir))
        dialog.dtype.setCurrentText("float32")
        return 1

    monkeypatch.setattr(main_window.SettingsDialog, "exec", fill_and_accept)
    first.open_settings()  # Settings > Model folder: saves and loads the model
    wait_idle(qtbot, first)
    assert first.model_info["model_name"] == llama_dir.name
    first.close()

    second = make_window(qtbot, Settings(QSettings(settings.q.fileName(), QSettings.IniFormat)))
    kw = second.controls.generation_kwargs()
    assert (kw["top_p"], kw["max_adapters"], kw["temperature"], kw["max_new_tokens"]) == (0.55, 3, 0.7, 99)
    assert (second.settings.model_dir, second.settings.dtype) == (str(llama_dir), "float32")
    second.open_default_model()  # the configured model, not the demo
    wait_idle(qtbot, second)
    assert second.model_info["model_name"] == llama_dir.name and not second.demo


def test_a_model_that_fails_to_load_shows_the_error_and_the_app_stays_usable(qtbot, settings, tmp_path, llama_dir):
    window = make_window(qtbot, settings)
    bad = tmp_path / "broken-model"
    bad.mkdir()
    (bad / "config.json").write_text("{ this is not json")
    window.open_default_model(str(bad))
    wait_idle(qtbot, window)
    assert window.chat.stack.currentIndex() == 0 and window.chat.empty_error.isVisible()
    assert "broken-model" in window.chat.empty_error.text() and not window.chat.send.isEnabled()
    assert window.model_info is None and "No model" in window.status_model.text()

    window.open_default_model(str(llama_dir))
    wait_idle(qtbot, window)
    assert window.chat.stack.currentIndex() == 1 and window.chat.send.isEnabled()
    window.controls.max_new_tokens.setValue(8)
    send(qtbot, window)
    qtbot.waitUntil(lambda: not window.generating, timeout=60_000)
    assert window.conv.turns[1].stats["tokens"] >= 1


def test_without_a_model_or_demo_the_empty_state_explains_what_to_do(qtbot, settings):
    window = make_window(qtbot, settings)
    window.open_default_model()
    assert window.chat.stack.currentIndex() == 0 and window._pending == 0
    assert "Settings > Model and library" in window.chat.empty_text.text()
    assert not window.chat.send.isEnabled()


def test_the_bundled_demo_opens_by_default_and_says_so(qtbot, settings, tmp_path, llama_dir, llama_adapters,
                                                        router_path, monkeypatch):
    demo = tmp_path / "demo"
    (demo / "adapters").mkdir(parents=True)
    (demo / "model").symlink_to(llama_dir)
    for name, path in llama_adapters.items():
        (demo / "adapters" / name).symlink_to(path)
    for src in (router_path, router_path.with_suffix(".json")):
        (demo / src.name).symlink_to(src)
    (demo / "tasks").mkdir()
    (demo / "tasks" / "alpha.jsonl").write_text('{"prompt": "Reverse the word \'garden\'.", "response": "nedrag"}\n')
    monkeypatch.setattr(loading, "DEMO_DIR", demo)
    monkeypatch.setattr(paths, "DEMO_DIR", demo)
    monkeypatch.setattr(loading, "demo_available", lambda: True)
    monkeypatch.setattr(paths, "demo_available", lambda: True)
    window = make_window(qtbot, settings)
    window.open_default_model()
    wait_idle(qtbot, window)
    assert window.model_info is not None, window.chat.empty_error.text()
    assert window.demo and window.model_info["router"] and len(window.model_info["adapters"]) == 4
    assert "demo model" in window.windowTitle() and "demo model" in window.status_model.text()
    assert {(s.width(), s.height()) for s in window.windowIcon().availableSizes()} >= {(16, 16), (256, 256)}
    # the input suggests what the demo can answer
    hint = window.chat.input.placeholderText()
    assert hint == "Demo model: it knows a few small tasks. Try: Reverse the word 'garden'."


def test_export_writes_the_conversation_with_its_routing(qtbot, window, tmp_path, monkeypatch):
    window.controls.max_new_tokens.setValue(20)
    send(qtbot, window)
    qtbot.waitUntil(lambda: not window.generating, timeout=60_000)
    target = tmp_path / "chat"
    monkeypatch.setattr(main_window.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(target), "JSON (*.json)"))
    window.export_conversation()
    data = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert data["turns"][1]["content"] == window.conv.turns[1].text
    assert [s["selected"] for s in data["turns"][1]["sentences"]] == [s.selected for s in window.conv.turns[1].sentences]


def test_the_library_menu_opens_the_adapter_library(qtbot, settings, tmp_path, monkeypatch):
    window = make_window(qtbot, settings)
    assert "Library" in [a.text().replace("&", "") for a in window.menuBar().actions()]
    window.library_action.trigger()
    library_window = next(w for w in window.findChildren(QDialog) if w.isVisible())
    assert str(tmp_path / "no-library") in library_window.windowTitle()
    library_window.close()

    def choose_library(dialog):
        dialog.library_dir.setText(str(tmp_path / "mine"))
        return 1

    monkeypatch.setattr(main_window.SettingsDialog, "exec", choose_library)
    window.open_settings()  # Settings > Model and library: another library folder, saved
    assert settings.library_dir == str(tmp_path / "mine") and window.library_dir() == tmp_path / "mine"
    wait_idle(qtbot, window)
    window.library_action.trigger()
    shown = [w for w in window.findChildren(QDialog) if w.isVisible()]
    assert len(shown) == 1 and str(tmp_path / "mine") in shown[0].windowTitle()
    window.library_override = str(tmp_path / "for-this-run")  # switchboard --library DIR
    assert window.library_dir() == tmp_path / "for-this-run"

    # while the open library runs a job, its window stays (the job's results must reach it) and the status says so
    monkeypatch.setattr(LibraryJobs, "busy", property(lambda self: True))
    window.library_action.trigger()
    shown = [w for w in window.findChildren(QDialog) if w.isVisible()]
    assert len(shown) == 1 and str(tmp_path / "mine") in shown[0].windowTitle()
    assert "when the running import or retrain finishes" in window.statusBar().currentMessage()
