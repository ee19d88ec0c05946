"""Notice: a message band (info, warning or error), hidden when empty; its colours are in ui/style.py."""
from PySide6.QtWidgets import QLabel, QSizePolicy


class Notice(QLabel):
    def __init__(self, parent=None):
        super().__init__(parent, objectName="notice", wordWrap=True)
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
