"""The main window and its controller on a tiny Llama with four adapters and a trained router (pytest-qt,
offscreen), and the app's exit as a process."""
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtGui import QTextCursor

from app import gui, loading, paths
from app.controller import Controller
from app.library import Library
from app.library_controller import LibraryController
from app.settings import ROUTING_CONTEXTS, Settings
from app.worker import EngineWorker
from app.worker_signals import WorkerSignals
from engine.context import POLICIES, context_text, router_context
from engine.generation import GenerationSettings
from engine.router import Router
from ui import main_window, tinted_markdown
from ui.library.window import LibraryWindow

PROMPT = "Translate to French: cat, dog, house."


@pytest.fixture(scope="module")
def router_path(tmp_path_factory, llama_adapters):
    # adapters in sorted order: the order the demo loader (folder names, sorted) puts them in the bank
    examples = {name: [f"{name} task {i}: do the {name} thing" for i in range(8)] for name in sorted(llama_adapters)}
    path = tmp_path_factory.mktemp("router") / "router.safetensors"
    Router.train(examples, base=False, epochs=1).save(path)  # every reply on adapters (the base bar: test_ui_widgets)
    return path


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_DATA", str(tmp_path / "data"))  # saved conversations and presets
    monkeypatch.setattr(paths, "demo_available", lambda: False)
    monkeypatch.setattr(paths, "default_library_dir", lambda: tmp_path / "no-library")
    s = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    s.device = "cpu"
    return s


def make_app(qtbot, settings):
    app = Controller(settings)
    qtbot.addWidget(app.window)  # closed at teardown: closing the window stops the engine thread
    app.window.resize(1100, 700)
    app.window.show()
    return app


def wait_idle(qtbot, app, timeout=60_000):
    qtbot.waitUntil(lambda: not app.busy, timeout=timeout)


@pytest.fixture
def app(qtbot, settings, llama_dir, llama_adapters, router_path):
    a = make_app(qtbot, settings)
    a.open_default_model(str(llama_dir))
    wait_idle(qtbot, a)
    for name in sorted(llama_adapters):
        a.run(a.worker.submit("add_adapter", lambda e, n=name: e.add_adapter(llama_adapters[n], name=n)), lambda _: None)
    a.run(a.worker.submit("load_router", lambda e: e.load_router(router_path)), lambda _: None)
    wait_idle(qtbot, a)
    assert a.model.router and a.model.adapters == tuple(sorted(llama_adapters))
    return a


def send(qtbot, app, text=PROMPT):
    app.window.chat.input.setPlainText(text)
    qtbot.keyClick(app.window.chat.input, Qt.Key_Return)


def record(signal):
    seen = []
    signal.connect(lambda *args: seen.append(args))
    return seen


def test_send_streams_text_routing_chart_and_timeline(qtbot, app):
    window = app.window
    routings = record(app.signals.routing)
    window.controls.max_new_tokens.setValue(200)
    send(qtbot, app)
    assert window.chat.send.text() == "Stop" and app.conv.turns[0].text == PROMPT
    qtbot.waitUntil(lambda: not app.generating, timeout=60_000)
    assert window.chat.send.text() == "Send" and window.chat.input.toPlainText() == ""

    reply = app.conv.turns[1]
    view = window.chat.messages[1]
    assert reply.text and view.source == reply.text and view.body.toPlainText().strip()
    events = [args[0] for args in routings]
    assert len(events) == len(reply.sentences) == window.timeline.count() >= 2
    assert window.chart.bar_values() == pytest.approx(events[-1].probs)
    assert set(events[-1].probs) == set(app.model.adapters)
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
    assert window.chart.bar_values() == pytest.approx(events[0].probs)

    # clicking a timeline bar inspects that sentence
    last = window.timeline.count() - 1
    window.timeline.sentenceClicked.emit(last)
    assert window.timeline.current.isVisible() and window.chart.bar_values() == pytest.approx(events[-1].probs)


def test_stop_cancels_promptly_and_regenerate_and_clear(qtbot, app):
    window = app.window
    window.controls.max_new_tokens.setValue(200)
    def press_stop_once(*_):
        app.signals.tokens.disconnect(press_stop_once)
        assert window.chat.send.text() == "Stop"
        window.chat.send.click()

    app.signals.tokens.connect(press_stop_once)  # Stop as soon as the first text appears
    send(qtbot, app)
    qtbot.waitUntil(lambda: not app.generating, timeout=60_000)
    stats = app.conv.turns[1].stats
    assert stats["stop_reason"] == "cancel" and stats["tokens"] < 200
    assert "stopped" in window.chat.messages[1].footer.text()

    window.controls.max_new_tokens.setValue(20)
    window.chat.regenerate.click()
    qtbot.waitUntil(lambda: not app.generating, timeout=60_000)
    assert len(app.conv.turns) == 2 and len(window.chat.messages) == 2
    assert app.conv.turns[1].stats["stop_reason"] in ("eos", "length")
    assert window.timeline.count() == len(app.conv.turns[1].sentences)

    window.chat.clear.click()
    assert app.conv.turns == [] and window.chat.messages == [] and window.timeline.count() == 0


