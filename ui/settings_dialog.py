"""Settings > Model folder: pick a local Hugging Face model folder, device and dtype."""
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton)


class SettingsDialog(QDialog):
    def __init__(self, model_dir: str, device: str, dtype: str, devices, dtypes, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        self.model_dir = QLineEdit(model_dir, placeholderText="empty: the bundled demo model")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.model_dir, 1)
        row.addWidget(browse)
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
        form.addRow("Model folder", row)
        form.addRow("", hint)
        form.addRow("Device", self.device)
        form.addRow("Dtype", self.dtype)
        form.addRow(buttons)

    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Choose a model folder", self.model_dir.text())
        if path:
            self.model_dir.setText(path)

    def values(self) -> dict:
        return {"model_dir": self.model_dir.text().strip(), "device": self.device.currentText(),
                "dtype": self.dtype.currentText()}
