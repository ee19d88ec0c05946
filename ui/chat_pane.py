"""The chat: one message view per turn (Markdown, sentences tinted by their leading adapter), the input box with
Send/Stop, regenerate and clear, and the empty state shown when no model is loaded."""
import re

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QKeyEvent
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QScrollArea,
                               QSizePolicy, QStackedWidget, QTextBrowser, QToolButton, QVBoxLayout, QWidget)

from ui import tinted_markdown

Sentences = list[tuple[str, QColor | None, int]]  # (text, tint or None, global sentence id)


INPUT_HINT = "Message the model (Enter to send, Shift+Enter for a new line)"
_LONG_WORD = re.compile(r"\S{32}")  # a label wraps only between words: longer runs get break points

class _Body(QTextBrowser):
    """A message's text: grows to fit its document (the pane scrolls, not the message) and reports the sentence
    under the pointer."""
    hovered = Signal(int)   # sentence id, -1 when none
    clicked = Signal(int)

    def __init__(self):
        super().__init__()
        self.setFrameShape(QFrame.NoFrame)
        self.setOpenExternalLinks(True)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.viewport().setMouseTracking(True)
        self.document().setUndoRedoEnabled(False)  # re-rendered on every streamed batch: no history to keep
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._hovered = -1

    def _fit(self, size):
        self.setFixedHeight(int(size.height()) + 2 * self.frameWidth() + 2)

    def _sentence_at(self, pos) -> int:
        doc_pos = self.document().documentLayout().hitTest(QPointF(pos), Qt.ExactHit)
        sid = tinted_markdown.sentence_at(self.document(), doc_pos)
        return -1 if sid is None else sid

    def mouseMoveEvent(self, event):
        super().mouseMoveEvent(event)
        sid = self._sentence_at(event.position())
        if sid != self._hovered:
            self._hovered = sid
            self.hovered.emit(sid)

    def leaveEvent(self, event):
        super().leaveEvent(event)
        if self._hovered != -1:
            self._hovered = -1
            self.hovered.emit(-1)

    def mouseReleaseEvent(self, event):
        super().mouseReleaseEvent(event)
        sid = self._sentence_at(event.position())
        if sid >= 0 and not self.textCursor().hasSelection():  # a drag that selects text is not a click
            self.clicked.emit(sid)


class MessageView(QFrame):
    def __init__(self, role: str):
        super().__init__()
        self.role = role
        self.setObjectName("userMessage" if role == "user" else "assistantMessage")
        self.source = ""  # the Markdown text, for Copy
        title = QLabel("You" if role == "user" else "Assistant")
        title.setObjectName("messageRole")
        copy = QToolButton(text="Copy", toolTip="Copy this message as Markdown", autoRaise=True)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.source))
        self.footer = QLabel(objectName="messageFooter", wordWrap=True)
        self.footer.hide()
        self.body = _Body()
        header = QHBoxLayout()
        header.addWidget(title)
        header.addStretch()
        header.addWidget(copy)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 8)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self.body)
        layout.addWidget(self.footer)

    def show_sentences(self, sentences: Sentences, footer: str = ""):
        self.source = "".join(text for text, _, _ in sentences)
        tinted_markdown.render(self.body.document(), sentences)
        self.footer.setText(_LONG_WORD.sub(lambda m: m[0] + "\u200b", footer))  # zero-width space: may break here
        self.footer.setVisible(bool(footer))


