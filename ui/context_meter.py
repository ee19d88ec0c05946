"""The context meter under the chat: the tokens the conversation takes of the model's context, as a thin bar and a
count, and a warning line before the oldest messages have to be left out of the prompt."""
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

STEPS = 1000


class ContextMeter(QWidget):
    def __init__(self):
        super().__init__()
        self.bar = QProgressBar(maximum=STEPS, textVisible=False, maximumHeight=6, maximumWidth=160)
        self.label = QLabel(objectName="contextMeter")
        self.warning = QLabel(objectName="contextWarning", wordWrap=True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addStretch(1)
        row.addWidget(QLabel("Context", objectName="contextMeter"))
        row.addWidget(self.bar)
        row.addWidget(self.label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 4, 12, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.warning)
        self.set_usage("", 0.0, "")

    def set_usage(self, text: str, fraction: float, warning: str):
        """text: "1,234 / 4,096 tokens" ("" hides the meter: no model); fraction of the context, in [0, 1]."""
        self.setVisible(bool(text))
        self.label.setText(text)
        self.bar.setValue(round(fraction * STEPS))
        self.warning.setText(warning)
        self.warning.setVisible(bool(warning))
