"""The library window (pytest-qt, offscreen) with its controller, on a tiny Llama loaded by the real engine
thread: drops with per-item results and refusals, hot-add, rename / enable / colour / remove round trips,
examples editing and probe examples, retrain progress, cancel and the final accuracy and confusion matrix."""
import re
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox
from router_tasks import make_tasks

from app.controller import Controller
from app.library import MIN_EXAMPLES, Library
from app.settings import Settings
from ui import colors
from ui.library import window as library_window
from ui.library.adapter_table import ACCURACY, ENABLED, EXAMPLES, NAME, NAME_ROLE

TASKS = ["gsm8k", "translate_de", "code_questions", "cnn_dailymail"]
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def prompts():
    train, _ = make_tasks(40, 0, seed=0)
    return {name: train[task] for name, task in zip(("alpha", "beta", "gamma", "delta"), TASKS)}


def open_panel(qtbot, tmp_path, llama_dir, library):
    """Open the model with `library` (as the app does with the library of its settings), then the library window
    from the Library menu. -> the window (its controller: `.controller`)."""
    settings = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    settings.device, settings.library_dir = "cpu", str(library.root)
    app = Controller(settings)
    qtbot.addWidget(app.window)  # closed at teardown: closing the window stops the engine thread
    app.open_default_model(str(llama_dir))
    qtbot.waitUntil(lambda: not app.busy, timeout=WAIT_MS)
    app.open_library()
    panel = app.library.window
    panel.controller = app.library
    panel.resize(1200, 720)
    return panel


def wait_jobs(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.controller.busy, timeout=WAIT_MS)


def names(panel):
    return sorted(panel.model.rows[i].name for i in range(panel.model.rowCount()))


def cell(panel, name, column, role=Qt.DisplayRole):
    row = next(i for i, a in enumerate(panel.model.rows) if a.name == name)
    return panel.model.index(row, column).data(role)


def set_cell(panel, name, column, value, role):
    """Edit through the sorted, filtered view's model, as the table does."""
    for r in range(panel.proxy.rowCount()):
        index = panel.proxy.index(r, column)
        if panel.proxy.index(r, NAME).data(NAME_ROLE) == name:
            assert panel.proxy.flags(index) & (Qt.ItemIsEditable | Qt.ItemIsUserCheckable)
            return panel.proxy.setData(index, value, role)
    raise AssertionError(f"{name} not in the table")


