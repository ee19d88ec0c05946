"""Controller: the main window (ui/main_window.py) wired to the engine worker (app/worker.py).

On start it reopens the conversation changed last (app/conversations_controller.py) and opens the configured
model, else the bundled demo (model, adapters, router; on first start they are installed into the user's library,
app/demo_library.py), else shows an empty state that explains how to choose a
model folder. It owns the open conversation (app/conversation.py): streamed events update it, and the views
redraw from it at most once per frame. A sent message can be edited and sent again, any reply regenerated and a
reply cut off continued; each drops the turns after it. The Library menu opens the library window
(app/library_controller.py) on the same worker; the local server (app/server_controller.py) shares it too."""
import functools
from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QObject, QTimer, Signal, qVersion
from pyqtgraph.util.garbage_collector import GarbageCollector

from engine.generation import GenerationSettings

from . import about, export, paths
from .context_meter import usage
from .conversation import Conversation
from .conversation_store import ConversationStore
from .conversations_controller import ConversationsController
from .footer import footer
from .plural import plural
from .presets import Presets
from .presets_controller import PresetsController
from .server_controller import ServerController
from .settings import APPEARANCES, DEVICES, DTYPES, QUANTIZE, ROUTING_CONTEXTS, Settings
from .worker import EngineWorker, ModelInfo
from .worker_signals import WorkerSignals
from ui import colors, theme
from ui.chat_pane import INPUT_HINT
from ui.main_window import STATES, MainWindow

NO_MODEL_TEXT = ("LoRA Switchboard needs a local Hugging Face model folder (config.json, safetensors weights, "
                 "tokenizer). Choose one in Settings > Model and library.")
BASE_NOTE = "Base model for this sentence: no router is loaded and no adapter is pinned."
FRAME_MS = 30  # streamed text and routing redraw at most this often (~33 frames/s)
MESSAGE_MS = 15000
MODEL_KEYS = {"model_dir", "library_dir", "device", "dtype", "quantize"}
SERVER_KEYS = {"server_enabled", "server_host", "server_port", "server_api_key"}
SETTINGS_KEYS = (*MODEL_KEYS, "system_prompt", "appearance", "routing_context", *SERVER_KEYS)
CONTINUABLE = ("length", "cancel")  # a reply that stopped for these can be continued


@functools.cache
def _collect_in_window_thread() -> GarbageCollector:
    """Python's cycle collector runs in whichever thread allocates, so the engine thread could destroy the window's
    dead Qt objects, which Qt requires in their own thread (a test run deadlocked with the engine thread loading a
    model and the window's thread inside Qt). pyqtgraph's collector turns the automatic one off and collects from
    a timer in this thread instead: once per process."""
    return GarbageCollector(interval=1.0)


