"""Notice: a one-line message band for the library windows (info, warning or error), hidden when empty."""
from PySide6.QtWidgets import QLabel, QSizePolicy

STYLE = """
#notice { border-radius: 6px; padding: 6px 8px; }
#notice[kind="info"] { color: #2f4b7c; background: #eaf1fa; border: 1px solid #c9d8ec; }
#notice[kind="warn"] { color: #7a4b00; background: #fdf3e0; border: 1px solid #f1d9a8; }
#notice[kind="error"] { color: #b03a2e; background: #fbeaea; border: 1px solid #f0c4c0; }
"""


class Notice(QLabel):
    def __init__(self, parent=None):
        super().__init__(parent, objectName="notice", wordWrap=True)
        self.setStyleSheet(STYLE)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)  # a band, never a box that fills the space
        self.setTextInteractionFlags(self.textInteractionFlags() | self.textInteractionFlags().TextSelectableByMouse)
        self.hide()

    def show_message(self, text: str, kind: str = "info"):
        """kind: "info" | "warn" | "error"; an empty text hides the band."""
        self.setText(text)
        self.setProperty("kind", kind)
        self.style().unpolish(self)  # a dynamic property only restyles after a re-polish
        self.style().polish(self)
        self.setVisible(bool(text))

    @property
    def kind(self) -> str:
        return self.property("kind") or ""
