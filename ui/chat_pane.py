"""The chat: one message view per turn (Markdown, sentences tinted by their leading adapter) with its actions
(edit and resend a message; regenerate any reply; continue one that was cut off), the context meter, the input
box with Send/Stop, regenerate and new, and the empty state shown when no model is loaded."""
import re

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QKeyEvent
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QScrollArea,
                               QSizePolicy, QStackedWidget, QTextBrowser, QToolButton, QVBoxLayout, QWidget)

from ui import tinted_markdown
from ui.context_meter import ContextMeter

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


class InputBox(QPlainTextEdit):
    """Enter sends, Shift+Enter adds a newline."""
    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent):
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and not event.modifiers() & Qt.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class MessageView(QFrame):
    """One turn. A user message can be edited in place and sent again; a reply regenerated, or continued."""
    edited = Signal(str)        # the user's message, edited: send it instead
    regenerate = Signal()
    resume = Signal()           # continue this reply

    def __init__(self, role: str):
        super().__init__()
        self.role = role
        self.setObjectName("userMessage" if role == "user" else "assistantMessage")
        self.source = ""  # the Markdown text, for Copy
        title = QLabel("You" if role == "user" else "Assistant")
        title.setObjectName("messageRole")
        copy = QToolButton(text="Copy", toolTip="Copy this message as Markdown", autoRaise=True)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.source))
        if role == "user":
            self.actions = [QToolButton(text="Edit", toolTip="Edit this message and send it again (the turns "
                                        "after it are dropped)", autoRaise=True)]
            self.actions[0].clicked.connect(self._start_edit)
        else:
            self.actions = [QToolButton(text="Regenerate", toolTip="Answer again (the turns after it are dropped)",
                                        autoRaise=True),
                            QToolButton(text="Continue", toolTip="Go on writing this reply", autoRaise=True)]
            self.actions[0].clicked.connect(self.regenerate)
            self.actions[1].clicked.connect(self.resume)
            self.actions[1].hide()
        self.footer = QLabel(objectName="messageFooter", wordWrap=True)
        self.footer.hide()
        self.body = _Body()
        self.editor = InputBox()  # Enter sends the edit, Shift+Enter adds a line
        self.editor.setFixedHeight(96)
        self.editor.submitted.connect(self._submit_edit)
        send, cancel = QPushButton("Send"), QPushButton("Cancel")
        send.clicked.connect(self._submit_edit)
        cancel.clicked.connect(lambda: self._editing(False))
        edit_bar = QHBoxLayout()
        edit_bar.addStretch()
        edit_bar.addWidget(cancel)
        edit_bar.addWidget(send)
        self._edit_bar = QWidget()
        self._edit_bar.setLayout(edit_bar)
        edit_bar.setContentsMargins(0, 0, 0, 0)
        header = QHBoxLayout()
        header.addWidget(title)
        header.addStretch()
        for button in [*self.actions, copy]:
            header.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 8)
        layout.setSpacing(2)
        layout.addLayout(header)
        for w in (self.body, self.editor, self._edit_bar, self.footer):
            layout.addWidget(w)
        self._editing(False)

    def show_sentences(self, sentences: Sentences, footer: str = "", can_continue: bool = False):
        self.source = "".join(text for text, _, _ in sentences)
        tinted_markdown.render(self.body.document(), sentences)
        self.footer.setText(_LONG_WORD.sub(lambda m: m[0] + "\u200b", footer))  # zero-width space: may break here
        self.footer.setVisible(bool(footer))
        if self.role == "assistant":
            self.actions[1].setVisible(can_continue)

    def set_actions_enabled(self, enabled: bool):
        for button in self.actions:
            button.setEnabled(enabled)
        if not enabled:
            self._editing(False)

    def _start_edit(self):
        self.editor.setPlainText(self.source)
        self._editing(True)
        self.editor.setFocus()

    def _editing(self, on: bool):
        self.body.setVisible(not on)
        self.editor.setVisible(on)
        self._edit_bar.setVisible(on)

    def _submit_edit(self):
        text = self.editor.toPlainText().strip()
        if text:
            self._editing(False)
            self.edited.emit(text)


class ChatPane(QWidget):
    sendRequested = Signal(str)
    stopRequested = Signal()
    editRequested = Signal(int, str)     # turn index, its new text: resend from there
    regenerateRequested = Signal(int)    # turn index of the reply to answer again
    continueRequested = Signal(int)      # turn index of the reply to go on with
    clearRequested = Signal()            # a new conversation
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
        self.regenerate.clicked.connect(self._regenerate_last)
        self.clear = QPushButton("New", toolTip="Start a new conversation (this one stays in the list)")
        self.clear.clicked.connect(self.clearRequested)
        self.meter = ContextMeter()
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
        layout.addWidget(self.meter)
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
        has_reply = any(m.role == "assistant" for m in self.messages) and not generating
        self.regenerate.setEnabled(ready and has_reply)
        self.clear.setEnabled(bool(self.messages) and not generating)
        for view in self.messages:
            view.set_actions_enabled(ready and not generating)

    def set_input_hint(self, text: str):
        """The input's placeholder (Qt repaints it only when it appears or goes, not when its text changes)."""
        self.input.setPlaceholderText(text)
        self.input.viewport().update()

    def _regenerate_last(self):
        last = max((i for i, m in enumerate(self.messages) if m.role == "assistant"), default=None)
        if last is not None:
            self.regenerateRequested.emit(last)

    def _send_or_stop(self):
        if self._generating:
            self.stopRequested.emit()
            return
        text = self.input.toPlainText().strip()
        if text and self._ready:
            self.input.clear()
            self.sendRequested.emit(text)

    # ---- messages ----
    def show_turn(self, index: int, role: str, sentences: Sentences, footer: str = "", can_continue: bool = False):
        """Create or update the view of turn `index` (turns arrive in order); can_continue: offer Continue."""
        if index == len(self.messages):
            view = MessageView(role)
            view.body.hovered.connect(self.sentenceHovered)
            view.body.clicked.connect(self.sentenceClicked)
            view.edited.connect(lambda text, v=view: self.editRequested.emit(self.messages.index(v), text))
            view.regenerate.connect(lambda v=view: self.regenerateRequested.emit(self.messages.index(v)))
            view.resume.connect(lambda v=view: self.continueRequested.emit(self.messages.index(v)))
            view.set_actions_enabled(self._ready and not self._generating)
            self._list_layout.insertWidget(self._list_layout.count() - 1, view)
            self.messages.append(view)
        self.messages[index].show_sentences(sentences, footer, can_continue)

    def truncate(self, n_turns: int):
        """Remove the views of turns `n_turns` and later (edit, regenerate, another conversation)."""
        for view in self.messages[n_turns:]:
            view.setParent(None)
            view.deleteLater()
        del self.messages[n_turns:]

    def scroll_to(self, index: int):
        self._stick_to_bottom = False
        self.scroll.ensureWidgetVisible(self.messages[index], 0, 24)