def test_closing_during_generation_exits_cleanly(qtbot, app):
    app.window.controls.max_new_tokens.setValue(200)
    first = record(app.signals.tokens)
    send(qtbot, app)
    qtbot.waitUntil(lambda: bool(first), timeout=60_000)
    assert app.generating
    app.window.close()
    assert not app.worker._thread.is_alive()


def test_settings_persist_across_windows(qtbot, settings, llama_dir, monkeypatch):
    first = make_app(qtbot, settings)
    first.window.controls.set_values(GenerationSettings(top_p=0.55, max_adapters=3, temperature=0.7,
                                                        max_new_tokens=99))

    def fill_and_accept(dialog):
        dialog.model_dir.setText(str(llama_dir))
        dialog.dtype.setCurrentText("float32")
        return 1

    monkeypatch.setattr(main_window.SettingsDialog, "exec", fill_and_accept)
    first.open_settings()  # Settings > Model and library: saves and loads the model
    wait_idle(qtbot, first)
    assert first.model.model_name == llama_dir.name
    first.window.close()

    second = make_app(qtbot, Settings(QSettings(settings.q.fileName(), QSettings.IniFormat)))
    kw = second.window.controls.values()
    assert (kw["top_p"], kw["max_adapters"], kw["temperature"], kw["max_new_tokens"]) == (0.55, 3, 0.7, 99)
    assert (second.settings.model_dir, second.settings.dtype) == (str(llama_dir), "float32")
    second.open_default_model()  # the configured model, not the demo
    wait_idle(qtbot, second)
    assert second.model.model_name == llama_dir.name and not second.demo


def test_the_routing_context_chosen_in_settings_reaches_the_engine(qtbot, app, monkeypatch):
    """Settings > Routing reads: the choice is saved, applies from the next reply without reloading the model,
    and Engine.generate routes on it (the routing events say what was read)."""
    engine = type(app.worker._engine)
    seen = []

    def generate(self, messages, settings=None, **kw):  # on the worker thread, as the app calls it
        seen.append(settings.routing_context)
        return original(self, messages, settings, **kw)

    original = engine.generate
    monkeypatch.setattr(engine, "generate", generate)
    model = app.model

    def choose_sentence(dialog):
        assert dialog.routing_context.currentData() == "turn"  # the default, as saved
        dialog.routing_context.setCurrentIndex(dialog.routing_context.findData("sentence"))
        return 1

    monkeypatch.setattr(main_window.SettingsDialog, "exec", choose_sentence)
    app.open_settings()
    wait_idle(qtbot, app)
    assert app.settings.routing_context == "sentence" and app.model is model  # not reloaded
    routings = record(app.signals.routing)
    app.window.controls.max_new_tokens.setValue(200)
    send(qtbot, app)
    qtbot.waitUntil(lambda: not app.generating, timeout=60_000)
    assert seen == ["sentence"]
    events = [args[0] for args in routings]
    sentences = [s.text for s in app.conv.turns[1].sentences]
    assert len(events) >= 2 and events[0].context == PROMPT
    messages = [{"role": "user", "content": PROMPT}]
    so_far = ["".join(sentences[:i]) for i in range(len(events))]
    # the message and the last finished sentence, not the whole reply so far ("turn")
    assert all(e.context == context_text(router_context("sentence", messages, r)) for e, r in zip(events, so_far))
    assert any(e.context != context_text(router_context("turn", messages, r)) for e, r in zip(events, so_far))


def test_generation_settings_are_saved_by_name_and_bad_values_fall_back(tmp_path):
    store = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    settings = Settings(store)
    assert settings.generation == GenerationSettings()  # nothing saved: the defaults, written once
    settings.generation = GenerationSettings(top_p=0.5, max_adapters=None, temperature=0.3, max_new_tokens=64)
    store.sync()
    again = Settings(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)).generation
    assert (again.top_p, again.max_adapters, again.temperature, again.max_new_tokens) == (0.5, None, 0.3, 64)
    store.setValue("top_p", "7")  # hand-edited out of range
    store.setValue("max_new_tokens", "lots")
    assert settings.generation == GenerationSettings(temperature=0.3)
    assert settings.routing_context == "turn" and list(ROUTING_CONTEXTS) == list(POLICIES)
    settings.routing_context = "decayed"
    assert Settings(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)).routing_context == "decayed"
    store.setValue("routing_context", "everything")
    assert settings.routing_context == "turn"


