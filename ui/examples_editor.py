"""The router examples of one adapter: a list to edit (add, edit in place, delete, paste lines, import a .jsonl or
.txt file), a flag when there are too few, and probe examples sampled from the loaded model with only this
adapter active, offered for review before they are added.

Every change is saved at once (Library.set_examples: one small atomic file write), so nothing is left unsaved."""
import random
import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout,
                               QLabel, QListWidget, QListWidgetItem, QPlainTextEdit, QPushButton, QStyledItemDelegate,
                               QVBoxLayout, QWidget)

from ui.notice import Notice

PROBE_PROMPTS = (  # generic openers: with one adapter active, its task shows in what the model says
    "Write one typical request a user might send you.",
    "Give a short example of the kind of task you handle.",
    "Start a conversation about what you do best.",
    "Ask me a question.",
)
PROBE_ROWS = 8              # samples per click, generated as one batch
PROBE_TOKENS = 48           # short texts: a sentence or two
PROBE_TEMPERATURE = 0.9
PROBE_CHARS = 300           # a sample is cut at the last sentence end before this
PROBE_TIP = "Sample short texts from the loaded model with only this adapter active, and choose which to keep"


class ExamplesEditor(QWidget):
    changed = Signal(str)  # the adapter whose examples were saved

    def __init__(self, library, jobs, parent=None):
        super().__init__(parent)
        self.library, self.jobs = library, jobs
        self.name: str | None = None
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
        self.probe_button = QPushButton("Generate probe examples…", toolTip=PROBE_TIP)
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
        self.set_adapter(None)

    # ---- state ----
    def set_adapter(self, name: str | None):
        """Show `name`'s examples (None: nothing selected)."""
        if name is not None and name == self.name:
            return
        self.name = name
        self.notice.show_message("")
        prompts = []
        if name is not None:
            from engine.errors import SwitchboardError  # imported by the time a library is open

            try:
                prompts = self.library.examples(name)
            except (SwitchboardError, OSError) as e:
                self.notice.show_message(f"Could not read the examples of '{name}': {e}", "error")
        self._fill(prompts)
        self.update_state()

    def prompts(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def update_state(self):
        has = self.name is not None
        for w in (self.list, self.add_button, self.paste_button, self.import_button):
            w.setEnabled(has)
        self.delete_button.setEnabled(has and self.list.count() > 0)
        bank = self.jobs.bank
        self.probe_button.setEnabled(has and bank is not None and self.name in bank)
        self.probe_button.setToolTip(PROBE_TIP if self.probe_button.isEnabled() else
                                     PROBE_TIP + "\n(needs a loaded model with this library's adapters, this one "
                                     "enabled)")
        self.title.setText(f"Router examples · {self.name}" if has else "Router examples")
        if not has:
            self.count.setText("Select an adapter to see and edit its router examples.")
            return
        from app.library import MIN_EXAMPLES  # imported by the time a library is open

        n = self.list.count()
        if n < MIN_EXAMPLES:
            self.count.setText(f"⚠ {n} examples: fewer than {MIN_EXAMPLES}, the router cannot reliably learn when "
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
        """Add the prompts of a .jsonl ({"prompt": ...} per line) or .txt (one per line) file."""
        from engine.errors import SwitchboardError

        try:
            n = len(self.prompts())
            total = self.library.import_examples(self.name, path, append=True)
        except (SwitchboardError, OSError) as e:
            self.notice.show_message(str(e), "error")
            return
        self._fill(self.library.examples(self.name))
        self.notice.show_message(f"Imported {total - n} examples from {path}.", "info")
        self.update_state()
        self.changed.emit(self.name)

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
        from engine.errors import SwitchboardError

        prompts = [p.strip() for p in self.prompts() if p.strip()]
        if prompts != self.prompts():
            self._fill(prompts)
        self.list.blockSignals(True)
        for i in range(self.list.count()):  # an edited example's tooltip
            self.list.item(i).setToolTip(self.list.item(i).text())
        self.list.blockSignals(False)
        try:
            self.library.set_examples(self.name, prompts)
        except (SwitchboardError, OSError) as e:
            self.notice.show_message(f"Could not save the examples of '{self.name}': {e}", "error")
            return
        self.notice.show_message("")
        self.update_state()
        self.changed.emit(self.name)

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
        """Sample PROBE_ROWS short texts with only this adapter active (engine thread), then offer them."""
        name = self.name
        seed = random.randrange(2**31)  # new samples on every click

        def job(engine, progress):
            from engine.errors import ModelError

            if engine is None or name not in engine.adapters:
                raise ModelError(f"probe examples for '{name}' need a loaded model with this library's adapters "
                                 "(open your model, and enable the adapter)")
            progress(f"Sampling probe examples from {name}…", -1)
            conversations = [[{"role": "user", "content": PROBE_PROMPTS[i % len(PROBE_PROMPTS)]}]
                             for i in range(PROBE_ROWS)]
            rows = engine.generate_batch(conversations, mixes=[{name: 1.0}] * PROBE_ROWS,
                                         max_new_tokens=PROBE_TOKENS, temperature=PROBE_TEMPERATURE, seed=seed)
            return list(dict.fromkeys(t for t in (_clean(r["text"]) for r in rows) if t))

        def done(samples, _with_engine):
            self.probe_button.setText("Generate probe examples…")
            self.update_state()
            if not samples:
                self.notice.show_message(f"The model produced no text with '{name}' active; try again.", "warn")
                return
            self.probe_dialog = ProbeDialog(name, samples, self)
            self.probe_dialog.accepted.connect(
                lambda: self.add_prompts(self.probe_dialog.chosen()) if self.name == name else None)
            self.probe_dialog.open()

        def failed(message):
            self.probe_button.setText("Generate probe examples…")
            self.update_state()
            self.notice.show_message(message, "error")

        self.probe_button.setEnabled(False)
        self.probe_button.setText("Sampling from the model…")
        self.jobs.run(job, done, failed)


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


def _clean(text: str) -> str:
    """One line, at most PROBE_CHARS, cut after a sentence end when there is one."""
    text = re.sub(r"\s+", " ", text.replace("\ufffd", "")).strip()  # U+FFFD: undecodable bytes
    if len(text) > PROBE_CHARS:
        cut = max(text.rfind(c, 0, PROBE_CHARS) for c in ".!?")
        text = text[:cut + 1] if cut > 0 else text[:PROBE_CHARS]
    return text
