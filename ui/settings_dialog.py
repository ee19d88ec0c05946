"""Settings > Model and library: pick a local Hugging Face model folder, the adapter library folder, device and dtype."""
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton)


class SettingsDialog(QDialog):
    def __init__(self, model_dir: str, library_dir: str, default_library: str, device: str, dtype: str, devices,
                 dtypes, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        self.model_dir = QLineEdit(model_dir, placeholderText="empty: the bundled demo model")
        self.library_dir = QLineEdit(library_dir, placeholderText=f"empty: {default_library}")
        self.device = QComboBox()
        self.device.addItems(devices)
        self.device.setCurrentText(device)
        self.dtype = QComboBox()
        self.dtype.addItems(dtypes)
        self.dtype.setCurrentText(dtype)
        hint = QLabel("A folder with config.json, safetensors weights and tokenizer files. "
                      "Changes reload the model.", wordWrap=True, objectName="panelNote")
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Model folder", self._with_browse(self.model_dir, "Choose a model folder"))
        form.addRow("", hint)
        form.addRow("Adapter library", self._with_browse(self.library_dir, "Choose the adapter library folder"))
        form.addRow("", QLabel("Your adapters, their router examples and the router (created when missing). "
                               "Not used with the demo model, which brings its own.", wordWrap=True,
                               objectName="panelNote"))
        form.addRow("Device", self.device)
        form.addRow("Dtype", self.dtype)
        form.addRow(buttons)

    def _with_browse(self, edit: QLineEdit, title: str) -> QHBoxLayout:
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: edit.setText(QFileDialog.getExistingDirectory(self, title, edit.text())
                                                    or edit.text()))
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(browse)
        return row

    def values(self) -> dict:
        return {"model_dir": self.model_dir.text().strip(), "library_dir": self.library_dir.text().strip(),
                "device": self.device.currentText(), "dtype": self.dtype.currentText()}
