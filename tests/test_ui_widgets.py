"""Widgets on their own (no engine): tinted Markdown, routing chart, timeline, controls, input box, export."""
import json
import sys

import pytest
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette, QTextDocument, QWheelEvent
from PySide6.QtWidgets import QApplication, QPushButton, QToolButton

from app import about, export
from app.footer import footer
from app.settings import APPEARANCES, DEVICES, DTYPES, QUANTIZE, ROUTING_CONTEXTS
from app.conversation import Conversation
from engine.events import BASE, RoutingEvent
from engine.generation import GenerationSettings
from ui import colors, settings_dialog, theme, tinted_markdown
from ui.about_dialog import AboutDialog
from ui.chat_pane import ChatPane, InputBox
from ui.colors import adapter_color
from ui.controls import Controls
from ui.main_window import MainWindow
from ui.routing_chart import ROW_PX, RoutingChart
from ui.settings_dialog import SettingsDialog
from ui.timeline import Timeline


def ids_by_char(doc):
    text = doc.toPlainText()
    return text, [tinted_markdown.sentence_at(doc, p) for p in range(len(text))]


def test_markdown_keeps_structure_and_every_sentence_keeps_its_characters(qapp):
    sentences = ["Here is **bold**.", " Next one!\n", "```python\n", "x = 1\n", "```\n", "- item one.\n",
                 "- item two\n", "# Title\n", "End."]
    doc = QTextDocument()
    tinted_markdown.render(doc, [(s, QColor(200, 0, 0, 60), 10 + i) for i, s in enumerate(sentences)])
    text, ids = ids_by_char(doc)
    assert "\ue000" not in text and "**" not in text and "```" not in text and "- item" not in text
    md = doc.toMarkdown()
    assert "**bold**" in md and "```python" in md and "- item one." in md and "# Title" in md
    # the characters of each visible sentence carry that sentence's id
    for i, s in enumerate(sentences):
        word = {0: "bold", 1: "Next one", 3: "x = 1", 5: "item one", 6: "item two", 7: "Title", 8: "End"}.get(i)
        if word:
            start = text.index(word)
            assert set(ids[start:start + len(word)]) == {10 + i}, (i, word)
    code = doc.findBlock(text.index("x = 1"))
    assert code.blockFormat().background().color() == QColor(theme.current().code_back)


def test_markdown_keeps_a_replys_lines(qapp):
    """A line break inside a paragraph stays one (a two-task prompt is answered in two lines; Markdown alone would
    join them with a space); code keeps its lines as they are, with no trailing spaces added."""
    doc = QTextDocument()
    tinted_markdown.render(doc, [("nedrag\n", None, 0), ("47000 meters\n", None, 1),
                                 ("```\na = 1\nb = 2\n```", None, 2)])
    text, ids = ids_by_char(doc)
    assert text.startswith("nedrag\n47000 meters\n") and text.endswith("a = 1\nb = 2"), repr(text)
    assert set(ids[:6]) == {0} and set(ids[7:19]) == {1}


def test_markdown_tint_colours_each_sentence(qapp):
    doc = QTextDocument()
    tinted_markdown.render(doc, [("Alpha one. ", QColor("#ff0000"), 0), ("Beta two.", None, 1)])
    text = doc.toPlainText()
    c = doc.find("one")
    assert c.charFormat().background().color() == QColor("#ff0000")
    assert c.charFormat().background().style() != Qt.NoBrush
    assert doc.find("two").charFormat().background().style() == Qt.NoBrush
    assert tinted_markdown.sentence_at(doc, len(text) + 5) is None


def test_adapter_colours_are_stable_and_distinct_within_a_bank():
    names = [f"adapter-{i}" for i in range(20)]
    colors.assign(names)
    assert len({adapter_color(n).name() for n in names}) == 20  # the hash alone would collide
    third = adapter_color("adapter-3")
    colors.assign(list(reversed(names)))
    assert adapter_color("adapter-3") == third  # the loading order does not matter
    colors.assign([])
    assert adapter_color("math") == adapter_color("math")