class InputBox(QPlainTextEdit):
    """Enter sends, Shift+Enter adds a newline."""
    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent):
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and not event.modifiers() & Qt.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class ChatPane(QWidget):
    sendRequested = Signal(str)
    stopRequested = Signal()
    regenerateRequested = Signal()
    clearRequested = Signal()
    chooseModelRequested = Signal()
    sentenceHovered = Signal(int)  # global sentence id, -1 when the pointer leaves it
    sentenceClicked = Signal(int)

    def __init__(self):
        super().__init__()
        self.messages: list[MessageView] = []
        self._generating = False
        self._ready = False

        # empty state: no model, or the model failed to load
        self.empty_title = QLabel(objectName="emptyTitle", alignment=Qt.AlignCenter)
        self.empty_text = QLabel(wordWrap=True, alignment=Qt.AlignCenter, objectName="emptyText")
        self.empty_error = QLabel(wordWrap=True, alignment=Qt.AlignCenter, objectName="emptyError")
        self.empty_error.setTextInteractionFlags(Qt.TextSelectableByMouse)
        choose = QPushButton("Choose model folder…")
        choose.clicked.connect(self.chooseModelRequested)
        empty = QWidget()
        e = QVBoxLayout(empty)
        e.addStretch(2)
        for w in (self.empty_title, self.empty_text, self.empty_error):
            e.addWidget(w)
        e.addWidget(choose, alignment=Qt.AlignCenter)
        e.addStretch(3)
        e.setSpacing(12)
        e.setContentsMargins(48, 24, 48, 24)

        # conversation
        self._list = QWidget(objectName="messageList")
        self._list_layout = QVBoxLayout(self._list)
        self._list_layout.setContentsMargins(12, 12, 12, 12)
        self._list_layout.setSpacing(10)
        self._list_layout.addStretch()
        self.scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        self.scroll.setWidget(self._list)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self._stick_to_bottom = True
        bar = self.scroll.verticalScrollBar()
        bar.valueChanged.connect(lambda v: setattr(self, "_stick_to_bottom", v >= bar.maximum() - 24))
        bar.rangeChanged.connect(lambda lo, hi: self._stick_to_bottom and bar.setValue(hi))

        self.stack = QStackedWidget()
        self.stack.addWidget(empty)
        self.stack.addWidget(self.scroll)

        self.input = InputBox(placeholderText=INPUT_HINT)
        self.input.setFixedHeight(72)
        self.input.submitted.connect(self._send_or_stop)
        self.send = QPushButton("Send", objectName="sendButton")
        self.send.setFixedWidth(88)
        self.send.clicked.connect(self._send_or_stop)
        self.regenerate = QPushButton("Regenerate", toolTip="Answer the last message again")
        self.regenerate.clicked.connect(self.regenerateRequested)
        self.clear = QPushButton("Clear", toolTip="Start a new conversation")
        self.clear.clicked.connect(self.clearRequested)
        side = QVBoxLayout()
        side.addWidget(self.send)
        side.addWidget(self.regenerate)
        side.addWidget(self.clear)
        side.addStretch()
        bottom = QHBoxLayout()
        bottom.setContentsMargins(12, 6, 12, 12)
        bottom.addWidget(self.input)
        bottom.addLayout(side)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.stack, 1)
        layout.addLayout(bottom)
        self.set_state(generating=False, ready=False)

    # ---- state ----
    def show_empty(self, title: str, text: str, error: str = ""):
        self.empty_title.setText(title)
        self.empty_text.setText(text)
        self.empty_error.setText(error)
        self.empty_error.setVisible(bool(error))
        self.stack.setCurrentIndex(0)

    def show_chat(self):
        self.stack.setCurrentIndex(1)

    def set_state(self, generating: bool, ready: bool):
        """Send turns into Stop while generating; nothing can be sent before a model is ready."""
        self._generating, self._ready = generating, ready
        self.send.setText("Stop" if generating else "Send")
        self.send.setProperty("stop", generating)  # style sheet colours Stop differently
        self.send.style().unpolish(self.send)
        self.send.style().polish(self.send)
        self.send.setEnabled(generating or ready)
        has_reply = bool(self.messages) and not generating
        self.regenerate.setEnabled(ready and has_reply)
        self.clear.setEnabled(has_reply)

    def _send_or_stop(self):
        if self._generating:
            self.stopRequested.emit()
            return
        text = self.input.toPlainText().strip()
        if text and self._ready:
            self.input.clear()
            self.sendRequested.emit(text)

    # ---- messages ----
    def show_turn(self, index: int, role: str, sentences: Sentences, footer: str = ""):
        """Create or update the view of turn `index` (turns arrive in order)."""
        if index == len(self.messages):
            view = MessageView(role)
            view.body.hovered.connect(self.sentenceHovered)
            view.body.clicked.connect(self.sentenceClicked)
            self._list_layout.insertWidget(self._list_layout.count() - 1, view)
            self.messages.append(view)
        self.messages[index].show_sentences(sentences, footer)

    def truncate(self, n_turns: int):
        """Remove the views of turns `n_turns` and later (regenerate, clear)."""
        for view in self.messages[n_turns:]:
            view.setParent(None)
            view.deleteLater()
        del self.messages[n_turns:]

    def scroll_to(self, index: int):
        self._stick_to_bottom = False
        self.scroll.ensureWidgetVisible(self.messages[index], 0, 24)
