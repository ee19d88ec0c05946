"""Help > About: what this is, the versions it runs on and where it keeps its files (for a bug report: Copy)."""
from PySide6.QtCore import QFileInfo, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QToolButton,
                               QVBoxLayout)

BLURB = ("Chat with a local model while a small router picks, for every sentence, the LoRA adapters of your "
         "library that fit it, and the engine fuses them before the sentence's first token.")


class AboutDialog(QDialog):
    def __init__(self, versions: list[tuple[str, str]], places: list[tuple[str, str]], parent=None):
        """versions: (name, version); places: (what, folder or file path)."""
        super().__init__(parent)
        self.setWindowTitle("About LoRA Switchboard")
        self.setMinimumWidth(560)
        title = QLabel("LoRA Switchboard", objectName="emptyTitle")
        blurb = QLabel(BLURB, wordWrap=True, objectName="panelNote")
        software = QFormLayout()
        for name, version in versions:
            software.addRow(name, _selectable(version))
        files = QFormLayout()
        for what, path in places:
            row = QHBoxLayout()
            row.addWidget(_selectable(path), 1)
            show = QToolButton(text="Open", toolTip="Open its folder", autoRaise=True)
            folder = path if QFileInfo(path).isDir() else QFileInfo(path).absolutePath()
            show.clicked.connect(lambda _=False, f=folder: QDesktopServices.openUrl(QUrl.fromLocalFile(f)))
            row.addWidget(show)
            files.addRow(what, row)
        self.text = "\n".join(f"{a}: {b}" for a, b in [*versions, *places])
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        copy = buttons.addButton("Copy", QDialogButtonBox.ActionRole)
        copy.setToolTip("Copy the versions and paths, e.g. for a bug report")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.text))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(blurb)
        layout.addWidget(QLabel("Versions", objectName="sectionTitle"))
        layout.addLayout(software)
        layout.addWidget(QLabel("Files", objectName="sectionTitle"))
        layout.addLayout(files)
        layout.addWidget(buttons)


def _selectable(text: str) -> QLabel:
    label = QLabel(text, wordWrap=True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return label
