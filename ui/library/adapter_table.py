"""The library window's table: one row per adapter (AdapterInfo rows from the library, read by attribute), sortable
through a proxy, with its name editable and an Enabled check box; edits are requests (signals), the row changes
when the library has."""
import functools

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QStyle

from ui import colors

COLUMNS = ("Name", "Rank", "Targets", "Size", "Examples", "Enabled", "Routing accuracy")
NAME, RANK, TARGETS, SIZE, EXAMPLES, ENABLED, ACCURACY = range(len(COLUMNS))
SORT_ROLE = Qt.UserRole
NAME_ROLE = Qt.UserRole + 1  # the adapter's name, whatever the column


class AdapterTableModel(QAbstractTableModel):
    """Rows: AdapterInfo. Editing the name or ticking Enabled asks the panel (signals); the row changes when the
    library has (the next set_rows)."""
    renameRequested = Signal(str, str)
    enableRequested = Signal(str, bool)

    def __init__(self):
        super().__init__()
        self.rows = []
        self.loaded: set[str] | None = None

    def set_rows(self, rows, loaded):
        """Rows appended or changed in place (an import, an edit) update just those rows: a reset makes the view
        and the sorting proxy ask data() for every cell again."""
        rows, loaded = list(rows), None if loaded is None else set(loaded)
        n = len(self.rows)
        if loaded != self.loaded or [a.name for a in rows[:n]] != [a.name for a in self.rows]:
            self.beginResetModel()
            self.rows, self.loaded = rows, loaded
            self.endResetModel()
            return
        for i, (old, new) in enumerate(zip(self.rows, rows)):
            if old != new:
                self.rows[i] = new
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))
        if len(rows) > n:
            self.beginInsertRows(QModelIndex(), n, len(rows) - 1)
            self.rows.extend(rows[n:])
            self.endInsertRows()

    def set_loaded(self, loaded):
        self.loaded = None if loaded is None else set(loaded)
        if self.rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(COLUMNS) - 1))

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Horizontal and role == Qt.ToolTipRole and section == ACCURACY:
            return "Held-out accuracy of the router on this adapter's examples at the last retrain"
        return None

    def flags(self, index):
        flags = Qt.ItemIsEnabled | Qt.ItemIsSelectable
        if index.column() == NAME:
            flags |= Qt.ItemIsEditable
        if index.column() == ENABLED:
            flags |= Qt.ItemIsUserCheckable
        return flags

    def data(self, index, role=Qt.DisplayRole):
        a, col = self.rows[index.row()], index.column()
        if role == NAME_ROLE:
            return a.name
        if role in (Qt.DisplayRole, Qt.EditRole):
            return _display(a, col) if role == Qt.DisplayRole or col != NAME else a.name
        if role == SORT_ROLE:
            return {NAME: a.name.casefold(), RANK: a.rank or 0, TARGETS: ", ".join(a.targets),
                    SIZE: a.size_bytes or 0, EXAMPLES: a.n_examples, ENABLED: int(a.enabled),
                    ACCURACY: -1.0 if a.accuracy is None else a.accuracy}[col]
        if role == Qt.CheckStateRole and col == ENABLED:
            return Qt.Checked if a.enabled else Qt.Unchecked
        if role == Qt.DecorationRole and col == NAME:
            if a.problem:
                return _standard_icon(QStyle.SP_MessageBoxCritical)
            return _swatch(QColor(a.color) if a.color else colors.adapter_color(a.name), a.enabled)
        if role == Qt.DecorationRole and col == EXAMPLES and a.too_few_examples:
            return _standard_icon(QStyle.SP_MessageBoxWarning)
        if role == Qt.ToolTipRole:
            return _tooltip(a, col, self.loaded)
        if role == Qt.ForegroundRole and (not a.enabled or a.problem):
            return QColor("#9aa3ae") if not a.problem else QColor("#b03a2e")
        if role == Qt.TextAlignmentRole and col in (RANK, SIZE, EXAMPLES, ACCURACY):
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None

    def setData(self, index, value, role=Qt.EditRole):
        name = self.rows[index.row()].name
        if index.column() == NAME and role == Qt.EditRole:
            self.renameRequested.emit(name, str(value))
            return True
        if index.column() == ENABLED and role == Qt.CheckStateRole:
            self.enableRequested.emit(name, Qt.CheckState(value) == Qt.Checked)
            return True
        return False


@functools.cache
def _standard_icon(which) -> QIcon:
    return QApplication.style().standardIcon(which)


def _display(a, col) -> str:
    if col == NAME:
        return a.name
    if col == RANK:
        return "" if a.rank is None else str(a.rank)
    if col == TARGETS:
        return ", ".join(t.removesuffix("_proj") for t in a.targets)
    if col == SIZE:
        return "" if a.size_bytes is None else _format_size(a.size_bytes)
    if col == EXAMPLES:
        return str(a.n_examples)
    if col == ACCURACY:
        return "—" if a.accuracy is None else f"{a.accuracy:.0%}"
    return ""


def _tooltip(a, col, loaded) -> str | None:
    if a.problem:
        return a.problem
    if col == NAME:
        state = "" if loaded is None else "\nloaded in the model" if a.name in loaded else "\nnot loaded in the model"
        return f"{a.name}\nfrom {a.source or 'unknown'}\nimported {a.imported or 'unknown'}{state}"
    if col == TARGETS:
        return ", ".join(a.targets)
    if col == EXAMPLES and a.too_few_examples:
        return (f"Only {a.n_examples} router examples: the router cannot learn when to pick this adapter. "
                "Add some in the Examples tab (or generate probe examples).")
    if col == ENABLED:
        return "Disabled adapters are not loaded, so never routed"
    if col == ACCURACY:
        return "Held-out routing accuracy at the last retrain" if a.accuracy is not None else "Not trained yet"
    return None


def _swatch(color: QColor, enabled: bool) -> QIcon:
    pix = QPixmap(QSize(14, 14))
    pix.fill(Qt.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.Antialiasing)
    if not enabled:
        color = QColor(color)
        color.setAlpha(90)
    p.setBrush(color)
    p.setPen(color.darker(120))
    p.drawRoundedRect(1, 1, 12, 12, 3, 3)
    p.end()
    return QIcon(pix)


def _format_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