def drop(widget, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(widget.rect().center(), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(widget, QDropEvent(QPointF(widget.rect().center()), Qt.CopyAction, mime, Qt.LeftButton,
                                              Qt.NoModifier))


def test_drop_adds_valid_adapters_and_lists_each_refusal(qtbot, tmp_path, llama_dir, llama_adapters, bad):
    drops = tmp_path / "drops"
    for kind in ("corrupt", "pickled", "wide"):
        shutil.copytree(bad[kind], drops / kind)
    shutil.copy(bad["evil"], drops / "evil.zip")
    many = tmp_path / "many"  # a folder of adapters
    for name in ("alpha", "beta"):
        shutil.copytree(llama_adapters[name], many / name)
    library = Library(tmp_path / "library")
    panel = open_panel(qtbot, tmp_path, llama_dir, library)
    assert names(panel) == [] and panel.bank == []
    steps = []
    panel.import_progress.valueChanged.connect(steps.append)

    drop(panel.drop_zone, [many, *(drops / k for k in ("corrupt", "pickled", "wide", "evil.zip"))])
    assert panel.import_progress.isVisible()
    wait_jobs(qtbot, panel)

    items = [panel.results.item(i) for i in range(panel.results.count())]
    by_label = {Path(i.toolTip().split("\n")[0]).name: (i.data(Qt.UserRole), i.text()) for i in items}
    assert {k: ok for k, (ok, _) in by_label.items()} == {"alpha": True, "beta": True, "corrupt": False,
                                                          "pickled": False, "wide": False, "evil.zip": False}
    reasons = {"corrupt": "corrupt or truncated safetensors", "pickled": "pickle-only weights are refused",
               "wide": "[4, 32] but the base layer takes 64 inputs",
               "evil.zip": "'../evil.txt' points outside the archive"}
    for label, reason in reasons.items():
        assert reason in by_label[label][1], by_label[label]
    assert "fits" in by_label["alpha"][1]
    assert panel.results_title.text() == "Import results · 2 added · 4 refused"
    assert steps == [1, 2, 3, 4, 5, 6] and panel.import_progress.maximum() == 6  # progress per item
    assert not panel.import_progress.isVisible()
    # the valid ones are listed, and hot-added to the running engine
    assert names(panel) == ["alpha", "beta"] and panel.bank == ["alpha", "beta"]
    notice = panel.notice.text()
    assert "loaded into" in notice and "The chat routes to them once the router is retrained" in notice
    assert "No router examples for alpha, beta" in panel.retrain.status.text()  # what a retrain needs first
    assert not panel.retrain.retrain_button.isEnabled()
    # zip-slip: nothing written outside the library
    assert not list(tmp_path.parent.rglob("evil.txt"))
    assert sorted(p.name for p in (library.root / "adapters").iterdir()) == ["alpha", "beta"]


def test_rename_enable_colour_remove_round_trip(qtbot, tmp_path, llama_dir, llama_adapters, monkeypatch):
    library = Library(tmp_path / "library")
    library.import_paths([llama_adapters[n] for n in ("alpha", "beta", "gamma")])
    panel = open_panel(qtbot, tmp_path, llama_dir, library)
    assert panel.bank == ["alpha", "beta", "gamma"]

    assert set_cell(panel, "alpha", NAME, "alpha-2", Qt.EditRole)
    wait_jobs(qtbot, panel)
    assert names(panel) == ["alpha-2", "beta", "gamma"] and panel.selected() == "alpha-2"
    assert sorted(panel.bank) == ["alpha-2", "beta", "gamma"]
    assert library.get("alpha-2").source == str(llama_adapters["alpha"])
    set_cell(panel, "beta", NAME, "gamma", Qt.EditRole)  # taken: refused with the reason, nothing changes
    wait_jobs(qtbot, panel)
    assert "already in the library" in panel.notice.text() and panel.notice.kind == "error"
    assert names(panel) == ["alpha-2", "beta", "gamma"]

    set_cell(panel, "beta", ENABLED, Qt.Unchecked.value, Qt.CheckStateRole)
    wait_jobs(qtbot, panel)
    assert not library.get("beta").enabled and "beta" not in panel.bank
    assert cell(panel, "beta", ENABLED, Qt.CheckStateRole) == Qt.Unchecked
    set_cell(panel, "beta", ENABLED, Qt.Checked.value, Qt.CheckStateRole)
    wait_jobs(qtbot, panel)
    assert library.get("beta").enabled and panel.bank[-1] == "beta"

    automatic = colors.adapter_color("gamma").name()
    panel.set_color("gamma", "#123456")
    assert library.get("gamma").color == "#123456"
    assert cell(panel, "gamma", NAME, Qt.DecorationRole).pixmap(14, 14).toImage().pixelColor(7, 7).name() == "#123456"
    assert colors.adapter_color("gamma").name() == "#123456"  # the chat, chart and timeline follow
    panel.set_color("gamma", None)
    assert library.get("gamma").color is None and colors.adapter_color("gamma").name() == automatic

    asked = []
    monkeypatch.setattr(library_window.QMessageBox, "question",
                        lambda *a, **k: asked.append(a[2]) or QMessageBox.Cancel)
    panel.remove("gamma")
    assert names(panel) == ["alpha-2", "beta", "gamma"] and "It is loaded" in asked[0]
    monkeypatch.setattr(library_window.QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    panel.remove("gamma")
    wait_jobs(qtbot, panel)
    assert names(panel) == ["alpha-2", "beta"] and "gamma" not in panel.bank
    assert [a.name for a in Library(library.root).list()] == ["alpha-2", "beta"]
    panel.filter.setText("BET")
    assert panel.proxy.rowCount() == 1 and panel.proxy.index(0, NAME).data() == "beta"


def test_examples_editor_paste_import_flag_and_probe(qtbot, tmp_path, llama_dir, llama_adapters):
    library = Library(tmp_path / "library")
    library.import_paths([llama_adapters["alpha"]])
    panel = open_panel(qtbot, tmp_path, llama_dir, library)
    editor = panel.examples
    panel.select("alpha")
    assert editor.name == "alpha" and "⚠ 0 examples" in editor.count.text()
    assert cell(panel, "alpha", EXAMPLES, Qt.DecorationRole) is not None  # flagged in the table too

    QApplication.clipboard().setText("Add 2 and 3.\n\n  Multiply 4 by 5.  \n")
    editor.paste()
    assert library.examples("alpha") == ["Add 2 and 3.", "Multiply 4 by 5."]
    txt = tmp_path / "more.txt"
    txt.write_text("\n".join(f"Compute {i} plus {i}." for i in range(MIN_EXAMPLES)))
    editor.import_file(str(txt))
    assert len(library.examples("alpha")) == MIN_EXAMPLES + 2 and "⚠" not in editor.count.text()
    assert cell(panel, "alpha", EXAMPLES) == str(MIN_EXAMPLES + 2)
    assert cell(panel, "alpha", EXAMPLES, Qt.DecorationRole) is None
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text('{"prompt": "ok"}\n{"text": 1}\n')
    editor.import_file(str(bad_file))
    assert f"{bad_file}:2" in editor.notice.text() and len(library.examples("alpha")) == MIN_EXAMPLES + 2

    editor.list.item(0).setText("Add 2 and 30.")  # edit in place: saved at once
    assert library.examples("alpha")[0] == "Add 2 and 30."
    editor.list.setCurrentRow(1)
    editor.list.item(1).setSelected(True)
    editor.delete_selected()
    assert "Multiply 4 by 5." not in library.examples("alpha")

    before = library.examples("alpha")
    qtbot.mouseClick(editor.probe_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: editor.probe_dialog is not None and editor.probe_dialog.isVisible(), timeout=WAIT_MS)
    samples = editor.probe_dialog.chosen()
    assert samples and all(s and "\n" not in s for s in samples)
    editor.probe_dialog.list.item(0).setCheckState(Qt.Unchecked)  # review: drop one
    editor.probe_dialog.accept()
    assert library.examples("alpha") == before + samples[1:]


def test_retrain_progress_accuracy_confusion_cancel_and_head_only(qtbot, tmp_path, llama_dir,
                                                                   llama_adapters, prompts):
    library = Library(tmp_path / "library")
    library.import_paths([llama_adapters[n] for n in ("alpha", "beta", "gamma")])
    for n in ("alpha", "beta", "gamma"):
        library.set_examples(n, prompts[n])
    panel = open_panel(qtbot, tmp_path, llama_dir, library)
    retrain = panel.retrain
    panel.tabs.setCurrentWidget(retrain)
    assert "No router yet" in retrain.status.text() and retrain.retrain_button.isEnabled()
    epochs, results = [], []
    retrain.epochDone.connect(lambda *args: epochs.append(args))
    models = panel.controller.app.signals.model
    models.connect(lambda changed: results.append(changed.info))

    with qtbot.waitSignal(retrain.finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(retrain.retrain_button, Qt.LeftButton)
        assert retrain.cancel_button.isVisible() and not retrain.retrain_button.isEnabled()
    report = finished.args[0]
    assert report["mode"] == "full" and len(epochs) == epochs[-1][1] > 1
    assert [e[0] for e in epochs] == list(range(1, len(epochs) + 1))
    assert all(loss > 0 and 0 <= acc <= 1 for _, _, loss, acc in epochs)
    assert retrain.progress.maximum() == len(epochs) and not retrain.progress.isVisible()
    assert retrain.accuracy.text() == f"{report['accuracy']:.1%}" and report["accuracy"] > 0.5
    # rows and columns: the 3 adapters and the base model (the router's class for general chat)
    assert report["labels"][-1] == "base model" and report["base"] is not None
    assert retrain.confusion.shape == (4, 4) and retrain.confusion.sum() == report["n_heldout"]
    assert retrain.image.image.shape == (4, 4) and "3 adapters and the base model" in retrain.summary.text()
    assert retrain.status.text() == "Router retrained (full) and loaded into the model."
    qtbot.waitUntil(lambda: bool(results))
    assert results[-1].router and results[-1].adapters == ("alpha", "beta", "gamma")  # loaded into the engine
    assert re.fullmatch(r"\d+%", cell(panel, "alpha", ACCURACY))
    router = library.router_info()
    assert router["matches"]

    # cancel: the old router stays
    retrain.full.setChecked(True)
    with qtbot.waitSignal(retrain.finished, timeout=WAIT_MS) as cancelled:
        retrain.start()
        retrain.cancel()
    assert cancelled.args[0] is None and "previous router is kept" in retrain.status.text()
    assert library.router_info()["path"] == router["path"]
    retrain.full.setChecked(False)

    # an added adapter: the router is out of date until a head-only retrain
    drop(panel, [llama_adapters["delta"]])  # anywhere on the panel
    wait_jobs(qtbot, panel)
    library.set_examples("delta", prompts["delta"])
    panel.controller.refresh()
    assert "new: delta" in retrain.status.text() and retrain.status.kind == "warn"
    with qtbot.waitSignal(retrain.finished, timeout=WAIT_MS) as head:
        retrain.start()
    assert head.args[0]["mode"] == "head" and retrain.confusion.shape == (5, 5)
    assert library.router_info()["matches"] and results[-1].adapters == ("alpha", "beta", "gamma", "delta")
