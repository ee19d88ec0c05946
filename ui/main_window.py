"""The main window: the conversations sidebar, the chat pane, and the routing panel (routing chart, timeline, the
conversation's system prompt and generation controls); menus and status bar.

A passive view: it draws what it is given (plain Python data) and reports what the user asks for through
signals and the signals of its widgets; app/controller.py connects it to the engine worker."""
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QFrame, QHBoxLayout, QLabel, QMainWindow, QProgressBar, QScrollArea,
                               QSplitter, QToolButton, QVBoxLayout, QWidget)

from ui import theme
from ui.about_dialog import AboutDialog
from ui.chat_pane import ChatPane
from ui.colors import tint
from ui.controls import Controls
from ui.conversation_list import ConversationList
from ui.notice import Notice
from ui.routing_chart import RoutingChart
from ui.settings_dialog import SettingsDialog
from ui.system_prompt import SystemPrompt
from ui.timeline import Timeline

INSPECTED_ALPHA = 150  # the sentence shown in the chart gets a stronger tint than the others
MINIMUM_SIZE = (780, 520)  # below this the three columns cannot all stay readable
STATES = ("geometry", "columns", "panel")  # what save_state gives and restore_state takes


class MainWindow(QMainWindow):
    newRequested = Signal()            # File > New conversation
    exportRequested = Signal()         # File > Export conversation…
    settingsRequested = Signal(int)    # Settings > one of its pages (ui/settings_dialog.py PAGES)
    libraryRequested = Signal(bool)    # Library > Adapter library… (False) or Import adapters… (True)
    serverLogRequested = Signal()      # View > Local server requests…, or the status bar's server address
    aboutRequested = Signal()          # Help > About
    themeChanged = Signal()            # light <-> dark: what was drawn in the old colours must be drawn again
    closing = Signal()                 # the window is closing: save, stop the engine

    def __init__(self):
        super().__init__()
        self.chat = ChatPane()
        self.chart = RoutingChart()
        self.timeline = Timeline()
        self.controls = Controls()
        self.system_prompt = SystemPrompt()
        self.conversations = ConversationList()
        self.notice = Notice()
        self.setMinimumSize(*MINIMUM_SIZE)
        theme.notifier.changed.connect(self.themeChanged)  # ends with the window

        # the conversation's settings scroll rather than squeeze: every field keeps its readable height
        settings = QWidget()
        column = QVBoxLayout(settings)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.system_prompt)
        column.addWidget(self.controls, 1)
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(settings)
        self.settings_scroll = scroll
        panel = QSplitter(Qt.Vertical, objectName="routingSplitter", childrenCollapsible=False)
        for w, stretch in ((self.chart, 5), (self.timeline, 2), (scroll, 4)):
            panel.addWidget(w)
            panel.setStretchFactor(panel.count() - 1, stretch)
        side = QWidget(objectName="routingPanel", minimumWidth=280)
        side.setAttribute(Qt.WA_StyledBackground)
        QVBoxLayout(side).addWidget(panel)
        side.layout().setContentsMargins(0, 0, 0, 0)

        close_notice = QToolButton(text="✕", autoRaise=True, toolTip="Dismiss")
        close_notice.clicked.connect(lambda: self.show_notice(""))
        self._notice_row = QWidget()
        row = QHBoxLayout(self._notice_row)
        row.setContentsMargins(12, 8, 12, 0)
        row.addWidget(self.notice, 1)
        row.addWidget(close_notice, alignment=Qt.AlignTop)
        self._notice_row.hide()
        chat_column = QWidget(minimumWidth=320)
        chat_layout = QVBoxLayout(chat_column)
        chat_layout.setContentsMargins(0, 0, 0, 0)
        chat_layout.setSpacing(0)
        chat_layout.addWidget(self._notice_row)
        chat_layout.addWidget(self.chat, 1)

        self.conversations.setMinimumWidth(170)
        self.splitter = QSplitter(Qt.Horizontal, objectName="mainSplitter")
        for w, stretch in ((self.conversations, 0), (chat_column, 3), (side, 2)):
            self.splitter.addWidget(w)
            self.splitter.setStretchFactor(self.splitter.count() - 1, stretch)
        self.splitter.setCollapsible(1, False)
        self.splitter.setCollapsible(2, False)
        self.setCentralWidget(self.splitter)
        self._panel = panel

        self._build_menus()
        self.status_model = QLabel("No model")
        self.status_task = QLabel()
        self.status_progress = QProgressBar(maximumWidth=140, maximumHeight=14, textVisible=False)
        self.status_server = QToolButton(objectName="serverAddress", autoRaise=True,
                                         toolTip="The local server: click for its requests")
        self.status_server.clicked.connect(self.serverLogRequested)
        self.status_server.hide()
        self.status_speed = QLabel("– tok/s")
        self.status_routing = QLabel("routing – ms")
        bar = self.statusBar()
        bar.addWidget(self.status_model)
        bar.addWidget(self.status_task)
        bar.addWidget(self.status_progress)
        bar.addPermanentWidget(self.status_server)
        bar.addPermanentWidget(self.status_speed)
        bar.addPermanentWidget(self.status_routing)
        self.status_progress.hide()

        self.setWindowTitle("LoRA Switchboard")
        self.resize(1360, 820)
        self.splitter.setSizes([220, 680, 460])
        panel.setSizes([380, 150, 330])  # the chart gets most of the height
        self.chat.show_empty("Starting…", "")

    def _build_menus(self):
        def action(menu, text, signal, shortcut=None):
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(signal)
            menu.addAction(a)
            return a

        file = self.menuBar().addMenu("&File")
        action(file, "&New conversation", self.newRequested, "Ctrl+N")
        action(file, "&Export conversation…", self.exportRequested, "Ctrl+E")
        file.addSeparator()
        action(file, "&Quit", self.close, QKeySequence.Quit)
        chat = self.menuBar().addMenu("&Chat")
        self.stop_action = action(chat, "&Stop the reply", self.chat.stopRequested, "Esc")
        self.stop_action.setEnabled(False)
        settings = self.menuBar().addMenu("&Settings")
        for page, (text, shortcut) in enumerate((("&Model and library…", "Ctrl+,"), ("&Chat and appearance…", None),
                                                 ("Local &server…", None))):
            action(settings, text, lambda _=False, p=page: self.settingsRequested.emit(p), shortcut)
        library = self.menuBar().addMenu("&Library")
        self.library_action = action(library, "Adapter &library…", lambda: self.libraryRequested.emit(False),
                                     "Ctrl+L")
        action(library, "&Import adapters…", lambda: self.libraryRequested.emit(True), "Ctrl+I")
        view = self.menuBar().addMenu("&View")
        sidebar = action(view, "&Conversations", lambda on: self.conversations.setVisible(on), "Ctrl+Shift+C")
        sidebar.setCheckable(True)
        sidebar.setChecked(True)
        action(view, "Local server &requests…", self.serverLogRequested)
        help_menu = self.menuBar().addMenu("&Help")
        action(help_menu, "&About LoRA Switchboard", self.aboutRequested)

    # ---- drawing ----
    def set_state(self, generating: bool, ready: bool):
        """While a reply is generated: Send turns into Stop (Esc too), and nothing else can change the chat."""
        self.chat.set_state(generating, ready)
        self.stop_action.setEnabled(generating)
        self.conversations.setEnabled(not generating)
        self.system_prompt.setEnabled(not generating)

    def show_user(self, index: int, text: str):
        self.chat.show_turn(index, "user", [(text, None, -1)])

    def show_reply(self, index: int, sentences: list[tuple[str, str | None, int]], footer: str,
                   inspected: int | None, can_continue: bool = False):
        """Turn `index`: its sentences as (text, leading adapter or None, sentence number), tinted by adapter
        (the inspected one more strongly), and its footer; can_continue: offer to go on with it."""
        shown = []
        for text, leader, sid in sentences:
            color = tint(leader)
            if sid == inspected:
                color.setAlpha(INSPECTED_ALPHA)
            shown.append((text, color, sid))
        self.chat.show_turn(index, "assistant", shown, footer, can_continue)

    def show_progress(self, message: str, fraction: float):
        """fraction in [0, 1], or -1 when unknown (a busy bar)."""
        self.status_task.setText(message)
        self.status_progress.setRange(0, 0 if fraction < 0 else 100)
        self.status_progress.setValue(int(max(fraction, 0) * 100))
        self.status_progress.setVisible(fraction < 1)

    def end_progress(self):
        self.status_task.setText("")
        self.status_progress.hide()

    def show_notice(self, text: str, kind: str = "warn"):
        """A band over the chat (what the library refused, what it noted); "" hides it."""
        self.notice.show_message(text, kind)
        self._notice_row.setVisible(bool(text))

    def show_server(self, text: str, failed: bool = False):
        """The local server in the status bar: its address, or why it is not running ("" hides it)."""
        self.status_server.setText(text)
        self.status_server.setProperty("failed", failed)
        self.status_server.style().unpolish(self.status_server)  # a dynamic property restyles after a re-polish
        self.status_server.style().polish(self.status_server)
        self.status_server.setVisible(bool(text))

    # ---- asking ----
    def ask_settings(self, values: dict, choices: dict, page: int = 0) -> dict | None:
        """Settings (ui/settings_dialog.py): the values as the user left them, or None when cancelled."""
        dialog = SettingsDialog(values, choices, page, self)
        try:
            return dialog.values() if dialog.exec() else None
        finally:
            dialog.deleteLater()  # one dialog per use: a dialog left as the window's child crashed the app's exit

    def show_about(self, versions: list[tuple[str, str]], places: list[tuple[str, str]]):
        dialog = AboutDialog(versions, places, self)
        try:
            dialog.exec()
        finally:
            dialog.deleteLater()

    def ask_export_path(self) -> str | None:
        path, chosen = QFileDialog.getSaveFileName(self, "Export conversation", "conversation.md",
                                                   "Markdown (*.md);;JSON (*.json)")
        if not path:
            return None
        return path if Path(path).suffix else path + (".json" if chosen.startswith("JSON") else ".md")

    # ---- window state ----
    def save_state(self) -> dict[str, QByteArray]:
        return dict(zip(STATES, (self.saveGeometry(), self.splitter.saveState(), self._panel.saveState())))

    def restore_state(self, states: dict):
        """What save_state gave, as the settings store gives it back (None or garbage: left as it is)."""
        for name, widget in zip(STATES, (self, self.splitter, self._panel)):
            state = states.get(name)
            if isinstance(state, QByteArray):
                widget.restoreGeometry(state) if widget is self else widget.restoreState(state)

    def closeEvent(self, event):
        self.closing.emit()
        super().closeEvent(event)
