"""Controller: the main window (ui/main_window.py) wired to the engine worker (app/worker.py).

On start it opens the configured model, else the bundled demo (model, adapters, router), else shows an empty
state that explains how to choose a model folder. It owns the conversation (app/conversation.py): streamed
events update it, and the views redraw from it at most once per frame. The Library menu opens the library window
(app/library_controller.py) on the same worker."""
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from engine.generation import GenerationSettings

from . import export, paths
from .conversation import Conversation
from .settings import DEVICES, DTYPES, Settings
from .worker import EngineWorker, ModelInfo
from .worker_signals import WorkerSignals
from ui import colors
from ui.chat_pane import INPUT_HINT
from ui.main_window import MainWindow

NO_MODEL_TEXT = ("LoRA Switchboard needs a local Hugging Face model folder (config.json, safetensors weights, "
                 "tokenizer). Choose one in Settings > Model and library.")
BASE_NOTE = "Base model for this sentence: no router is loaded and no adapter is pinned."
FRAME_MS = 30  # streamed text and routing redraw at most this often (~33 frames/s)
MESSAGE_MS = 15000


class Controller(QObject):
    ready = Signal()         # a model was loaded and warmed up
    loadFailed = Signal(str)  # loading or warming up the model failed (the message is shown)
    replied = Signal()       # a reply ended: finished, stopped or failed

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings
        self.conv = Conversation()
        self.model: ModelInfo | None = None
        self.demo = False                   # the model being opened, or open, is the bundled demo
        self.library_override: str | None = None  # `switchboard --library DIR`: this run only, not saved
        self.library = None                 # the library window's LibraryController, made on first use
        self.generating = False
        self._inspected: int | None = None  # sentence the user clicked; the chart shows it instead of the live one
        self._pending = 0                   # commands run and not yet ended
        self._frame = QTimer(self, singleShot=True, interval=FRAME_MS)
        self._frame.timeout.connect(self._draw_frame)
        self._routing_changed = False

        self.signals = WorkerSignals(self)
        self.worker = EngineWorker(self.signals.deliver)
        self.signals.progress.connect(lambda p: self.window.show_progress(p.message, p.fraction))
        self.signals.model.connect(self._on_model)
        self.signals.routing.connect(self._on_routing)
        self.signals.tokens.connect(self._on_tokens)

        w = self.window = MainWindow()
        w.controls.set_values(settings.generation)
        w.controls.changed.connect(self._save_controls)
        w.chat.sendRequested.connect(self._send)
        w.chat.stopRequested.connect(self.worker.cancel)  # thread-safe: reaches the engine at once
        w.chat.regenerateRequested.connect(self._regenerate)
        w.chat.clearRequested.connect(self._clear)
        w.chat.chooseModelRequested.connect(self.open_settings)
        w.chat.sentenceHovered.connect(lambda sid: self._show_sentence(sid if sid >= 0 else self._inspected))
        w.chat.sentenceClicked.connect(self._inspect)
        w.timeline.sentenceClicked.connect(self._inspect)
        w.exportRequested.connect(self.export_conversation)
        w.settingsRequested.connect(self.open_settings)
        w.libraryRequested.connect(self.open_library)
        w.closing.connect(self._close)
        w.restore_state({name: settings.window_state(name) for name in ("geometry", "main", "panel")})

        self.worker.start()

    def run(self, future, on_done, on_failed=None):
        """Follow a worker command: on_done(result) or on_failed(message) in this thread; the status bar's
        progress ends with the last command. A failure also shows in the status bar."""
        self._pending += 1

        def ended(callback, value):
            self._pending -= 1
            if self._pending == 0:
                self.window.end_progress()
            if callback is not None:
                callback(value)

        def failed(message):
            self.window.statusBar().showMessage(message, MESSAGE_MS)
            ended(on_failed, message)

        self.signals.watch(future, lambda result: ended(on_done, result), failed)

    @property
    def busy(self) -> bool:
        return self._pending > 0

    # ---- model ----
    def open_default_model(self, model_dir: str | None = None):
        """Open `model_dir`, else the configured model, else the bundled demo, else show the empty state."""
        model_dir = model_dir or self.settings.model_dir or None
        if model_dir is None and not paths.demo_available():
            self.window.chat.show_empty("No model yet", NO_MODEL_TEXT)
            return
        library = self.library_dir()  # the user's adapters (the demo brings its own)
        self.model, self.demo = None, model_dir is None
        self.window.controls.set_adapters([])
        self._update_status()
        self.window.chat.show_empty("Loading model…", model_dir or "the bundled demo model")
        future = self.worker.load_model(model_dir, self.settings.device, self.settings.dtype,
                                        library_dir=str(library) if model_dir and library.is_dir() else None)
        self.run(future, self._loaded, self._load_failed)

    def library_dir(self) -> Path:
        """The adapter library folder: --library, else the setting, else the platform's default."""
        return Path(self.library_override or self.settings.library_dir or paths.default_library_dir()).expanduser()

    def open_settings(self):
        current = {key: getattr(self.settings, key) for key in ("model_dir", "library_dir", "device", "dtype")}
        values = self.window.ask_settings(current, str(paths.default_library_dir()), DEVICES, DTYPES)
        if values is None:
            return
        if values["library_dir"] != self.settings.library_dir:
            self.library_override = None  # a library chosen in Settings replaces the one --library gave
        for key, value in values.items():
            setattr(self.settings, key, value)
        if values != current or self.model is None:
            self.worker.cancel()
            self.open_default_model()

    def _on_model(self, changed):
        self.model = changed.info
        if self.model is not None:
            colors.assign(list(self.model.adapters))
        self.window.controls.set_adapters(list(self.model.adapters) if self.model else [])
        self._update_status()

    def _loaded(self, loaded):
        for adapter, color in loaded.colors.items():
            colors.choose(adapter, color)
        if self.model is not None:
            self.window.controls.set_adapters(list(self.model.adapters))  # swatches in the chosen colours
        chat = self.window.chat
        chat.show_chat()
        chat.input.setPlaceholderText("Demo model: it knows a few small tasks. Try: " + "  ·  ".join(
            paths.demo_examples()) if self.demo else INPUT_HINT)
        for path, reason in loaded.refused:
            self.window.statusBar().showMessage(f"Adapter {path} not loaded: {reason}", MESSAGE_MS)
        self.run(self.worker.warm_up(), lambda _seconds: self.ready.emit(), self.loadFailed.emit)

    def _load_failed(self, message: str):
        self.window.chat.show_empty("Could not load the model", NO_MODEL_TEXT, error=message)
        self._update_status()
        self.loadFailed.emit(message)

    def _update_status(self):
        info = self.model
        name = "demo model" if self.demo else info.model_name if info else "No model"
        status = name
        if info:
            router = "router" if info.router else "no router"
            status = f"{name} · {info.device} · {len(info.adapters)} adapters · {router}"
        self.window.status_model.setText(status)
        self.window.setWindowTitle(f"LoRA Switchboard — {name}" if info or self.demo else "LoRA Switchboard")
        self.window.chat.set_state(self.generating, info is not None)

    # ---- conversation ----
    def _send(self, text: str):
        self.conv.add_user(text)
        self._render_turn(len(self.conv.turns) - 1)
        self._generate()

    def _generate(self):
        settings = GenerationSettings(**self.window.controls.values())
        messages = self.conv.messages()
        self.conv.start_assistant(settings)
        self._inspected = None
        self.window.timeline.set_current(None)
        self.generating = True
        self._render_turn(len(self.conv.turns) - 1)
        self.run(self.worker.generate(messages, settings), lambda done: self._finish_reply(done.stats),
                 lambda message: self._finish_reply({"stop_reason": "error", "error": message}))
        self._update_status()

    def _regenerate(self):
        if self.generating or self.conv.drop_last_reply() is None:
            return
        self.window.chat.truncate(len(self.conv.turns))
        self._refresh_timeline()
        self._generate()

    def _clear(self):
        self.conv = Conversation()
        self._inspected = None
        self.window.chat.truncate(0)
        self._refresh_timeline()
        self.window.timeline.set_current(None)
        self.window.chart.set_routing({}, {}, None)
        self._update_status()

    def _on_routing(self, event):
        self.conv.on_routing(event)
        self.window.status_routing.setText(f"routing {event.latency_ms:.1f} ms")
        self._routing_changed = True
        self._schedule_frame()

    def _on_tokens(self, event):
        self.conv.on_tokens(event.text, event.sentence_end)
        self._schedule_frame()

    def _schedule_frame(self):
        """Streamed events only update the conversation; the views redraw at most once per frame, so the event
        loop stays free however fast the engine streams."""
        if not self._frame.isActive():
            self._frame.start()

    def _draw_frame(self):
        self._frame.stop()
        # the second case: a sentence that started without a routing event (no router)
        if self._routing_changed or self.window.timeline.count() != len(self.conv.routed_sentences()):
            self._routing_changed = False
            self._refresh_timeline()
            if self._inspected is None:
                self._show_sentence(None)
        self._render_turn(len(self.conv.turns) - 1)

    def _finish_reply(self, stats: dict):
        self.conv.finish(stats)
        self.generating = False
        if "tokens_per_s" in stats:
            self.window.status_speed.setText(f"{stats['tokens_per_s']:.1f} tok/s")
        self._draw_frame()  # now, with the footer
        if self._inspected is None:
            self._show_sentence(None)  # without the "live" mark
        self._update_status()
        self.replied.emit()

    def _render_turn(self, index: int):
        turn = self.conv.turns[index]
        if turn.role == "user":
            self.window.show_user(index, turn.text)
            return
        first = self.conv.first_sentence(index)
        self.window.show_reply(index, [(s.text, s.leader, first + i) for i, s in enumerate(turn.sentences)],
                               turn.stats, self._inspected)

    def _refresh_timeline(self):
        self.window.timeline.set_sentences(*self.conv.timeline())

    # ---- inspecting one sentence ----
    def _show_sentence(self, sid: int | None):
        """Chart the routing of sentence `sid`, or of the newest sentence when None."""
        routed = self.conv.routed_sentences()
        if not routed:
            return
        sid = len(routed) - 1 if sid is None or sid >= len(routed) else sid
        ti, reply, number = self.conv.where(sid)
        live = self.generating and sid == len(routed) - 1
        title = f"Routing · reply {reply}, sentence {number}" + (" · live" if live else "")
        s = routed[sid][2]
        self.window.chart.set_routing(s.probs, s.selected, self.conv.turns[ti].settings.top_p, title, BASE_NOTE)

    def _inspect(self, sid: int):
        old, self._inspected = self._inspected, sid
        routed = self.conv.routed_sentences()
        self.window.timeline.set_current(sid)
        self._show_sentence(sid)
        for turn_index in {routed[i][0] for i in (old, sid) if i is not None and i < len(routed)}:
            self._render_turn(turn_index)
        self.window.chat.scroll_to(routed[sid][0])

    # ---- library, persistence, export, close ----
    def open_library(self, import_menu: bool = False):
        """The library window of library_dir(), made on first use and again when that names another folder
        (after the open one's running job: its results must reach it)."""
        root = self.library_dir()
        if self.library is not None and self.library.root != root:
            if self.library.busy:
                self.window.statusBar().showMessage(f"The library changes to {root} when the running import or "
                                                    "retrain finishes; open it again then.", MESSAGE_MS)
            else:
                self.library.close()
                self.library = None
        if self.library is None:
            from .library_controller import LibraryController  # imports torch (seconds): not at start-up

            self.library = LibraryController(root, self, self.window)
        self.library.show(import_menu)

    def _save_controls(self):
        self.settings.generation = GenerationSettings(**self.window.controls.values())

    def export_conversation(self):
        path = self.window.ask_export_path()
        if path:
            saved = export.save(self.conv, path, self.model.model_name if self.model else "")
            self.window.statusBar().showMessage(f"Exported to {saved}", 8000)

    def _close(self):
        for name, state in self.window.save_state().items():
            self.settings.set_window_state(name, state)
        self.settings.sync()
        self.worker.stop()  # cancels a running generation and waits for the thread
