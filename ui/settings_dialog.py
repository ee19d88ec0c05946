"""Settings, in three pages: Model and library (model folder or .gguf file, adapter library folder, device, dtype,
quantization), Chat and appearance (the system prompt new conversations start with; what the router reads before each
sentence; light, dark or the desktop's scheme) and Local server (the OpenAI-compatible server the app runs while it is open: on or off, host, port, API
key; an address other machines can reach is accepted only with a key)."""
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QSpinBox, QTabWidget,
                               QVBoxLayout, QWidget)

PAGES = ("Model and library", "Chat and appearance", "Local server")
APPEARANCE_NAMES = {"system": "As the desktop (light or dark)", "light": "Light", "dark": "Dark"}
QUANTIZE_NAMES = {"auto": "Auto: a .gguf file's own precision, else none", "none": "None: the float weights",
                  "int8": "int8 (weight-only, per channel)", "int4": "int4 (weight-only, groups of 128; GPU)"}


class SettingsDialog(QDialog):
    def __init__(self, values: dict, choices: dict, page: int = 0, parent=None):
        """values: model_dir, library_dir, device, dtype, quantize, system_prompt, routing_context, appearance,
        server_enabled, server_host, server_port, server_api_key. choices: default_library (shown when library_dir
        is empty), devices, dtypes, quantize, appearances, routing_contexts ({value: description}),
        is_loopback(host) -> bool. page: the page shown first (an index of PAGES)."""
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._model_page(values, choices), PAGES[0])
        self.tabs.addTab(self._chat_page(values, choices), PAGES[1])
        self.tabs.addTab(self._server_page(values), PAGES[2])
        self.tabs.setCurrentIndex(page)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok = buttons.button(QDialogButtonBox.Ok)
        self._is_loopback = choices["is_loopback"]
        for edit in (self.server_host, self.server_api_key):
            edit.textChanged.connect(self._check_server)
        self.server_enabled.toggled.connect(self._check_server)
        self._check_server()
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)

    def _model_page(self, values: dict, choices: dict) -> QWidget:
        self.model_dir = QLineEdit(values["model_dir"], placeholderText="empty: the bundled demo model",
                                   objectName="modelDir")
        self.library_dir = QLineEdit(values["library_dir"], placeholderText=f"empty: {choices['default_library']}")
        self.device = _combo(choices["devices"], values["device"])
        self.dtype = _combo(choices["dtypes"], values["dtype"])
        self.quantize = QComboBox()
        for key in choices["quantize"]:
            self.quantize.addItem(QUANTIZE_NAMES[key], key)
        self.quantize.setCurrentIndex(max(self.quantize.findData(values["quantize"]), 0))
        gguf = QPushButton("GGUF file…", toolTip="Choose a .gguf model file (llama.cpp, Ollama, LM Studio)")
        gguf.clicked.connect(self._choose_gguf)
        model_row = self._with_browse(self.model_dir, "Choose a model folder")
        model_row.addWidget(gguf)
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("Model", model_row)
        form.addRow("", _note("A folder with config.json, safetensors weights and tokenizer files, or a .gguf file "
                              "(Llama, Mistral, Qwen2). Changes reload the model."))
        form.addRow("Adapter library", self._with_browse(self.library_dir, "Choose the adapter library folder"))
        form.addRow("", _note("Your adapters, their router examples and the router (created when missing). An "
                              "empty one gets the demo's adapters the first time the demo model opens."))
        form.addRow("Device", self.device)
        form.addRow("Dtype", self.dtype)
        form.addRow("Quantization", self.quantize)
        form.addRow("", _note("int8 and int4 hold the base model's weights in 8 or 4 bits: about a half or a quarter "
                              "of the memory, and faster decoding on a GPU. Adapters still apply in full precision."))
        return page

    def _choose_gguf(self):
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model file", self.model_dir.text(),
                                              "GGUF models (*.gguf)")
        if path:
            self.model_dir.setText(path)

    def _chat_page(self, values: dict, choices: dict) -> QWidget:
        self.system_prompt = QPlainTextEdit(values["system_prompt"], placeholderText="empty: no system prompt")
        self.system_prompt.setFixedHeight(96)
        self.appearance = QComboBox()
        for key in choices["appearances"]:
            self.appearance.addItem(APPEARANCE_NAMES[key], key)
        self.appearance.setCurrentIndex(self.appearance.findData(values["appearance"]))
        self.routing_context = QComboBox()
        for key, text in choices["routing_contexts"].items():
            self.routing_context.addItem(text, key)
        self.routing_context.setCurrentIndex(max(self.routing_context.findData(values["routing_context"]), 0))
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("System prompt", self.system_prompt)
        form.addRow("", _note("What new conversations start with; each conversation keeps its own (edit it above "
                              "the Generation controls)."))
        form.addRow("Routing reads", self.routing_context)
        form.addRow("", _note("What the router reads before each sentence to pick its adapters; from the next "
                              "reply on."))
        form.addRow("Appearance", self.appearance)
        return page

    def _server_page(self, values: dict) -> QWidget:
        self.server_enabled = QCheckBox("Serve the model and its adapters while the app is open")
        self.server_enabled.setChecked(values["server_enabled"])
        self.server_host = QLineEdit(values["server_host"], placeholderText="127.0.0.1")
        self.server_port = QSpinBox(minimum=1, maximum=65535, value=values["server_port"])
        self.server_api_key = QLineEdit(values["server_api_key"], echoMode=QLineEdit.PasswordEchoOnEdit,
                                        placeholderText="none: any program on this machine may connect")
        page = QWidget()
        form = QFormLayout(page)
        form.addRow(self.server_enabled)
        form.addRow("Host", self.server_host)
        form.addRow("", _note("127.0.0.1 (or localhost) lets only this machine connect. Any other address lets "
                              "other machines in, and needs an API key."))
        form.addRow("Port", self.server_port)
        form.addRow("API key", self.server_api_key)
        self.server_problem = QLabel(objectName="serverProblem", wordWrap=True)
        form.addRow("", self.server_problem)
        form.addRow("", _note("Clients send it as 'Authorization: Bearer KEY'. It is kept in the settings file. "
                              "The server's requests are listed in View > Local server requests."))
        return page

    def _with_browse(self, edit: QLineEdit, title: str) -> QHBoxLayout:
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: edit.setText(QFileDialog.getExistingDirectory(self, title, edit.text())
                                                    or edit.text()))
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(browse)
        return row

    def _check_server(self):
        """Serving on an address other machines reach needs an API key: OK waits for one."""
        host = self.server_host.text().strip() or "127.0.0.1"
        open_without_key = (self.server_enabled.isChecked() and not self._is_loopback(host)
                            and not self.server_api_key.text().strip())
        self.server_problem.setText(f"{host} lets other machines connect: set an API key, or serve on 127.0.0.1."
                                    if open_without_key else "")
        self.server_problem.setVisible(open_without_key)
        self.ok.setEnabled(not open_without_key)

    def values(self) -> dict:
        return {"model_dir": self.model_dir.text().strip(), "library_dir": self.library_dir.text().strip(),
                "device": self.device.currentText(), "dtype": self.dtype.currentText(),
                "quantize": self.quantize.currentData(),
                "system_prompt": self.system_prompt.toPlainText(), "appearance": self.appearance.currentData(),
                "routing_context": self.routing_context.currentData(),
                "server_enabled": self.server_enabled.isChecked(),
                "server_host": self.server_host.text().strip() or "127.0.0.1",
                "server_port": self.server_port.value(), "server_api_key": self.server_api_key.text().strip()}


def _combo(items, current: str) -> QComboBox:
    box = QComboBox()
    box.addItems(items)
    box.setCurrentText(current)
    return box


def _note(text: str) -> QLabel:
    return QLabel(text, wordWrap=True, objectName="panelNote")