def test_chart_bars_follow_routing_in_place(qtbot):
    chart = RoutingChart()
    qtbot.addWidget(chart)
    chart.resize(400, 500)
    probs = {"a": 0.1, "b": 0.6, "c": 0.3}
    chart.set_routing(probs, {"b": 0.6 / 0.9, "c": 0.3 / 0.9}, 0.8)
    assert chart.bar_values() == pytest.approx(probs)
    assert chart._names == ["b", "c", "a"]  # kept first, by probability
    assert chart.cut.isVisible() and chart.cut.value() == 1.5
    labels = [lb.toPlainText().strip() for lb in chart._labels if lb.isVisible()]
    assert labels == ["0.67", "0.33"]
    items_before = len(chart.plot.getPlotItem().items)
    for i in range(50):  # updates reuse the same items
        chart.set_routing({"a": 0.5, "b": 0.25, "c": 0.25}, {"a": 1.0}, 0.5)
    assert len(chart.plot.getPlotItem().items) == items_before
    assert chart.bar_values() == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.25})
    assert [lb.isVisible() for lb in chart._labels] == [True, False]


def test_chart_stays_readable_with_many_adapters(qtbot):
    chart = RoutingChart()
    qtbot.addWidget(chart)
    chart.resize(400, 500)
    chart.show()
    names = [f"adapter-number-{i:03d}-with-a-very-long-name" for i in range(150)]
    probs = {n: (i + 1) / (150 * 151 / 2) for i, n in enumerate(names)}
    chart.set_routing(probs, {names[-1]: 1.0}, 0.1)
    assert len(chart.bar_values()) == 150
    rows = chart.visible_rows()
    assert chart.plot.height() / rows >= ROW_PX[0]  # rows keep a readable height; the rest scroll
    assert chart.scroll.isVisible() and chart.scroll.maximum() == 150 - rows
    ticks = chart.plot.getAxis("left")._tickLevels[0]
    assert len(ticks) == 150 and all(len(label) <= 24 for _, label in ticks)
    top = chart.plot.getViewBox().viewRange()[1]
    assert top == pytest.approx([-0.5, rows - 0.5])  # the most probable adapters first
    viewport = chart.plot.viewport()
    wheel = QWheelEvent(QPointF(50, 50), QPointF(viewport.mapToGlobal(QPoint(50, 50))), QPoint(0, 0),
                        QPoint(0, -120), Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(viewport, wheel)  # one notch down: three rows
    assert chart.scroll.value() == 3
    assert chart.plot.getViewBox().viewRange()[1] == pytest.approx([2.5, rows + 2.5])


def test_chart_without_router_shows_the_fixed_mix(qtbot):
    chart = RoutingChart()
    qtbot.addWidget(chart)
    chart.set_routing({}, {"pinned": 1.0}, 0.8)
    assert chart.bar_values() == {"pinned": 1.0} and not chart.cut.isVisible()


def test_the_base_model_is_a_bar_in_the_chart_and_a_segment_in_the_timeline(qtbot):
    """Abstention: the router's base-model class has a bar of its own, and its share of a mix is drawn in the base
    model's grey, in the chart, the timeline and the sentence tint."""
    assert colors.BASE_NAME == BASE  # ui imports no engine: the name is written twice, and checked here
    chart = RoutingChart()
    qtbot.addWidget(chart)
    probs = {"a": 0.3, "b": 0.1, BASE: 0.6}
    chart.set_routing(probs, {BASE: 0.6 / 0.9, "a": 0.3 / 0.9}, 0.8)
    assert chart._names == [BASE, "a", "b"] and chart.bar_values() == pytest.approx(probs)
    assert chart.plot.getAxis("left")._tickLevels[0][0] == (0, BASE)
    grey = colors.base_brush().color()
    assert chart.bars.opts["brushes"][0].color() == grey and colors.tint(BASE).rgb() == grey.rgb()
    assert chart.bars.opts["brushes"][1].color() == adapter_color("a") != grey
    timeline = Timeline()
    qtbot.addWidget(timeline)
    timeline.set_sentences([{"a": 0.25, BASE: 0.75}, {BASE: 1.0}], [0])
    assert [b.color() for b in timeline.segments.opts["brushes"]] == [grey, adapter_color("a"), grey]
    assert timeline.segments.opts["height"].tolist() == pytest.approx([0.75, 0.25, 1.0])


def test_timeline_stacks_one_bar_per_sentence_and_reports_clicks(qtbot):
    timeline = Timeline()
    qtbot.addWidget(timeline)
    timeline.resize(500, 200)
    timeline.show()
    mixes = [{"a": 0.7, "b": 0.3}, {}, {"c": 1.0}]
    timeline.set_sentences(mixes, [0, 2])
    assert timeline.count() == 3
    x, y0, h = (timeline.segments.opts[k] for k in ("x", "y0", "height"))
    assert x.tolist() == [0, 0, 1, 2] and y0.tolist() == pytest.approx([0, 0.7, 0, 0])
    assert h.tolist() == pytest.approx([0.7, 0.3, 1.0, 1.0])  # the base-model sentence is one full grey bar
    assert timeline.separators.opts["x"].tolist() == [1.5]
    target = timeline.plot.getViewBox().mapViewToScene(QPointF(2, 0.5))  # the middle of the third bar
    with qtbot.waitSignal(timeline.sentenceClicked) as blocker:
        qtbot.mouseClick(timeline.plot.viewport(), Qt.LeftButton, pos=timeline.plot.mapFromScene(target))
    assert blocker.args == [2]
    timeline.set_current(2)
    assert timeline.current.isVisible() and timeline.current.opts["x"] == [2]


def test_controls_pin_and_mute_exclude_each_other(qtbot):
    controls = Controls()
    qtbot.addWidget(controls)
    controls.set_values(GenerationSettings(top_p=0.7, max_adapters=2, temperature=0.5, max_new_tokens=64))
    controls.set_adapters(["a", "b"])
    controls.table.item(0, 1).setCheckState(Qt.Checked)   # pin a
    controls.table.item(1, 2).setCheckState(Qt.Checked)   # mute b
    controls.table.item(0, 2).setCheckState(Qt.Checked)   # mute a: unpins it
    kw = controls.values()
    assert kw == {"top_p": 0.7, "max_adapters": 2, "temperature": 0.5, "top_k": 0, "sample_top_p": 1.0,
                  "repetition_penalty": 1.0, "max_new_tokens": 64, "pinned": (), "muted": ("a", "b")}
    controls.set_adapters(["b", "c"])  # b keeps its mute; a is gone
    assert controls.values()["muted"] == ("b",)
    controls.max_adapters.setValue(0)
    assert controls.values()["max_adapters"] is None


def test_enter_sends_and_shift_enter_adds_a_newline(qtbot):
    box = InputBox()
    qtbot.addWidget(box)
    qtbot.keyClicks(box, "hello")
    qtbot.keyClick(box, Qt.Key_Return, Qt.ShiftModifier)
    assert box.toPlainText() == "hello\n"
    with qtbot.waitSignal(box.submitted, timeout=1000):
        qtbot.keyClick(box, Qt.Key_Return)
    assert box.toPlainText() == "hello\n"


def conversation():
    conv = Conversation()
    conv.add_user("Add 2 and 3.")
    conv.start_assistant(GenerationSettings(top_p=0.8))
    conv.on_routing(RoutingEvent(0, {"math": 0.9, "code": 0.1}, {"math": 1.0}, 0.5))
    conv.on_tokens("It is 5.", True)
    conv.on_routing(RoutingEvent(1, {"math": 0.4, "code": 0.6}, {"code": 1.0}, 0.4))
    conv.on_tokens(" Done | ok", False)
    conv.finish({"tokens": 6, "tokens_per_s": 12.0, "stop_reason": "eos"})
    return conv


def test_conversation_splits_sentences_by_routing_and_sentence_end():
    conv = conversation()
    reply = conv.turns[1]
    assert [s.text for s in reply.sentences] == ["It is 5.", " Done | ok"]
    assert [s.leader for s in reply.sentences] == ["math", "code"]
    assert conv.messages() == [{"role": "user", "content": "Add 2 and 3."},
                               {"role": "assistant", "content": "It is 5. Done | ok"}]
    conv.start_assistant(GenerationSettings())
    conv.on_tokens("No router.", True)  # no routing events: sentences still split at sentence ends
    conv.on_tokens(" Second", False)
    assert [s.text for s in conv.turns[-1].sentences] == ["No router.", " Second"]
    assert len(conv.routed_sentences()) == 4
    # the numbering the timeline, chat pane and routing chart share
    assert conv.first_sentence(2) == 2 and conv.where(3) == (2, 2, 2) and conv.where(1) == (1, 1, 2)
    assert conv.timeline() == ([{"math": 1.0}, {"code": 1.0}, {}, {}], [0, 2])
    conv.turns.pop()
    conv.truncate(1)  # regenerating reply 1 drops it (and all after it) and answers the user text again
    assert conv.messages()[-1]["content"] == "Add 2 and 3." and len(conv.turns) == 1


def test_export_json_and_markdown(tmp_path):
    conv = conversation()
    data = json.loads(export.save(conv, tmp_path / "c.json", model="tiny").read_text(encoding="utf-8"))
    assert data["model"] == "tiny"
    assert data["turns"][1]["sentences"][1] == {"text": " Done | ok", "probs": {"math": 0.4, "code": 0.6},
                                                "selected": {"code": 1.0}, "routing_ms": 0.4}
    assert data["turns"][1]["settings"]["top_p"] == 0.8
    md = export.save(conv, tmp_path / "c.md").read_text(encoding="utf-8")
    assert "| 1 | It is 5. | math 1.00 |" in md and "| 2 | Done \\| ok | code 1.00 |" in md


def test_the_qt_binding_does_not_drop_references_to_none(qapp):
    """PySide6 6.12.0 on Python < 3.12 returns None from void methods without a reference: every call drops one,
    and the app dies with 'Fatal Python error: none_dealloc' within one long streamed reply. Pin PySide6 < 6.12
    there (Python >= 3.12 makes None immortal, so it is unaffected)."""
    color = QColor("#123456")
    before = sys.getrefcount(None)
    for _ in range(1000):
        color.setAlpha(10)  # a void method
    assert sys.getrefcount(None) >= before


def test_library_table_updates_rows_in_place_and_resets_only_when_names_change(qapp):
    from pathlib import Path

    from app.library import AdapterInfo
    from ui.library.adapter_table import NAME, AdapterTableModel

    def info(name, n_examples=0):
        return AdapterInfo(name, Path(name), None, True, None, None, 8, ["q_proj"], 1000, n_examples, None)

    model = AdapterTableModel()
    seen = []
    model.modelReset.connect(lambda: seen.append("reset"))
    model.rowsInserted.connect(lambda _p, first, last: seen.append(("inserted", first, last)))
    model.dataChanged.connect(lambda a, b: seen.append(("changed", a.row(), b.row())))
    model.set_rows([info("a"), info("b")], None)
    model.set_rows([info("a"), info("b", 30), info("c"), info("d")], None)  # an import: b edited, c and d added
    assert seen == [("inserted", 0, 1), ("changed", 1, 1), ("inserted", 2, 3)]
    assert [model.index(i, NAME).data() for i in range(4)] == ["a", "b", "c", "d"]
    assert model.rows[1].n_examples == 30
    seen.clear()
    model.set_rows([info("a"), info("c"), info("d")], None)  # b removed: the names before the end changed
    assert seen == ["reset"] and model.rowCount() == 3
    seen.clear()
    model.set_rows([info("a"), info("c"), info("d")], ["a"])  # a model loaded: every row's "loaded" state
    assert seen == ["reset"]


def test_long_lines_wrap_within_the_pane(qtbot):
    """A long error under a reply, or a long unbroken prompt, made every message wider than the pane: the text and
    the Copy buttons were cut off."""
    pane = ChatPane()
    qtbot.addWidget(pane)
    pane.resize(600, 700)
    pane.show()
    pane.show_chat()
    pane.show_turn(0, "user", [("x" * 2000, None, -1)])
    pane.show_turn(1, "assistant", [("Short reply.", None, 0)],
                   "Error: the last message alone needs 2100 tokens but only 230 fit in the context (with room for "
                   "the reply): shorten it or lower max new tokens " + "y" * 400)
    viewport = pane.scroll.viewport()
    qtbot.waitUntil(lambda: all(m.width() <= viewport.width() for m in pane.messages))
    for message in pane.messages:
        copy = message.findChild(QToolButton)
        right = copy.mapTo(viewport, QPoint(copy.width(), 0)).x()
        assert 0 < right <= viewport.width()  # the Copy button is in view
        assert message.body.width() <= viewport.width()
    footer = pane.messages[1].footer
    assert footer.isVisible() and footer.width() <= viewport.width() and footer.height() > 2 * footer.fontMetrics().height()


def test_the_input_hint_shows_without_clicking_into_the_input(qtbot):
    """The demo's example prompts appeared only once the input was clicked: Qt does not repaint a placeholder
    whose text changes."""
    pane = ChatPane()
    qtbot.addWidget(pane)
    pane.show()
    pane.show_chat()
    qtbot.waitExposed(pane)
    painted = []

    class Paints(QObject):
        def eventFilter(self, _obj, event):
            if event.type() == QEvent.Paint:
                painted.append(1)
            return False

    watcher = Paints()
    pane.input.viewport().installEventFilter(watcher)
    pane.set_input_hint("Demo model: it knows a few small tasks. Try: Reverse the word 'garden'.")
    qtbot.waitUntil(lambda: bool(painted), timeout=2000)
    assert pane.input.placeholderText().startswith("Demo model")


def test_the_main_window_keeps_a_readable_minimum_size(qtbot):
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.resize(400, 300)  # the Generation form was unreadable here
    qtbot.waitUntil(lambda: window.width() >= 780 and window.height() >= 520)
    boxes = (window.controls.top_p, window.controls.temperature, window.controls.max_new_tokens)
    assert all(box.height() >= box.minimumSizeHint().height() for box in boxes)  # the form scrolls, not squeezes
    assert window.chat.input.isVisible() and window.chat.send.width() >= window.chat.send.sizeHint().width() - 1


def test_reply_footers_count_in_singular_and_plural_and_say_why_a_reply_is_empty():
    assert footer({"tokens": 1, "tokens_per_s": 9.0, "stop_reason": "eos"}, "Hi") == "1 token · 9.0 tok/s"
    assert footer({"tokens": 2, "stop_reason": "length"}, "Hi there") == "2 tokens · cut off at max new tokens"
    assert footer({"tokens": 0, "stop_reason": "eos"}, "").startswith("Empty reply: the model ended its turn")
    assert footer({"tokens": 3, "stop_reason": "eos"}, " \n").startswith("Empty reply: 3 tokens, none of them")
    assert footer({"tokens": 5, "stop_reason": "eos", "dropped_turns": 1}, "x").endswith(
        "1 earlier message left out of the prompt: the conversation is longer than the model's context")
    assert footer({}, "") == "generating…"


def test_dark_mode_follows_the_desktop_unless_chosen(qtbot, monkeypatch):
    app = QApplication.instance()
    scheme = [Qt.ColorScheme.Light]
    monkeypatch.setattr(theme, "desktop_scheme", lambda: scheme[0])  # offscreen Qt has no desktop to ask
    redrawn = []
    theme.notifier.changed.connect(lambda: redrawn.append(theme.current().dark))
    chart = RoutingChart()
    qtbot.addWidget(chart)
    try:
        theme.use("system")
        assert not theme.current().dark
        scheme[0] = Qt.ColorScheme.Dark  # the desktop turns dark: the app follows it
        QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
        assert theme.current().dark and redrawn[-1] is True
        assert app.palette().color(QPalette.Window).lightness() < 60 and theme.DARK.window in app.styleSheet()
        assert chart.plot.backgroundBrush().color() == QColor(theme.DARK.surface)
        theme.use("light")  # the user's choice wins over the desktop's
        assert not theme.current().dark and app.palette().color(QPalette.Window).lightness() > 200
        QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
        assert not theme.current().dark
    finally:
        theme.use("light")


def test_about_lists_versions_and_the_files_the_app_keeps(qtbot, tmp_path):
    versions = about.versions("6.11.3", "6.11.3")
    names = [name for name, _ in versions]
    assert names[:4] == ["LoRA Switchboard", "torch", "transformers", "PEFT"] and "Python" in names
    dialog = AboutDialog(versions, [("Settings file", str(tmp_path / "s.ini")), ("Log file", str(tmp_path / "l"))])
    qtbot.addWidget(dialog)
    assert "torch: " in dialog.text and f"Log file: {tmp_path / 'l'}" in dialog.text


def test_settings_offer_quantization_and_a_gguf_file(qtbot, tmp_path, monkeypatch):
    values = {"model_dir": "", "library_dir": "", "device": "auto", "dtype": "auto", "quantize": "auto",
              "system_prompt": "", "appearance": "system", "server_enabled": False, "server_host": "127.0.0.1",
              "server_port": 8000, "server_api_key": "", "routing_context": "turn"}
    choices = {"default_library": "lib", "devices": DEVICES, "dtypes": DTYPES, "quantize": QUANTIZE,
               "appearances": APPEARANCES, "routing_contexts": ROUTING_CONTEXTS, "is_loopback": lambda host: host in ("127.0.0.1", "localhost")}
    dialog = SettingsDialog(values, choices)
    qtbot.addWidget(dialog)
    gguf = str(tmp_path / "model.Q4_K_M.gguf")
    monkeypatch.setattr(settings_dialog.QFileDialog, "getOpenFileName", lambda *a, **k: (gguf, "GGUF models"))
    next(b for b in dialog.findChildren(QPushButton) if b.text() == "GGUF file…").click()
    dialog.quantize.setCurrentIndex(dialog.quantize.findData("int8"))
    assert [dialog.quantize.itemData(i) for i in range(dialog.quantize.count())] == list(QUANTIZE)
    assert dialog.values()["model_dir"] == gguf and dialog.values()["quantize"] == "int8"


def test_retrain_summary_says_when_a_head_only_retrain_went_on_as_a_full_one(qtbot):
    from ui.library.retrain_panel import RetrainPanel

    panel = RetrainPanel()
    qtbot.addWidget(panel)
    panel.show_report({"accuracy": 0.98, "mode": "full", "refit_for": {"shout": 0.75},
                       "per_adapter": {"alpha": 1.0, "shout": 1.0}, "base": 1.0, "n_train": 30, "n_heldout": 3,
                       "confusion": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "labels": ["alpha", "shout", BASE]})
    assert panel.summary.text().startswith("Full retrain (a head-only one left shout at 75% held out) · 2 adapters")
