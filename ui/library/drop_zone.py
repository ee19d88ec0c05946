"""DropZone: accepts local folders and files dropped on it (as file URLs) and emits their paths."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout


class DropZone(QFrame):
    dropped = Signal(list)

    def __init__(self):
        super().__init__(objectName="dropZone")
        self.setAcceptDrops(True)
        self.setProperty("hover", False)
        title = QLabel("Drop adapters here", objectName="dropTitle", alignment=Qt.AlignCenter)
        text = QLabel("PEFT adapter folders, .zip archives of one or more adapters, or a folder of adapters. "
                      "Each one is checked against the model and added, or refused with the reason.",
                      objectName="dropText", alignment=Qt.AlignCenter, wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(2)
        layout.addWidget(title)
        layout.addWidget(text)

    def dragEnterEvent(self, event):
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()
            self._hover(True)

    def dragMoveEvent(self, event):
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event):
        self._hover(False)

    def dropEvent(self, event):
        self._hover(False)
        paths = _local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.dropped.emit(paths)

    def _hover(self, on: bool):
        self.setProperty("hover", on)
        self.style().unpolish(self)
        self.style().polish(self)


def _local_paths(mime) -> list[str]:
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