def test_a_model_that_fails_to_load_shows_the_error_and_the_app_stays_usable(qtbot, settings, tmp_path, llama_dir):
    app = make_app(qtbot, settings)
    window = app.window
    bad = tmp_path / "broken-model"
    bad.mkdir()
    (bad / "config.json").write_text("{ this is not json")
    app.open_default_model(str(bad))
    wait_idle(qtbot, app)
    assert window.chat.stack.currentIndex() == 0 and window.chat.empty_error.isVisible()
    assert "broken-model" in window.chat.empty_error.text() and not window.chat.send.isEnabled()
    assert app.model is None and "No model" in window.status_model.text()

    app.open_default_model(str(llama_dir))
    wait_idle(qtbot, app)
    assert window.chat.stack.currentIndex() == 1 and window.chat.send.isEnabled()
    window.controls.max_new_tokens.setValue(8)
    send(qtbot, app)
    qtbot.waitUntil(lambda: not app.generating, timeout=60_000)
    assert app.conv.turns[1].stats["tokens"] >= 1


def test_without_a_model_or_demo_the_empty_state_explains_what_to_do(qtbot, settings):
    app = make_app(qtbot, settings)
    app.open_default_model()
    assert app.window.chat.stack.currentIndex() == 0 and not app.busy
    assert "Settings > Model and library" in app.window.chat.empty_text.text()
    assert not app.window.chat.send.isEnabled()


def test_the_bundled_demo_opens_by_default_and_says_so(qtbot, settings, tmp_path, llama_dir, llama_adapters,
                                                        router_path, monkeypatch):
    demo = tmp_path / "demo"
    (demo / "adapters").mkdir(parents=True)
    (demo / "model").symlink_to(llama_dir)
    for name, path in llama_adapters.items():  # each with router examples, as the demo's adapters have
        shutil.copytree(path, demo / "adapters" / name)
        (demo / "adapters" / name / "examples.txt").write_text(
            "".join(f"{name} task {i}: do the {name} thing\n" for i in range(8)), encoding="utf-8")
    for src in (router_path, router_path.with_suffix(".json")):
        (demo / src.name).symlink_to(src)
    (demo / "tasks").mkdir()
    (demo / "tasks" / "alpha.jsonl").write_text('{"prompt": "Reverse the word \'garden\'.", "response": "nedrag"}\n')
    monkeypatch.setattr(loading, "DEMO_DIR", demo)
    monkeypatch.setattr(paths, "DEMO_DIR", demo)
    monkeypatch.setattr(loading, "demo_available", lambda: True)
    monkeypatch.setattr(paths, "demo_available", lambda: True)
    gui.application()  # as `switchboard` starts: the app's name and icon
    app = make_app(qtbot, settings)
    window = app.window
    app.open_default_model()
    wait_idle(qtbot, app)
    assert app.model is not None, window.chat.empty_error.text()
    assert app.demo and app.model.demo and app.model.router and len(app.model.adapters) == 4
    # first start: the demo's adapters and a router trained on their examples are now the user's library
    library = Library(tmp_path / "no-library")
    assert [a.name for a in library.list()] == sorted(llama_adapters) and library.router_info()["matches"]
    assert "Installed the demo's 4 adapters into your library" in window.notice.text()
    assert "demo model" in window.windowTitle() and "demo model" in window.status_model.text()
    assert {(s.width(), s.height()) for s in window.windowIcon().availableSizes()} >= {(16, 16), (256, 256)}
    # the input suggests what the demo can answer
    hint = window.chat.input.placeholderText()
    assert hint == "Demo model: it knows a few small tasks. Try: Reverse the word 'garden'."
    # an export names the demo model as the window does, not by its folder's name
    app.conv.add_user("Reverse the word 'garden'.")
    target = tmp_path / "demo-chat.md"
    monkeypatch.setattr(main_window.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "Markdown (*.md)"))
    app.export_conversation()
    assert "Model: `demo model`" in target.read_text(encoding="utf-8")


def test_export_writes_the_conversation_with_its_routing(qtbot, app, tmp_path, monkeypatch):
    app.window.controls.max_new_tokens.setValue(20)
    send(qtbot, app)
    qtbot.waitUntil(lambda: not app.generating, timeout=60_000)
    target = tmp_path / "chat"
    monkeypatch.setattr(main_window.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(target), "JSON (*.json)"))
    app.export_conversation()
    data = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert data["turns"][1]["content"] == app.conv.turns[1].text
    assert [s["selected"] for s in data["turns"][1]["sentences"]] == [s.selected for s in app.conv.turns[1].sentences]
    assert data["turns"][1]["settings"]["max_new_tokens"] == 20


