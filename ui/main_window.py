"""The main window: wires the chat pane, routing chart, timeline and controls to the engine worker.

On start it opens the configured model, else the bundled demo (model, adapters, router), else shows an empty
state that explains how to choose a model folder. All engine work goes through the EngineWorker thread."""
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QLabel, QMainWindow, QProgressBar, QSplitter, QVBoxLayout, QWidget)

from app import export, paths
from app.icon import app_icon
from app.conversation import Conversation
from app.settings import DEVICES, DTYPES, Settings
from app.worker import EngineWorker
from ui import colors
from ui.chat_pane import INPUT_HINT, ChatPane
from ui.colors import tint
from ui.controls import Controls
from ui.library_panel import install_library_panel
from ui.routing_chart import RoutingChart
from ui.settings_dialog import SettingsDialog
from ui.style import STYLE_SHEET, configure_pyqtgraph
from ui.timeline import Timeline

NO_MODEL_TEXT = ("LoRA Switchboard needs a local Hugging Face model folder (config.json, safetensors weights, "
                 "tokenizer). Choose one in Settings > Model and library.")
BASE_NOTE = "Base model for this sentence: no router is loaded and no adapter is pinned."
INSPECTED_ALPHA = 150  # the sentence shown in the chart gets a stronger tint than the others
FRAME_MS = 30  # streamed text and routing redraw at most this often (~33 frames/s)


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings):
        super().__init__()
        configure_pyqtgraph()
        self.settings = settings
        self.conv = Conversation()
        self.model_info: dict | None = None
        self.demo = False
        self.library_override: str | None = None  # `switchboard --library DIR`: this run only, not saved
        self.generating = False
        self._inspected: int | None = None  # sentence the user clicked; the chart shows it instead of the live one
        self._pending = 0                   # commands submitted and not yet done/failed
        self._frame = QTimer(self, singleShot=True, interval=FRAME_MS)
        self._frame.timeout.connect(self._draw_frame)
        self._routing_changed = False

        self.worker = EngineWorker(self)
        self.worker.progress.connect(self._on_progress)
        self.worker.done.connect(self._on_done)
        self.worker.failed.connect(self._on_failed)
        self.worker.routing.connect(self._on_routing)
        self.worker.tokens.connect(self._on_tokens)
        self.worker.start()

        self.chat = ChatPane()
        self.chart = RoutingChart()
        self.timeline = Timeline()
        self.controls = Controls()
        self.controls.set_values(settings.top_p, settings.max_adapters, settings.temperature,
                                 settings.max_new_tokens)
        self.controls.changed.connect(self._save_controls)
        self.chat.sendRequested.connect(self._send)
        self.chat.stopRequested.connect(self.worker.cancel)  # thread-safe: reaches the engine at once
        self.chat.regenerateRequested.connect(self._regenerate)
        self.chat.clearRequested.connect(self._clear)
        self.chat.chooseModelRequested.connect(self.open_settings)
        self.chat.sentenceHovered.connect(lambda sid: self._show_sentence(sid if sid >= 0 else self._inspected))
        self.chat.sentenceClicked.connect(self._inspect)
        self.timeline.sentenceClicked.connect(self._inspect)

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
        self.library_action = install_library_panel(self, self.worker, self.library_dir)
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
        self.setWindowIcon(app_icon())
        self.resize(1280, 800)
        self.splitter.setSizes([760, 520])
        panel.setSizes([430, 170, 260])  # the chart gets most of the height
        for name, widget in (("geometry", self), ("main", self.splitter), ("panel", self._panel)):
            state = settings.window_state(name)
            if state is not None:
                widget.restoreGeometry(state) if widget is self else widget.restoreState(state)
        self.chat.show_empty("Starting…", "")

    def _build_menus(self):
        file = self.menuBar().addMenu("&File")
        export_action = QAction("&Export conversation…", self, shortcut=QKeySequence("Ctrl+E"))
        export_action.triggered.connect(self.export_conversation)
        quit_action = QAction("&Quit", self, shortcut=QKeySequence.Quit)
        quit_action.triggered.connect(self.close)
        file.addActions([export_action, quit_action])
        settings = self.menuBar().addMenu("&Settings")
        model_action = QAction("&Model and library…", self, shortcut=QKeySequence("Ctrl+,"))
        model_action.triggered.connect(self.open_settings)
        settings.addAction(model_action)

    # ---- model ----
    def open_default_model(self, model_dir: str | None = None):
        """Open `model_dir`, else the configured model, else the bundled demo, else show the empty state."""
        model_dir = model_dir or self.settings.model_dir or None
        if model_dir is None and not paths.demo_available():
            self.chat.show_empty("No model yet", NO_MODEL_TEXT)
            return
        library = self.library_dir()  # the user's adapters (the demo brings its own)
        self.model_info, self.demo = None, model_dir is None
        self.controls.set_adapters([])
        self._update_status()
        self.chat.show_empty("Loading model…", model_dir or "the bundled demo model")
        self._submit("load_model", model_dir=model_dir, device=self.settings.device, dtype=self.settings.dtype,
                     library_dir=str(library) if model_dir and library.is_dir() else None)

    def library_dir(self) -> Path:
        """The adapter library folder: --library, else the setting, else the platform's default."""
        return Path(self.library_override or self.settings.library_dir or paths.default_library_dir()).expanduser()

    def open_settings(self):
        dialog = SettingsDialog(self.settings.model_dir, self.settings.library_dir, str(paths.default_library_dir()),
                                self.settings.device, self.settings.dtype, DEVICES, DTYPES, self)
        if not dialog.exec():
            return
        values = dialog.values()
        changed = values != {key: getattr(self.settings, key) for key in values}
        if values["library_dir"] != self.settings.library_dir:
            self.library_override = None  # a library chosen in Settings replaces the one --library gave
        for key, value in values.items():
            setattr(self.settings, key, value)
        if changed or self.model_info is None:
            self.worker.cancel()
            self.open_default_model()

    # ---- worker ----
    def _submit(self, command: str, /, **kwargs):
        self._pending += 1
        self.worker.submit(command, **kwargs)

    def _on_progress(self, message: str, fraction: float):
        self.status_task.setText(message)
        self.status_progress.setRange(0, 0 if fraction < 0 else 100)
        self.status_progress.setValue(int(max(fraction, 0) * 100))
        self.status_progress.setVisible(fraction < 1)

    def _command_ended(self):
        self._pending -= 1
        if self._pending == 0:
            self.status_task.setText("")
            self.status_progress.hide()

    def _on_done(self, name: str, result):
        self._command_ended()
        if name == "generate":
            self._finish_reply(result)
            return
        if "adapters" in result:
            self.model_info = {**(self.model_info or {}), **result}
            for adapter, color in result.get("colors", {}).items():
                colors.choose(adapter, color)
            colors.assign(result["adapters"])
            self.controls.set_adapters(result["adapters"])
        if name == "load_model":
            self.chat.show_chat()
            self.chat.input.setPlaceholderText(
                "Demo model: it knows a few small tasks. Try: " + "  ·  ".join(paths.demo_examples()) if self.demo
                else INPUT_HINT)
            for path, reason in result["refused"]:
                self.statusBar().showMessage(f"Adapter {path} not loaded: {reason}", 15000)
            self._submit("warm_up")
        self._update_status()

    def _on_failed(self, name: str, message: str):
        self._command_ended()
        if name == "generate":
            self._finish_reply({"stop_reason": "error", "error": message})
        elif name == "load_model":
            self.model_info = None
            self.chat.show_empty("Could not load the model", NO_MODEL_TEXT, error=message)
            self._update_status()
        self.statusBar().showMessage(message, 15000)

    def _update_status(self):
        info = self.model_info
        name = "demo model" if self.demo else info["model_name"] if info else "No model"
        status = name
        if info:
            router = "router" if info["router"] else "no router"
            status = f"{name} · {info['device']} · {len(info['adapters'])} adapters · {router}"
        self.status_model.setText(status)
        self.setWindowTitle(f"LoRA Switchboard — {name}" if info or self.demo else "LoRA Switchboard")
        self.chat.set_state(self.generating, info is not None)

    # ---- conversation ----
    def _send(self, text: str):
        self.conv.add_user(text)
        self._render_turn(len(self.conv.turns) - 1)
        self._generate()

    def _generate(self):
        kwargs = self.controls.generation_kwargs()
        messages = self.conv.messages()
        self.conv.start_assistant(kwargs)
        self._inspected = None
        self.timeline.set_current(None)
        self.generating = True
        self._render_turn(len(self.conv.turns) - 1)
        self._submit("generate", messages=messages, **kwargs)
        self._update_status()

    def _regenerate(self):
        if self.generating or self.conv.drop_last_reply() is None:
            return
        self.chat.truncate(len(self.conv.turns))
        self._refresh_timeline()
        self._generate()

    def _clear(self):
        self.conv = Conversation()
        self._inspected = None
        self.chat.truncate(0)
        self._refresh_timeline()
        self.timeline.set_current(None)
        self.chart.set_routing({}, {}, None)
        self._update_status()

    def _on_routing(self, event: dict):
        self.conv.on_routing(event)
        self.status_routing.setText(f"routing {event['latency_ms']:.1f} ms")
        self._routing_changed = True
        self._schedule_frame()

    def _on_tokens(self, text: str, sentence_end: bool):
        self.conv.on_tokens(text, sentence_end)
        self._schedule_frame()

    def _schedule_frame(self):
        """Streamed events only update the conversation; the views redraw at most once per frame, so the event
        loop stays free however fast the engine streams."""
        if not self._frame.isActive():
            self._frame.start()

    def _draw_frame(self):
        self._frame.stop()
        # the second case: a sentence that started without a routing event (no router)
        if self._routing_changed or self.timeline.count() != len(self.conv.routed_sentences()):
            self._routing_changed = False
            self._refresh_timeline()
            if self._inspected is None:
                self._show_sentence(None)
        self._render_turn(len(self.conv.turns) - 1)

    def _finish_reply(self, stats: dict):
        self.conv.finish(stats)
        self.generating = False
        if "tokens_per_s" in stats:
            self.status_speed.setText(f"{stats['tokens_per_s']:.1f} tok/s")
        self._draw_frame()  # now, with the footer
        if self._inspected is None:
            self._show_sentence(None)  # without the "live" mark
        self._update_status()

    def _render_turn(self, index: int):
        turn = self.conv.turns[index]
        if turn.role == "user":
            self.chat.show_turn(index, "user", [(turn.text, None, -1)])
            return
        first = sum(len(t.sentences) for t in self.conv.turns[:index] if t.role == "assistant")
        sentences = []
        for i, s in enumerate(turn.sentences):
            color = tint(s.leader)
            if first + i == self._inspected:
                color.setAlpha(INSPECTED_ALPHA)
            sentences.append((s.text, color, first + i))
        self.chat.show_turn(index, "assistant", sentences, _footer(turn))

    def _refresh_timeline(self):
        mixes, starts = [], []
        for t in self.conv.turns:
            if t.role == "assistant":
                starts.append(len(mixes))
                mixes += [s.selected for s in t.sentences]
        self.timeline.set_sentences(mixes, starts)

    # ---- inspecting one sentence ----
    def _show_sentence(self, sid: int | None):
        """Chart the routing of sentence `sid`, or of the newest sentence when None."""
        routed = self.conv.routed_sentences()
        if not routed:
            return
        sid = len(routed) - 1 if sid is None or sid >= len(routed) else sid
        ti, si, s = routed[sid]
        reply = sum(1 for t in self.conv.turns[:ti + 1] if t.role == "assistant")
        live = self.generating and sid == len(routed) - 1
        title = f"Routing · reply {reply}, sentence {si + 1}" + (" · live" if live else "")
        self.chart.set_routing(s.probs, s.selected, self.conv.turns[ti].settings.get("top_p"), title, BASE_NOTE)

    def _inspect(self, sid: int):
        old, self._inspected = self._inspected, sid
        routed = self.conv.routed_sentences()
        self.timeline.set_current(sid)
        self._show_sentence(sid)
        for turn_index in {routed[i][0] for i in (old, sid) if i is not None and i < len(routed)}:
            self._render_turn(turn_index)
        self.chat.scroll_to(routed[sid][0])

    # ---- persistence, export, close ----
    def _save_controls(self):
        kw = self.controls.generation_kwargs()
        self.settings.top_p = kw["top_p"]
        self.settings.max_adapters = kw["max_adapters"] or 0
        self.settings.temperature = kw["temperature"]
        self.settings.max_new_tokens = kw["max_new_tokens"]

    def export_conversation(self):
        path, chosen = QFileDialog.getSaveFileName(self, "Export conversation", "conversation.md",
                                                   "Markdown (*.md);;JSON (*.json)")
        if not path:
            return
        suffix = ".json" if chosen.startswith("JSON") else ".md"
        path = path if Path(path).suffix else path + suffix
        saved = export.save(self.conv, path, self.model_info["model_name"] if self.model_info else "")
        self.statusBar().showMessage(f"Exported to {saved}", 8000)

    def closeEvent(self, event):
        self.settings.set_window_state("geometry", self.saveGeometry())
        self.settings.set_window_state("main", self.splitter.saveState())
        self.settings.set_window_state("panel", self._panel.saveState())
        self.settings.sync()
        self.worker.stop()  # cancels a running generation and waits for the thread
        super().closeEvent(event)


def _footer(turn) -> str:
    stats = turn.stats
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
