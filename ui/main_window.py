"""The main window: chat pane, routing chart, timeline and generation controls, menus and status bar.

A passive view: it draws what it is given (plain Python data) and reports what the user asks for through
signals and the signals of its widgets; app/controller.py connects it to the engine worker."""
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QProgressBar, QSplitter, QVBoxLayout, QWidget

from ui.chat_pane import ChatPane
from ui.colors import tint
from ui.controls import Controls
from ui.routing_chart import RoutingChart
from ui.settings_dialog import SettingsDialog
from ui.style import STYLE_SHEET, configure_pyqtgraph
from ui.timeline import Timeline

INSPECTED_ALPHA = 150  # the sentence shown in the chart gets a stronger tint than the others


class MainWindow(QMainWindow):
    exportRequested = Signal()         # File > Export conversation…
    settingsRequested = Signal()       # Settings > Model and library…
    libraryRequested = Signal(bool)    # Library > Adapter library… (False) or Import adapters… (True)
    closing = Signal()                 # the window is closing: save, stop the engine

    def __init__(self):
        super().__init__()
        configure_pyqtgraph()
        self.chat = ChatPane()
        self.chart = RoutingChart()
        self.timeline = Timeline()
        self.controls = Controls()

        panel = QSplitter(Qt.Vertical, objectName="routingSplitter")
        for w, stretch in ((self.chart, 5), (self.timeline, 2), (self.controls, 3)):
            panel.addWidget(w)
            panel.setStretchFactor(panel.count() - 1, stretch)
        side = QWidget(objectName="routingPanel")
        side.setAttribute(Qt.WA_StyledBackground)
        QVBoxLayout(side).addWidget(panel)
        side.layout().setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Horizontal, objectName="mainSplitter")
        self.splitter.addWidget(self.chat)
        self.splitter.addWidget(side)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.setCentralWidget(self.splitter)
        self._panel = panel

        self._build_menus()
        self.status_model = QLabel("No model")
        self.status_task = QLabel()
        self.status_progress = QProgressBar(maximumWidth=140, maximumHeight=14, textVisible=False)
        self.status_speed = QLabel("– tok/s")
        self.status_routing = QLabel("routing – ms")
        bar = self.statusBar()
        bar.addWidget(self.status_model)
        bar.addWidget(self.status_task)
        bar.addWidget(self.status_progress)
        bar.addPermanentWidget(self.status_speed)
        bar.addPermanentWidget(self.status_routing)
        self.status_progress.hide()

        self.setStyleSheet(STYLE_SHEET)
        self.setWindowTitle("LoRA Switchboard")
        self.resize(1280, 800)
        self.splitter.setSizes([760, 520])
        panel.setSizes([430, 170, 260])  # the chart gets most of the height
        self.chat.show_empty("Starting…", "")

    def _build_menus(self):
        file = self.menuBar().addMenu("&File")
        export_action = QAction("&Export conversation…", self, shortcut=QKeySequence("Ctrl+E"))
        export_action.triggered.connect(self.exportRequested)
        quit_action = QAction("&Quit", self, shortcut=QKeySequence.Quit)
        quit_action.triggered.connect(self.close)
        file.addActions([export_action, quit_action])
        settings = self.menuBar().addMenu("&Settings")
        model_action = QAction("&Model and library…", self, shortcut=QKeySequence("Ctrl+,"))
        model_action.triggered.connect(self.settingsRequested)
        settings.addAction(model_action)
        library = self.menuBar().addMenu("&Library")
        self.library_action = QAction("Adapter &library…", self, shortcut=QKeySequence("Ctrl+L"))
        self.library_action.triggered.connect(lambda: self.libraryRequested.emit(False))
        import_action = QAction("&Import adapters…", self, shortcut=QKeySequence("Ctrl+I"))
        import_action.triggered.connect(lambda: self.libraryRequested.emit(True))
        library.addActions([self.library_action, import_action])

    # ---- drawing ----
    def show_user(self, index: int, text: str):
        self.chat.show_turn(index, "user", [(text, None, -1)])

    def show_reply(self, index: int, sentences: list[tuple[str, str | None, int]], stats: dict,
                   inspected: int | None):
        """Turn `index`: its sentences as (text, leading adapter or None, sentence number), tinted by adapter
        (the inspected one more strongly), and a footer from its stats ({} while it is generated)."""
        shown = []
        for text, leader, sid in sentences:
            color = tint(leader)
            if sid == inspected:
                color.setAlpha(INSPECTED_ALPHA)
            shown.append((text, color, sid))
        self.chat.show_turn(index, "assistant", shown, footer(stats))

    def show_progress(self, message: str, fraction: float):
        """fraction in [0, 1], or -1 when unknown (a busy bar)."""
        self.status_task.setText(message)
        self.status_progress.setRange(0, 0 if fraction < 0 else 100)
        self.status_progress.setValue(int(max(fraction, 0) * 100))
        self.status_progress.setVisible(fraction < 1)

    def end_progress(self):
        self.status_task.setText("")
        self.status_progress.hide()

    # ---- asking ----
    def ask_settings(self, values: dict, default_library: str, devices, dtypes) -> dict | None:
        """Settings > Model and library: `values` (model_dir, library_dir, device, dtype) as the user left them,
        or None when cancelled."""
        dialog = SettingsDialog(values["model_dir"], values["library_dir"], default_library, values["device"],
                                values["dtype"], devices, dtypes, self)
        try:
            return dialog.values() if dialog.exec() else None
        finally:
            dialog.deleteLater()  # one dialog per use: a dialog left as the window's child crashed the app's exit

    def ask_export_path(self) -> str | None:
        path, chosen = QFileDialog.getSaveFileName(self, "Export conversation", "conversation.md",
                                                   "Markdown (*.md);;JSON (*.json)")
        if not path:
            return None
        return path if Path(path).suffix else path + (".json" if chosen.startswith("JSON") else ".md")

    # ---- window state ----
    def save_state(self) -> dict[str, QByteArray]:
        return {"geometry": self.saveGeometry(), "main": self.splitter.saveState(), "panel": self._panel.saveState()}

    def restore_state(self, states: dict):
        """What save_state gave, as the settings store gives it back (None or garbage: left as it is)."""
        for name, widget in (("geometry", self), ("main", self.splitter), ("panel", self._panel)):
            state = states.get(name)
            if isinstance(state, QByteArray):
                widget.restoreGeometry(state) if widget is self else widget.restoreState(state)

    def closeEvent(self, event):
        self.closing.emit()
        super().closeEvent(event)


def footer(stats: dict) -> str:
    if not stats:
        return "generating…"
    if stats.get("stop_reason") == "error":
        return f"Error: {stats['error']}"
    parts = [f"{stats.get('tokens', 0)} tokens"]
    if "tokens_per_s" in stats:
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if stats.get("stop_reason") in ("cancel", "length"):
        parts.append({"cancel": "stopped", "length": "max tokens reached"}[stats["stop_reason"]])
    return " · ".join(parts)
