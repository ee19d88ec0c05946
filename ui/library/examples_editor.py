"""The router examples of one adapter: a list to edit (add, edit in place, delete, paste lines, import a .jsonl or
.txt file), a flag when there are too few, and probe examples sampled from the loaded model with only this
adapter active, offered for review before they are added.

Every change is asked to be saved at once (`edited`; the library writes one small file atomically), so nothing is
left unsaved."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout,
                               QLabel, QListWidget, QListWidgetItem, QPlainTextEdit, QPushButton, QStyledItemDelegate,
                               QVBoxLayout, QWidget)

from ui.notice import Notice

PROBE_TEXT = "Generate probe examples…"
PROBE_TIP = "Sample short texts from the loaded model with only this adapter active, and choose which to keep"


class ExamplesEditor(QWidget):
    edited = Signal(str, list)            # adapter, its examples as they are now in the list: save them
    importRequested = Signal(str, str)    # adapter, a .jsonl or .txt file to add the prompts of
    probesRequested = Signal(str)         # adapter: sample probe examples (show_probes answers)

    def __init__(self, min_examples: int, parent=None):
        super().__init__(parent)
        self.min_examples = min_examples
        self.name: str | None = None
        self.bank: list[str] | None = None  # the loaded model's adapters (probes need this one among them)
        self.probe_dialog: ProbeDialog | None = None

        self.title = QLabel(objectName="sectionTitle")
        self.count = QLabel(objectName="hint", wordWrap=True)
        self.list = QListWidget(alternatingRowColors=True, uniformItemSizes=True,
                                selectionMode=QAbstractItemView.ExtendedSelection,
                                editTriggers=QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed)
        self.list.setItemDelegate(PromptDelegate(self.list))
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # long prompts are elided (full: tooltip)
        self.list.setTextElideMode(Qt.ElideRight)
        self.list.itemChanged.connect(lambda _item: self._save_list())
        self.add_button = QPushButton("Add", toolTip="Add an example and edit it")
        self.delete_button = QPushButton("Delete", toolTip="Delete the selected examples (Del)")
        self.paste_button = QPushButton("Paste", toolTip="Add each line of the clipboard as an example (Ctrl+V)")
        self.import_button = QPushButton("Import file…", toolTip="Add the prompts of a .jsonl or .txt file")
        self.probe_button = QPushButton(PROBE_TEXT, toolTip=PROBE_TIP)
        self.add_button.clicked.connect(self.add_empty)
        self.delete_button.clicked.connect(self.delete_selected)
        self.paste_button.clicked.connect(self.paste)
        self.import_button.clicked.connect(self.choose_file)
        self.probe_button.clicked.connect(self.generate_probes)
        QShortcut(QKeySequence.Paste, self.list, self.paste, context=Qt.WidgetShortcut)
        QShortcut(QKeySequence.Delete, self.list, self.delete_selected, context=Qt.WidgetShortcut)
        self.notice = Notice()

        buttons = QHBoxLayout()
        for b in (self.add_button, self.delete_button, self.paste_button, self.import_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.addWidget(self.title)
        layout.addWidget(self.count)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.probe_button)
        layout.addWidget(self.notice)
        self.show_adapter(None, [])

    # ---- state ----
    def show_adapter(self, name: str | None, prompts: list[str], error: str = ""):
        """Show `name`'s examples (None: nothing selected), or why they could not be read."""
        self.name = name
        self.notice.show_message(error, "error")
        self._fill(prompts)
        self.update_state()

    def set_bank(self, bank: list[str] | None):
        self.bank = bank
        self.update_state()

    def prompts(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def update_state(self):
        has = self.name is not None
        for w in (self.list, self.add_button, self.paste_button, self.import_button):
            w.setEnabled(has)
        self.delete_button.setEnabled(has and self.list.count() > 0)
        self.probe_button.setEnabled(has and self.bank is not None and self.name in self.bank
                                     and self.probe_button.text() == PROBE_TEXT)
        self.probe_button.setToolTip(PROBE_TIP if self.probe_button.isEnabled() else
                                     PROBE_TIP + "\n(needs a loaded model with this library's adapters, this one "
                                     "enabled)")
        self.title.setText(f"Router examples · {self.name}" if has else "Router examples")
        if not has:
            self.count.setText("Select an adapter to see and edit its router examples.")
            return
        n = self.list.count()
        if n < self.min_examples:
            self.count.setText(f"⚠ {n} examples: fewer than {self.min_examples}, the router cannot reliably learn when "
                               "to pick this adapter. Add prompts it should handle.")
            self.count.setStyleSheet("color: #a05a00;")
        else:
            self.count.setText(f"{n} examples: prompts this adapter should handle. Double-click one to edit it.")
            self.count.setStyleSheet("")

    # ---- editing ----
    def add_empty(self):
        item = self._item("")
        self.list.addItem(item)
        self.list.setCurrentItem(item)
        self.list.editItem(item)  # an empty item left empty is dropped by the save

    def delete_selected(self):
        rows = sorted((self.list.row(i) for i in self.list.selectedItems()), reverse=True)
        if rows:
            self.list.blockSignals(True)
            for r in rows:
                self.list.takeItem(r)
            self.list.blockSignals(False)
            self._save_list()

    def paste(self):
        self.add_prompts(QApplication.clipboard().text().splitlines())

    def choose_file(self):
        path, _ = QFileDialog.getOpenFileName(self, f"Import router examples for {self.name}", "",
                                              "Examples (*.jsonl *.txt)")
        if path:
            self.import_file(path)

    def import_file(self, path: str):
        """Ask to add the prompts of a .jsonl ({"prompt": ...} per line) or .txt (one per line) file."""
        self.importRequested.emit(self.name, path)

    def imported(self, prompts: list[str], path: str, error: str = ""):
        """The examples after an import of `path`, or why it failed (nothing changed then)."""
        if error:
            self.notice.show_message(error, "error")
            return
        n = self.list.count()
        self._fill(prompts)
        self.notice.show_message(f"Imported {len(prompts) - n} examples from {path}.", "info")
        self.update_state()

    def add_prompts(self, prompts):
        """Append the non-blank prompts (stripped) and save."""
        prompts = [p.strip() for p in prompts if p.strip()]
        if prompts and self.name is not None:
            self.list.blockSignals(True)
            for p in prompts:
                self.list.addItem(self._item(p))
            self.list.blockSignals(False)
            self.list.scrollToBottom()
            self._save_list()

    def _save_list(self):
        prompts = [p.strip() for p in self.prompts() if p.strip()]
        if prompts != self.prompts():
            self._fill(prompts)
        self.list.blockSignals(True)
        for i in range(self.list.count()):  # an edited example's tooltip
            self.list.item(i).setToolTip(self.list.item(i).text())
        self.list.blockSignals(False)
        self.notice.show_message("")
        self.update_state()
        self.edited.emit(self.name, prompts)

    def save_failed(self, message: str):
        self.notice.show_message(message, "error")

    def _fill(self, prompts):
        self.list.blockSignals(True)
        self.list.clear()
        for p in prompts:
            self.list.addItem(self._item(p))
        self.list.blockSignals(False)

    @staticmethod
    def _item(text: str) -> QListWidgetItem:
        item = QListWidgetItem(text)
        item.setFlags(item.flags() | Qt.ItemIsEditable)
        item.setToolTip(text)
        return item

    # ---- probe examples ----
    def generate_probes(self):
        """Ask for probe examples of this adapter (sampled on the engine thread); show_probes offers them."""
        self.probe_button.setText("Sampling from the model…")
        self.update_state()
        self.probesRequested.emit(self.name)

    def show_probes(self, name: str, samples: list[str], error: str = ""):
        """Samples for adapter `name` to review, or why there are none."""
        self.probe_button.setText(PROBE_TEXT)
        self.update_state()
        if error or not samples:
            self.notice.show_message(error or f"The model produced no text with '{name}' active; try again.",
                                     "error" if error else "warn")
            return
        self.probe_dialog = ProbeDialog(name, samples, self)
        self.probe_dialog.accepted.connect(
            lambda: self.add_prompts(self.probe_dialog.chosen()) if self.name == name else None)
        self.probe_dialog.open()


class PromptDelegate(QStyledItemDelegate):
    """One line per example in the list (line breaks shown as ⏎), and a multi-line editor: prompts may span lines.
    The edit is kept when the editor loses focus; Escape drops it."""
    EDITOR_LINES = 6

    def displayText(self, value, locale):
        return str(value).replace("\n", " ⏎ ")

    def createEditor(self, parent, option, index):
        editor = QPlainTextEdit(parent)
        editor.setTabChangesFocus(True)
        return editor

    def setEditorData(self, editor, index):
        editor.setPlainText(index.data(Qt.EditRole))

    def setModelData(self, editor, model, index):
        model.setData(index, editor.toPlainText(), Qt.EditRole)

    def updateEditorGeometry(self, editor, option, index):
        rect = option.rect
        rect.setHeight(max(rect.height(), self.EDITOR_LINES * option.fontMetrics.height() + 12))
        editor.setGeometry(rect)


class ProbeDialog(QDialog):
    """Review sampled texts: tick the ones that show what the adapter is for, edit them, add them."""

    def __init__(self, name: str, samples: list[str], parent=None):
        super().__init__(parent, windowTitle=f"Probe examples · {name}")
        note = QLabel(f"Sampled from the model with only '{name}' active. Keep the texts that look like what this "
                      "adapter is for; double-click one to edit it. They become router examples.",
                      wordWrap=True)
        self.list = QListWidget(alternatingRowColors=True, wordWrap=True,
                                editTriggers=QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # wrap, never scroll sideways
        for s in samples:
            item = QListWidgetItem(s)
            item.setFlags(item.flags() | Qt.ItemIsEditable | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked)
            self.list.addItem(item)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.list.itemChanged.connect(self._update_ok)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.buttons)
        self.resize(560, 420)
        self._update_ok()

    def chosen(self) -> list[str]:
        items = (self.list.item(i) for i in range(self.list.count()))
        return [i.text().strip() for i in items if i.checkState() == Qt.Checked and i.text().strip()]

    def _update_ok(self, _item=None):
        ok = self.buttons.button(QDialogButtonBox.Ok)
        n = len(self.chosen())
        ok.setText(f"Add {n} example{'s' if n != 1 else ''}")
        ok.setEnabled(n > 0)