def shown_libraries(app):
    return [w for w in app.window.findChildren(LibraryWindow) if w.isVisible()]


def test_the_library_menu_opens_the_adapter_library(qtbot, settings, tmp_path, monkeypatch):
    app = make_app(qtbot, settings)
    window = app.window
    assert "Library" in [a.text().replace("&", "") for a in window.menuBar().actions()]
    window.library_action.trigger()
    library_window = shown_libraries(app)[0]
    assert str(tmp_path / "no-library") in library_window.windowTitle()
    library_window.close()

    def choose_library(dialog):
        dialog.library_dir.setText(str(tmp_path / "mine"))
        return 1

    monkeypatch.setattr(main_window.SettingsDialog, "exec", choose_library)
    app.open_settings()  # Settings > Model and library: another library folder, saved
    assert settings.library_dir == str(tmp_path / "mine") and app.library_dir() == tmp_path / "mine"
    wait_idle(qtbot, app)
    window.library_action.trigger()
    shown = shown_libraries(app)
    assert len(shown) == 1 and str(tmp_path / "mine") in shown[0].windowTitle()
    app.library_override = str(tmp_path / "for-this-run")  # switchboard --library DIR
    assert app.library_dir() == tmp_path / "for-this-run"

    # while the open library runs a job, its window stays (the job's results must reach it) and the status says so
    monkeypatch.setattr(LibraryController, "busy", property(lambda self: True))
    window.library_action.trigger()
    shown = shown_libraries(app)
    assert len(shown) == 1 and str(tmp_path / "mine") in shown[0].windowTitle()
    assert "when the running import or retrain finishes" in window.statusBar().currentMessage()


def test_signals_deliver_events_and_results_in_the_window_thread(qtbot, llama_dir, tmp_path):
    signals = WorkerSignals()
    worker = EngineWorker(signals.deliver)
    worker.start()
    try:
        seen, ended = [], []
        signals.progress.connect(lambda p: seen.append((threading.current_thread(), p)))
        signals.model.connect(lambda m: seen.append((threading.current_thread(), m)))
        signals.watch(worker.load_model(str(llama_dir), device="cpu"), ended.append)
        signals.watch(worker.load_model(str(tmp_path / "missing")), ended.append, lambda m: ended.append(("failed", m)))
        qtbot.waitUntil(lambda: len(ended) == 2, timeout=60_000)
    finally:
        worker.stop()
    assert ended[0].refused == [] and ended[1][0] == "failed" and "missing" in ended[1][1]
    assert all(thread is threading.main_thread() for thread, _ in seen)
    kinds = [type(e).__name__ for _, e in seen]
    assert kinds[:2] == ["Progress", "ModelChanged"] and seen[1][1].info.model_name == llama_dir.name
    assert kinds[-1] == "ModelChanged" and seen[-1][1].info is None


# Opens the app on a missing model folder, then Settings > Model and library with another missing one, then
# File > Quit, all through the real widgets and the Settings dialog's own event loop.
QUIT_AFTER_FAILED_LOADS = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QDialog, QDialogButtonBox, QLabel, QLineEdit, QMainWindow
import app.gui

first, second = sys.argv[1:]
qapp = QApplication(["switchboard"])

def window():
    return next(w for w in QApplication.topLevelWidgets() if isinstance(w, QMainWindow))

def trigger(text):
    next(a for a in window().findChildren(QAction) if a.text().replace("&", "").startswith(text)).trigger()

def load_failed(name):
    return any(label.objectName() == "emptyError" and name in label.text() for label in window().findChildren(QLabel))

def fill_settings():
    dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog) and w.isVisible())
    dialog.findChild(QLineEdit, "modelDir").setText(second)
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok).click()

def when(condition, then):
    timer = QTimer(qapp, interval=20)
    timer.timeout.connect(lambda: condition() and (timer.stop(), then()))
    timer.start()

def open_settings():
    QTimer.singleShot(100, fill_settings)
    trigger("Model and library")

when(lambda: load_failed(first), open_settings)
when(lambda: load_failed(second), lambda: trigger("Quit"))
sys.exit(app.gui.main(["--model", first]))
"""


@pytest.mark.slow
def test_quit_after_a_failed_model_load_exits_cleanly(tmp_path):
    """It crashed ('QObject: shared QObject was deleted directly', then SIGSEGV or SIGABRT) at exit."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run([sys.executable, "-c", QUIT_AFTER_FAILED_LOADS, str(tmp_path / "missing-1"),
                          str(tmp_path / "missing-2")], env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "QObject" not in run.stderr
