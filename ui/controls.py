"""Generation controls: a sampling preset, routing (routing top-p, max adapters), sampling (temperature, top-k,
sampling top-p, repetition penalty), max new tokens, and per-adapter pin / mute.

They show and give back fields of the engine's GenerationSettings, by name (`values()`). The two top-p's are
named apart everywhere: *routing* top-p picks adapters, *sampling* top-p picks tokens. Pins and mutes apply to
every turn sent while they are set (the next one included) until unchecked."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QHeaderView,
                               QInputDialog, QLabel, QMenu, QSpinBox, QTableWidget, QTableWidgetItem, QToolButton,
                               QVBoxLayout, QWidget)

from ui.colors import adapter_color

PIN, MUTE = 1, 2  # table columns
CUSTOM = "Custom"  # the preset box when the values match no preset


class Controls(QWidget):
    changed = Signal()
    presetChosen = Signal(str)           # the user picked a preset: show its values (set_values)
    savePresetRequested = Signal(str)    # save the sampling values shown under this name
    deletePresetRequested = Signal(str)

    def __init__(self):
        super().__init__()
        self.preset = QComboBox(toolTip="Sampling presets: how the next token is picked. Routing is not changed.")
        self.preset.activated.connect(lambda i: self.preset.itemText(i) != CUSTOM and
                                      self.presetChosen.emit(self.preset.itemText(i)))
        self.preset_menu = QMenu(self)
        self.preset_menu.addAction("Save as preset…", self._ask_preset_name)
        self.delete_preset = self.preset_menu.addAction(
            "Delete this preset", lambda: self.deletePresetRequested.emit(self.preset.currentText()))
        more = QToolButton(text="⋯", toolTip="Save or delete a preset", popupMode=QToolButton.InstantPopup)
        more.setMenu(self.preset_menu)
        self._deletable: set[str] = set()

        self.top_p = QDoubleSpinBox(decimals=2, minimum=0.05, maximum=1.0, singleStep=0.05,
                                    toolTip="Routing top-p: keep the most probable adapters until their router "
                                            "probabilities sum to p")
        self.max_adapters = QSpinBox(minimum=0, maximum=64, specialValueText="no limit",
                                     toolTip="At most this many adapters per sentence")
        self.temperature = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=2.0, singleStep=0.1,
                                          specialValueText="0 (greedy)",
                                          toolTip="0 picks the most likely token; higher values vary more")
        self.top_k = QSpinBox(minimum=0, maximum=1000, specialValueText="off",
                              toolTip="Sample only among the k most likely tokens")
        self.sample_top_p = QDoubleSpinBox(decimals=2, minimum=0.05, maximum=1.0, singleStep=0.05,
                                           toolTip="Sampling (nucleus) top-p: sample among the most likely tokens "
                                                   "whose probabilities sum to p; 1.00 = off")
        self.repetition_penalty = QDoubleSpinBox(decimals=2, minimum=0.5, maximum=2.0, singleStep=0.05,
                                                 toolTip="Above 1 makes tokens already in the conversation less "
                                                         "likely; 1.00 = off")
        self.max_new_tokens = QSpinBox(minimum=1, maximum=8192, singleStep=64,
                                       toolTip="The reply's length limit; a reply cut off here can be continued")
        self._boxes = (self.top_p, self.max_adapters, self.temperature, self.top_k, self.sample_top_p,
                       self.repetition_penalty, self.max_new_tokens)
        for box in self._boxes:
            box.valueChanged.connect(self.changed)

        preset_row = QHBoxLayout()
        preset_row.addWidget(self.preset, 1)
        preset_row.addWidget(more)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignRight)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Preset", preset_row)
        form.addRow(_section("Routing"))
        form.addRow("Routing top-p", self.top_p)
        form.addRow("Max adapters", self.max_adapters)
        form.addRow(_section("Sampling"))
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k", self.top_k)
        form.addRow("Sampling top-p", self.sample_top_p)
        form.addRow("Repetition penalty", self.repetition_penalty)
        form.addRow("Max new tokens", self.max_new_tokens)

        self.table = QTableWidget(0, 3, minimumHeight=120)
        self.table.setHorizontalHeaderLabels(["Adapter", "Pin", "Mute"])
        self.table.verticalHeader().hide()
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for col in (PIN, MUTE):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        self.table.setToolTip("Pin: always in the mix. Mute: never in the mix.")
        self.table.itemChanged.connect(self._item_changed)

        title = QLabel("Generation", objectName="panelTitle")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        layout.addWidget(title)
        layout.addLayout(form)
        layout.addWidget(self.table, 1)

    def set_values(self, settings):
        """Show the fields of `settings` (a GenerationSettings) that these controls set, pins and mutes of the
        adapters in the table included; `changed` is emitted once."""
        for box in self._boxes:
            box.blockSignals(True)
        self.top_p.setValue(settings.top_p)
        self.max_adapters.setValue(settings.max_adapters or 0)
        self.temperature.setValue(settings.temperature)
        self.top_k.setValue(settings.top_k)
        self.sample_top_p.setValue(settings.sample_top_p)
        self.repetition_penalty.setValue(settings.repetition_penalty)
        self.max_new_tokens.setValue(settings.max_new_tokens)
        for box in self._boxes:
            box.blockSignals(False)
        self._check(set(settings.pinned), set(settings.muted))
        self.changed.emit()

    def set_presets(self, names: list[str], deletable: set[str]):
        """The presets to offer, in order; `deletable`: the user's own (the built-in ones cannot be deleted)."""
        shown = self.preset.currentText()
        self._deletable = deletable
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItems([*names, CUSTOM])
        self.preset.blockSignals(False)
        self.show_preset(shown if shown in names else None)

    def show_preset(self, name: str | None):
        """The preset whose values are shown, or None for "Custom"."""
        self.preset.setCurrentText(name or CUSTOM)
        self.delete_preset.setEnabled(name in self._deletable)

    def _ask_preset_name(self):
        name, ok = QInputDialog.getText(self, "Save preset", "Save these sampling values as the preset:")
        if ok and name.strip():
            self.savePresetRequested.emit(name.strip())

    def set_adapters(self, names: list[str]):
        """Rebuild the adapter table, keeping the pins and mutes of adapters that are still there."""
        pinned, muted = set(self._checked(PIN)), set(self._checked(MUTE))
        self.table.blockSignals(True)
        self.table.setRowCount(len(names))
        for row, name in enumerate(names):
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(adapter_color(name)))
            item = QTableWidgetItem(QIcon(swatch), name)
            item.setToolTip(name)
            self.table.setItem(row, 0, item)
            for col in (PIN, MUTE):
                box = QTableWidgetItem()
                box.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
                self.table.setItem(row, col, box)
        self.table.blockSignals(False)
        self._check(pinned, muted)

    def _check(self, pinned: set[str], muted: set[str]):
        self.table.blockSignals(True)
        for row in range(self.table.rowCount()):
            name = self.table.item(row, 0).text()
            for col, on in ((PIN, name in pinned), (MUTE, name in muted)):
                self.table.item(row, col).setCheckState(Qt.Checked if on else Qt.Unchecked)
        self.table.blockSignals(False)

    def _item_changed(self, item: QTableWidgetItem):
        if item.column() in (PIN, MUTE) and item.checkState() == Qt.Checked:  # pinned and muted exclude each other
            other = self.table.item(item.row(), MUTE if item.column() == PIN else PIN)
            if other is not None:
                other.setCheckState(Qt.Unchecked)
        self.changed.emit()

    def _checked(self, col: int) -> list[str]:
        return [self.table.item(r, 0).text() for r in range(self.table.rowCount())
                if self.table.item(r, col) is not None and self.table.item(r, col).checkState() == Qt.Checked]

    def values(self) -> dict:
        """The GenerationSettings fields these controls set, by name."""
        return {"top_p": self.top_p.value(), "max_adapters": self.max_adapters.value() or None,
                "temperature": self.temperature.value(), "top_k": self.top_k.value(),
                "sample_top_p": self.sample_top_p.value(), "repetition_penalty": self.repetition_penalty.value(),
                "max_new_tokens": self.max_new_tokens.value(),
                "pinned": tuple(self._checked(PIN)), "muted": tuple(self._checked(MUTE))}


def _section(title: str) -> QLabel:
    return QLabel(title, objectName="panelNote")