class Controller(QObject):
    ready = Signal()         # a model was loaded and warmed up
    loadFailed = Signal(str)  # loading or warming up the model failed (the message is shown)
    replied = Signal()       # a reply ended: finished, stopped or failed

    def __init__(self, settings: Settings):
        super().__init__()
        _collect_in_window_thread()
        self.settings = settings
        theme.use(settings.appearance)
        self.conv = Conversation()
        self.model: ModelInfo | None = None
        self.demo = False                   # the model being opened, or open, is the bundled demo
        self.library_override: str | None = None  # `switchboard --library DIR`: this run only, not saved
        self.library = None                 # the library window's LibraryController, made on first use
        self.generating = False
        self._inspected: int | None = None  # sentence the user clicked; the chart shows it instead of the live one
        self._pending = 0                   # commands run and not yet ended
        self._prompt_tokens: int | None = None  # the open conversation's prompt, for the context meter
        self._frame = QTimer(self, singleShot=True, interval=FRAME_MS)
        self._frame.timeout.connect(self._draw_frame)
        self._routing_changed = False

        self.signals = WorkerSignals(self)
        self.worker = EngineWorker(self.signals.deliver)
        self.signals.progress.connect(self._on_progress)
        self.signals.model.connect(self._on_model)
        self.signals.routing.connect(self._on_routing)
        self.signals.tokens.connect(self._on_tokens)

        w = self.window = MainWindow()
        self.presets = PresetsController(Presets(), w.controls, self._message)
        self.conversations = ConversationsController(ConversationStore(), w.conversations, self._message)
        self.conversations.opened.connect(self._show_conversation)
        self.server = ServerController(settings, self.worker, self.signals, w)
        w.controls.changed.connect(self._controls_changed)
        w.system_prompt.changed.connect(lambda _text: self._conversation_changed())  # typing paused
        w.system_prompt.resetRequested.connect(self._default_system_prompt)
        w.chat.sendRequested.connect(self._send)
        w.chat.stopRequested.connect(self.worker.cancel)  # thread-safe: stops only the window's own reply
        w.chat.editRequested.connect(self._edit)
        w.chat.regenerateRequested.connect(self._regenerate)
        w.chat.continueRequested.connect(self._continue)
        w.chat.clearRequested.connect(self.conversations.new)
        w.chat.chooseModelRequested.connect(self.open_settings)
        w.chat.sentenceHovered.connect(lambda sid: self._show_sentence(sid if sid >= 0 else self._inspected))
        w.chat.sentenceClicked.connect(self._inspect)
        w.timeline.sentenceClicked.connect(self._inspect)
        w.newRequested.connect(self.conversations.new)
        w.exportRequested.connect(self.export_conversation)
        w.settingsRequested.connect(self.open_settings)
        w.libraryRequested.connect(self.open_library)
        w.aboutRequested.connect(self.show_about)
        w.closing.connect(self._close)
        w.themeChanged.connect(self._redraw)
        w.restore_state({name: settings.window_state(name) for name in STATES})

        self.worker.start()
        self.conversations.open_latest()
        self.server.apply()

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
            self._message(message)
            ended(on_failed, message)

        self.signals.watch(future, lambda result: ended(on_done, result), failed)

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def _message(self, text: str):
        self.window.statusBar().showMessage(text, MESSAGE_MS)

    def _on_progress(self, p):
        self.window.show_progress(p.message, p.fraction)
        if p.fraction >= 1 and not self.busy:  # the end of background work (the compile): said, then gone
            self.window.end_progress()
            self._message(p.message)

    # ---- model ----
    def open_default_model(self, model_dir: str | None = None):
        """Open `model_dir`, else the configured model, else the bundled demo, else show the empty state."""
        model_dir = model_dir or self.settings.model_dir or None
        if model_dir is None and not paths.demo_available():
            self.window.chat.show_empty("No model yet", NO_MODEL_TEXT)
            return
        library = self.library_dir()  # the user's adapters; the demo's are installed there on first start
        self.model, self.demo = None, model_dir is None
        self.server.take_engine()
        self.window.controls.set_adapters([])
        self.window.show_notice("")
        self._update_status()
        self.window.chat.show_empty("Loading model…", model_dir or "the bundled demo model")
        future = self.worker.load_model(model_dir, self.settings.device, self.settings.dtype,
                                        library_dir=str(library) if model_dir is None or library.is_dir() else None,
                                        quantize=self.settings.quantize)
        self.run(future, self._loaded, self._load_failed)

    def library_dir(self) -> Path:
        """The adapter library folder: --library, else the setting, else the platform's default."""
        return Path(self.library_override or self.settings.library_dir or paths.default_library_dir()).expanduser()

    def open_settings(self, page: int = 0):
        current = {key: getattr(self.settings, key) for key in SETTINGS_KEYS}
        values = self.window.ask_settings(current, {"default_library": str(paths.default_library_dir()),
                                                    "devices": DEVICES, "dtypes": DTYPES,
                                                    "quantize": QUANTIZE, "appearances": APPEARANCES,
                                                    "routing_contexts": ROUTING_CONTEXTS,
                                                    "is_loopback": _is_loopback}, page)
        if values is None:
            return
        if values["library_dir"] != self.settings.library_dir:
            self.library_override = None  # a library chosen in Settings replaces the one --library gave
        for key, value in values.items():
            setattr(self.settings, key, value)
        changed = {key for key in SETTINGS_KEYS if values[key] != current[key]}
        if "appearance" in changed:
            theme.use(values["appearance"])
        if changed & SERVER_KEYS:
            self.server.apply()
        if changed & MODEL_KEYS or (self.model is None and page == 0):
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
        if self.conversations.saved is not None:  # its pins and mutes, on the adapters there now
            self.window.controls.set_values(self.conversations.saved.settings)
        self.window.chat.show_chat()
        self.window.chat.set_input_hint("Demo model: it knows a few small tasks. Try: " + "  ·  ".join(
            paths.demo_examples()) if self.demo else INPUT_HINT)
        told = [f"Adapter {path} not loaded: {reason}" for path, reason in loaded.refused] + loaded.notes
        self.window.show_notice("\n".join(told), "warn" if loaded.refused else "info")
        self.server.hand_engine()
        self.run(self.worker.warm_up(), lambda _seconds: self.ready.emit(), self.loadFailed.emit)
        self._count_tokens()

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
            weights = f" · {info.quantize} weights" if info.quantize else ""
            status = f"{name} · {info.device}{weights} · {plural(len(info.adapters), 'adapter')} · {router}"
        self.window.status_model.setText(status)
        self.window.setWindowTitle(f"LoRA Switchboard — {name}" if info or self.demo else "LoRA Switchboard")
        self.window.set_state(self.generating, info is not None)

    # ---- the open conversation ----
    def _show_conversation(self, saved):
        """Show a saved conversation (None: a new one) with its routing, system prompt and settings."""
        w = self.window
        self.conv = saved.conversation if saved else Conversation()
        self._inspected = None
        w.chat.truncate(0)
        for i in range(len(self.conv.turns)):
            self._render_turn(i)
        self._refresh_timeline()
        w.timeline.set_current(None)
        w.chart.set_routing({}, {}, None)
        self._show_sentence(None)
        w.system_prompt.set_text(saved.system_prompt if saved else self.settings.system_prompt)
        w.controls.set_values(saved.settings if saved else self.settings.generation)
        self._update_status()
        self._count_tokens()

    def _settings(self) -> GenerationSettings:
        """The open conversation's settings, as the controls show them."""
        saved = self.conversations.saved
        return (saved.settings if saved else GenerationSettings()).with_(**self.window.controls.values())

    def _controls_changed(self):
        self.settings.generation = self._settings()  # a new conversation starts with the values used last
        saved = self.conversations.saved
        if saved is not None and saved.settings != self._settings():
            self._save()
        self._show_usage()

    def _default_system_prompt(self):
        self.window.system_prompt.set_text(self.settings.system_prompt)
        self._conversation_changed()

    def _conversation_changed(self):
        """Save the open conversation and count its prompt again."""
        self._save()
        self._count_tokens()

    def _save(self):
        if self.conv.turns:  # a new conversation is written with its first message
            self.conversations.save(self.conv, self.window.system_prompt.text(), self._settings())

    def _send(self, text: str):
        self.conv.add_user(text)
        last = len(self.conv.turns) - 1
        if last > 0:
            self._render_turn(last - 1)  # the reply before it is no longer the last: it offers Continue no more
        self._render_turn(last)
        self._conversation_changed()
        self._generate()

    def _edit(self, index: int, text: str):
        """Turn `index` (a sent message) now says `text`: it is sent again and what followed it is dropped."""
        if self.generating or self.model is None:
            return
        self._drop_from(index)
        self._send(text)

    def _regenerate(self, index: int):
        """Answer again in place of reply `index` (an assistant turn); the turns after it are dropped."""
        if self.generating or self.model is None or self.conv.turns[index].role != "assistant":
            return
        self._drop_from(index)
        self._generate()

    def _continue(self, index: int):
        """Go on with reply `index`, the last turn, where max new tokens or a Stop cut it off."""
        if self.generating or self.model is None or index != len(self.conv.turns) - 1:
            return
        self._generate(continue_reply=True)

    def _drop_from(self, index: int):
        self.conv.truncate(index)
        self.window.chat.truncate(index)
        self._inspected = None
        self.window.timeline.set_current(None)
        self._refresh_timeline()

    def _generate(self, continue_reply: bool = False):
        settings = self._settings().with_(routing_context=self.settings.routing_context)  # Settings: every chat
        messages = self.conv.messages(self.window.system_prompt.text())
        if continue_reply:
            self.conv.resume_assistant(settings)
        else:
            self.conv.start_assistant(settings)
        self._inspected = None
        self.window.timeline.set_current(None)
        self.generating = True
        self._render_turn(len(self.conv.turns) - 1)
        self.run(self.worker.generate(messages, settings, continue_reply), lambda done: self._finish_reply(done.stats),
                 lambda message: self._finish_reply({"stop_reason": "error", "error": message}))
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
        self._conversation_changed()
        self.replied.emit()

    def _render_turn(self, index: int):
        turn = self.conv.turns[index]
        if turn.role == "user":
            self.window.show_user(index, turn.text)
            return
        first = self.conv.first_sentence(index)
        can_continue = (index == len(self.conv.turns) - 1 and turn.stats.get("stop_reason") in CONTINUABLE
                        and bool(turn.text))
        self.window.show_reply(index, [(s.text, s.leader, first + i) for i, s in enumerate(turn.sentences)],
                               footer(turn.stats, turn.text), self._inspected, can_continue)

    def _redraw(self):
        """The theme changed: the messages' tints are drawn again in its colours."""
        for i in range(len(self.conv.turns)):
            self._render_turn(i)

    def _refresh_timeline(self):
        self.window.timeline.set_sentences(*self.conv.timeline())

    # ---- the context meter ----
    def _count_tokens(self):
        """Count the open conversation's prompt on the worker (its chat template included) for the meter."""
        messages = self.conv.messages(self.window.system_prompt.text())
        if self.model is None or self.generating or not messages:
            self._prompt_tokens = 0 if self.model is not None and not messages else None
            self._show_usage()
            return
        self.run(self.worker.count_tokens(messages), self._counted, lambda _message: self._counted(None))

    def _counted(self, tokens: int | None):
        self._prompt_tokens = tokens
        self._show_usage()

    def _show_usage(self):
        if self.model is None or self._prompt_tokens is None:
            self.window.chat.meter.set_usage("", 0.0, "")
            return
        u = usage(self._prompt_tokens, self.model.context_len, self.window.controls.max_new_tokens.value())
        self.window.chat.meter.set_usage(u.text, u.fraction, u.warning)

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

    # ---- library, about, export, close ----
    def open_library(self, import_menu: bool = False):
        """The library window of library_dir(), made on first use and again when that names another folder
        (after the open one's running job: its results must reach it)."""
        root = self.library_dir()
        if self.library is not None and self.library.root != root:
            if self.library.busy:
                self._message(f"The library changes to {root} when the running import or retrain finishes; open "
                              "it again then.")
            else:
                self.library.close()
                self.library = None
        if self.library is None:
            from .library_controller import LibraryController  # imports torch (seconds): not at start-up

            self.library = LibraryController(root, self, self.window)
        self.library.show(import_menu)

    def show_about(self):
        places = [("Settings file", self.settings.location()), ("Adapter library", str(self.library_dir())),
                  ("Saved conversations", str(self.conversations.store.root)),
                  ("Sampling presets", str(self.presets.presets.path)), ("Log file", str(paths.log_file()))]
        self.window.show_about(about.versions(qVersion(), pyside_version), places)

    def export_conversation(self):
        path = self.window.ask_export_path()
        if path:
            saved = export.save(self.conv, path, self.model.model_name if self.model else "")
            self.window.statusBar().showMessage(f"Exported to {saved}", 8000)

    def _close(self):
        for name, state in self.window.save_state().items():
            self.settings.set_window_state(name, state)
        self.settings.sync()
        self.server.stop()    # its requests end first: they wait on the worker
        self.worker.stop()    # cancels a running generation and waits for the thread


def _is_loopback(host: str) -> bool:
    from .server import is_loopback  # the HTTP stack: only when Settings asks

    return is_loopback(host)
