"""Generation controls (top-p, max adapters, temperature, max new tokens) and per-adapter pin / mute.

They show and give back fields of the engine's GenerationSettings, by name (`values()`). Pins and mutes apply to
every turn sent while they are set (the next one included) until unchecked."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QDoubleSpinBox, QFormLayout, QHeaderView, QLabel, QSpinBox,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ui.colors import adapter_color

PIN, MUTE = 1, 2  # table columns


class Controls(QWidget):
    changed = Signal()

    def __init__(self):
        super().__init__()
        self.top_p = QDoubleSpinBox(decimals=2, minimum=0.05, maximum=1.0, singleStep=0.05,
                                    toolTip="Keep the most probable adapters until their probabilities sum to p")
        self.max_adapters = QSpinBox(minimum=0, maximum=64, specialValueText="no limit",
                                     toolTip="At most this many adapters per sentence")
        self.temperature = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=2.0, singleStep=0.1,
                                          specialValueText="0 (greedy)")
        self.max_new_tokens = QSpinBox(minimum=1, maximum=8192, singleStep=64)
        for box in (self.top_p, self.max_adapters, self.temperature, self.max_new_tokens):
            box.valueChanged.connect(self.changed)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignRight)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max adapters", self.max_adapters)
        form.addRow("Temperature", self.temperature)
        form.addRow("Max new tokens", self.max_new_tokens)

        self.table = QTableWidget(0, 3)
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
        """Show the fields of `settings` (a GenerationSettings) that these controls set."""
        self.top_p.setValue(settings.top_p)
        self.max_adapters.setValue(settings.max_adapters or 0)
        self.temperature.setValue(settings.temperature)
        self.max_new_tokens.setValue(settings.max_new_tokens)

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
            for col, on in ((PIN, name in pinned), (MUTE, name in muted)):
                box = QTableWidgetItem()
                box.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
                box.setCheckState(Qt.Checked if on else Qt.Unchecked)
                self.table.setItem(row, col, box)
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
                "temperature": self.temperature.value(), "max_new_tokens": self.max_new_tokens.value(),
                "pinned": tuple(self._checked(PIN)), "muted": tuple(self._checked(MUTE))}
