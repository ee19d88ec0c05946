"""The local server's request log: one row per request the server streamed (time, client, endpoint, model, state,
tokens, routing), newest at the bottom; the selected request's reply and per-sentence routing timeline below."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QPlainTextEdit, QSplitter, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ui.timeline import Timeline

COLUMNS = ("Time", "Client", "Endpoint", "Model", "State", "Tokens", "Routing")
MAX_ROWS = 500  # older requests leave the log


class ServerLog(QWidget):
    requestSelected = Signal(int)  # the id of the request whose reply and routing to show

    def __init__(self, parent=None):
        super().__init__(parent, Qt.Window)
        self.setWindowTitle("Local server requests")
        self.resize(900, 560)
        self.address = QLabel(objectName="panelTitle", wordWrap=True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.Stretch)
        self.table.itemSelectionChanged.connect(self._selected)
        self.timeline = Timeline()
        self.timeline.title.setText("Routing of the selected request, sentence by sentence")
        self.reply = QPlainTextEdit(readOnly=True, placeholderText="Select a request to see its reply")
        details = QSplitter(Qt.Horizontal)
        details.addWidget(self.reply)
        details.addWidget(self.timeline)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.table)
        split.addWidget(details)
        split.setSizes([320, 200])
        layout = QVBoxLayout(self)
        layout.addWidget(self.address)
        layout.addWidget(split, 1)
        self._rows: list[int] = []  # request id of each row

    def set_address(self, text: str):
        self.address.setText(text)

    def show_request(self, request_id: int, cells: tuple[str, ...]):
        """Add the request's row, or update it; cells in COLUMNS order."""
        if request_id in self._rows:
            row = self._rows.index(request_id)
        else:
            if len(self._rows) >= MAX_ROWS:
                self.table.removeRow(0)
                del self._rows[0]
            row = len(self._rows)
            self._rows.append(request_id)
            self.table.insertRow(row)
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            self.table.setItem(row, col, item)
        if not self.table.selectedItems() and not self.table.hasFocus():
            self.table.scrollToBottom()

    def show_detail(self, text: str, mixes: list[dict[str, float]]):
        """The selected request's reply and the mix of each of its sentences."""
        self.reply.setPlainText(text)
        self.timeline.set_sentences(mixes, [0] if mixes else [])

    def _selected(self):
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.requestSelected.emit(self._rows[rows[0].row()])
