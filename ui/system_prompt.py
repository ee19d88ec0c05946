"""The open conversation's system prompt: what the model is told before the first message."""
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QToolButton, QVBoxLayout, QWidget

SETTLE_MS = 700  # an edit is reported once typing pauses this long


class SystemPrompt(QWidget):
    changed = Signal(str)          # the user edited it (reported once typing pauses)
    resetRequested = Signal()      # back to the default new conversations start with

    def __init__(self):
        super().__init__()
        title = QLabel("System prompt", objectName="panelTitle")
        reset = QToolButton(text="Default", autoRaise=True,
                            toolTip="Use the default system prompt (Settings > Chat and appearance)")
        reset.clicked.connect(self.resetRequested)
        self.edit = QPlainTextEdit(placeholderText="None. The model is told nothing before the first message.")
        self.edit.setFixedHeight(64)
        self._settle = QTimer(self, singleShot=True, interval=SETTLE_MS)
        self._settle.timeout.connect(lambda: self.changed.emit(self.text()))
        self.edit.textChanged.connect(self._settle.start)
        head = QHBoxLayout()
        head.addWidget(title, 1)
        head.addWidget(reset)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 0)
        layout.setSpacing(2)
        layout.addLayout(head)
        layout.addWidget(self.edit)

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str):
        """Show `text` (not reported as an edit)."""
        self.edit.blockSignals(True)
        self.edit.setPlainText(text)
        self.edit.blockSignals(False)
        self._settle.stop()
