"""The adapter library window: a sortable, filterable table of the library's adapters, a drop zone and an Import
button, import results per item, rename / recolour / enable / remove, and beside them the selected adapter's
router examples (ui/library/examples_editor.py) and the router's retraining (ui/library/retrain_panel.py).

A passive view: it shows the rows, bank and results it is given and asks for every change through its signals
(app/library_controller.py runs them: the ones that touch the engine or copy files on the engine thread)."""
from pathlib import Path

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QColorDialog, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QListWidget, QListWidgetItem, QMenu, QMessageBox, QProgressBar, QPushButton,
                               QSplitter, QStyle, QTableView, QTabWidget, QVBoxLayout, QWidget)

from ui import colors
from ui.library.adapter_table import NAME, NAME_ROLE, SORT_ROLE, TARGETS, AdapterTableModel
from ui.library.drop_zone import DropZone
from ui.library.examples_editor import ExamplesEditor
from ui.library.retrain_panel import RetrainPanel
from ui.notice import Notice


class LibraryWindow(QWidget):
    importRequested = Signal(list)           # paths dropped or chosen
    cancelImportRequested = Signal()
    renameRequested = Signal(str, str)       # old, new
    enableRequested = Signal(str, bool)
    removeRequested = Signal(str)            # confirmed by the user
    colorRequested = Signal(str, object)     # name, "#rrggbb" or None (automatic)
    adapterSelected = Signal(str)            # show its examples (examples.show_adapter)

    def __init__(self, root: str, min_examples: int, parent=None):
        """root: the library folder (shown); min_examples: fewer router examples than this are flagged."""
        super().__init__(parent, Qt.Window, objectName="libraryPanel")  # its own window, not a dialog over the chat
        self.root = root
        self.setWindowTitle(f"Adapter library — {root}")
        self.setAttribute(Qt.WA_StyledBackground)
        self.setAcceptDrops(True)  # drops anywhere in the window import, not only on the zone
        self.bank: list[str] | None = None  # the loaded model's adapters; None: no model
        self.model_name: str | None = None
        self._imports = 0          # imports asked for and not finished
        self._counts = [0, 0]      # added, refused since the results were last cleared

        self.examples = ExamplesEditor(min_examples)
        self.retrain = RetrainPanel()
        self.tabs = QTabWidget(documentMode=False)
        self.tabs.addTab(self.examples, "Examples")
        self.tabs.addTab(self.retrain, "Router")
        split = QSplitter(Qt.Horizontal, childrenCollapsible=False)
        split.addWidget(self._build_adapters())
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([720, 480])
        self.notice = Notice()
        self.footer = QLabel(objectName="footer")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 8)
        layout.addWidget(split, 1)
        layout.addWidget(self.notice)
        layout.addWidget(self.footer)
        self.resize(1240, 760)

    def _build_adapters(self) -> QWidget:
        """The left side: toolbar, table, drop zone and import progress above the import results."""
        # ---- adapters: toolbar, table
        self.filter = QLineEdit(placeholderText="Filter by name or target…", clearButtonEnabled=True)
        self.import_button = QPushButton("Import…", objectName="primaryButton")
        import_menu = QMenu(self.import_button)
        import_menu.addAction("Adapter folder or folder of adapters…", self.choose_folder)
        import_menu.addAction("Zip archives…", self.choose_zips)
        self.import_button.setMenu(import_menu)
        self.rename_button = QPushButton("Rename", toolTip="Rename the adapter (or double-click its name)")
        self.color_button = QPushButton("Colour…")
        self.enable_button = QPushButton("Disable", toolTip="Disabled adapters are not loaded, so never routed")
        self.remove_button = QPushButton("Remove…")
        self.rename_button.clicked.connect(lambda: self.table.edit(self._selected_index(NAME)))
        self.color_button.clicked.connect(lambda: self.choose_color(self.selected()))
        self.enable_button.clicked.connect(lambda: self.set_enabled(self.selected(), not self._selected_info().enabled))
        self.remove_button.clicked.connect(lambda: self.remove(self.selected()))
        tools = QHBoxLayout()
        tools.addWidget(self.filter, 1)
        for b in (self.rename_button, self.color_button, self.enable_button, self.remove_button, self.import_button):
            tools.addWidget(b)

        self.model = AdapterTableModel()
        self.model.renameRequested.connect(self.rename)
        self.model.enableRequested.connect(self.set_enabled)
        self.proxy = QSortFilterProxyModel(self, sortRole=SORT_ROLE, filterKeyColumn=-1,
                                           filterCaseSensitivity=Qt.CaseInsensitive)
        self.proxy.setSourceModel(self.model)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView(alternatingRowColors=True, sortingEnabled=True, showGrid=False,
                                selectionBehavior=QAbstractItemView.SelectRows,
                                selectionMode=QAbstractItemView.SingleSelection,
                                editTriggers=QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed,
                                contextMenuPolicy=Qt.CustomContextMenu)
        self.table.setModel(self.proxy)
        self.table.sortByColumn(NAME, Qt.AscendingOrder)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(28)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        # fit the columns to the visible rows only: fitting all of them called data() for every cell at every
        # refresh, and an import of 100 adapters stalled the window up to 0.3 s per refresh (scripts/library_probe.py)
        header.setResizeContentsPrecision(0)
        header.setSectionResizeMode(NAME, QHeaderView.Stretch)
        header.setSectionResizeMode(TARGETS, QHeaderView.Stretch)
        self.table.selectionModel().currentRowChanged.connect(self._selection_changed)
        self.table.customContextMenuRequested.connect(self._context_menu)

        # ---- import: drop zone, progress, results per item
        self.drop_zone = DropZone()
        self.drop_zone.dropped.connect(self.import_paths)
        self.import_progress = QProgressBar(format="%v / %m")
        self.import_label = QLabel(objectName="hint")
        self.cancel_button = QPushButton("Cancel import")
        self.cancel_button.clicked.connect(self.cancelImportRequested)
        self.results_title = QLabel("Import results", objectName="sectionTitle")
        self.results = QListWidget(objectName="importResults", wordWrap=True, alternatingRowColors=True,
                                   selectionMode=QAbstractItemView.ExtendedSelection)
        self.results.setVerticalScrollMode(QAbstractItemView.ScrollPerPixel)
        self.clear_button = QPushButton("Clear", flat=True)
        self.clear_button.clicked.connect(self.clear_results)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.import_progress, 1)
        progress_row.addWidget(self.cancel_button)
        results_head = QHBoxLayout()
        results_head.addWidget(self.results_title, 1)
        results_head.addWidget(self.clear_button)
        self._progress_widgets = (self.import_progress, self.import_label, self.cancel_button)
        for w in self._progress_widgets:
            w.hide()

        left = QWidget()
        lay = QVBoxLayout(left)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(tools)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.drop_zone)
        lay.addLayout(progress_row)
        lay.addWidget(self.import_label)
        self.results_box = QWidget()
        rl = QVBoxLayout(self.results_box)
        rl.setContentsMargins(0, 4, 0, 0)
        rl.addLayout(results_head)
        rl.addWidget(self.results)
        self.results_box.hide()
        split_left = QSplitter(Qt.Vertical, childrenCollapsible=False)
        split_left.addWidget(left)
        split_left.addWidget(self.results_box)
        split_left.setStretchFactor(0, 3)
        split_left.setStretchFactor(1, 1)

        return split_left

    # ---- showing ----
    def set_rows(self, rows, error: str = ""):
        """The library's adapters (AdapterInfo), in index order, or the error that kept them from being read;
        keeps the selection by name."""
        selected = self.selected()
        if error:
            self.notice.show_message(error, "error")
        self.model.set_rows(rows, self.bank)
        if selected is not None:
            self.select(selected)
        if self.selected() is None:
            self.examples.show_adapter(None, [])
        self._update_buttons()
        self._update_footer()

    def set_bank(self, bank: list[str] | None, model_name: str | None):
        """The loaded model's adapters, in bank order (None: no model)."""
        self.bank, self.model_name = bank, model_name
        self.model.set_loaded(bank)
        self._update_footer()
        self.examples.set_bank(bank)

    def selected(self) -> str | None:
        index = self.table.selectionModel().currentIndex()
        return self.proxy.index(index.row(), NAME).data(NAME_ROLE) if index.isValid() else None

    def select(self, name: str):
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, NAME).data(NAME_ROLE) == name:
                self.table.selectRow(row)
                return

    def _selected_index(self, column: int) -> QModelIndex:
        index = self.table.selectionModel().currentIndex()
        return self.proxy.index(index.row(), column) if index.isValid() else QModelIndex()

    def _selected_info(self):
        index = self.table.selectionModel().currentIndex()
        return self.model.rows[self.proxy.mapToSource(index).row()] if index.isValid() else None

    def _selection_changed(self, current, _previous):
        info = self.model.rows[self.proxy.mapToSource(current).row()] if current.isValid() else None
        if info is None:
            self.examples.show_adapter(None, [])
        elif info.name != self.examples.name:
            self.adapterSelected.emit(info.name)
        self._update_buttons()

    def _update_buttons(self):
        info = self._selected_info()
        for b in (self.rename_button, self.color_button, self.enable_button, self.remove_button):
            b.setEnabled(info is not None)
        self.enable_button.setText("Enable" if info is not None and not info.enabled else "Disable")

    def _update_footer(self):
        rows = self.model.rows
        enabled = sum(a.enabled for a in rows)
        text = f"{len(rows)} adapters · {enabled} enabled · {self.root}"
        if self.bank is None:
            text += " · no model loaded: imports are checked against the library's last model"
        elif self.bank == [a.name for a in rows if a.enabled]:
            text += f" · {self.model_name}: all enabled adapters loaded; imports are usable at once"
        else:
            text += (f" · {self.model_name} has other adapters loaded ({len(self.bank)}): changes here take effect "
                     "when it is reopened with this library")
        self.footer.setText(text)

    def retrained(self, report: dict | None, loaded: bool):
        """A retrain ended (report None: cancelled); the rows and router state are already shown."""
        if report is not None:
            self.notice.show_message("")  # the "retrain the router" prompt is answered
        self.retrain.show_outcome(report, loaded)

    # ---- importing ----
    def choose_folder(self):
        folder = QFileDialog.getExistingDirectory(self, "Import an adapter folder or a folder of adapters")
        if folder:
            self.import_paths([folder])

    def choose_zips(self):
        files, _ = QFileDialog.getOpenFileNames(self, "Import adapter archives", "", "Zip archives (*.zip)")
        if files:
            self.import_paths(files)

    def import_paths(self, paths: list[str]):
        """Ask for an import; each adapter's result is listed as soon as it is known (import_step)."""
        if self._imports == 0:
            self.import_progress.setRange(0, 0)  # busy until the first item: the engine may be generating
            self.import_label.setText("Waiting for the engine…")
        self._imports += 1
        for w in self._progress_widgets:
            w.show()
        self.cancel_button.setEnabled(True)
        self.results_box.show()
        self.importRequested.emit([str(p) for p in paths])

    def import_step(self, done: int, total: int, result):
        """One adapter's ImportResult (path, name, ok, message)."""
        self.import_progress.setRange(0, total)
        self.import_progress.setValue(done)
        self.import_label.setText(f"{'Added' if result.ok else 'Refused'} {result.name or Path(result.path).name}")
        self.add_result(result)

    def add_result(self, result):
        """One line per dropped item: a tick and the summary, or a cross and the precise reason."""
        icon = QStyle.SP_DialogApplyButton if result.ok else QStyle.SP_MessageBoxCritical
        label = Path(result.path).name or result.path
        message = result.message.replace(result.path, label, 1)  # refusals start with the item's full path
        item = QListWidgetItem(self.style().standardIcon(icon), message)
        item.setToolTip(f"{result.path}\n{result.message}")
        item.setData(Qt.UserRole, result.ok)
        if not result.ok:
            item.setForeground(QColor("#8e2b20"))
        self.results.addItem(item)
        self.results.scrollToItem(item)
        self._counts[0 if result.ok else 1] += 1
        self.results_title.setText(f"Import results · {self._counts[0]} added · {self._counts[1]} refused")

    def clear_results(self):
        self.results.clear()
        self._counts = [0, 0]
        self.results_title.setText("Import results")
        if self._imports == 0:
            self.results_box.hide()

    def import_done(self, results, loaded: bool):
        """An import ended: its ImportResults; loaded: the adapters were hot-added to the running model too."""
        self._import_ended()
        added = [r.name for r in results if r.ok]
        if not added:
            self.notice.show_message("")
        elif loaded:
            self.notice.show_message(f"Added {', '.join(added)} and loaded into {self.model_name}. The chat routes "
                                     "to them once the router is retrained (Router tab).", "info")
        else:
            self.notice.show_message(f"Added {', '.join(added)} to the library. The chat routes to them once the "
                                     "router is retrained (Router tab).", "info")

    def import_failed(self, message: str):
        self._import_ended()
        self.notice.show_message(message, "error")

    def _import_ended(self):
        self._imports -= 1
        if self._imports == 0:
            for w in self._progress_widgets:
                w.hide()

    # drops anywhere on the window go to the zone (it shows the hover state)
    def dragEnterEvent(self, event):
        self.drop_zone.dragEnterEvent(event)

    def dragLeaveEvent(self, event):
        self.drop_zone.dragLeaveEvent(event)

    def dropEvent(self, event):
        self.drop_zone.dropEvent(event)

    # ---- editing ----
    def rename(self, old: str, new: str):
        new = new.strip()
        if new and new != old:
            self.renameRequested.emit(old, new)

    def set_enabled(self, name: str, enabled: bool):
        self.enableRequested.emit(name, enabled)

    def remove(self, name: str):
        loaded = self.bank is not None and name in self.bank
        text = (f"Remove '{name}' from the library?\n\nIts files and router examples are deleted from "
                f"{self.root}. The router needs a retrain afterwards.")
        if loaded:
            text += "\n\nIt is loaded: a reply in progress stops using it after the current sentence."
        answer = QMessageBox.question(self, "Remove adapter", text, QMessageBox.Yes | QMessageBox.Cancel,
                                      QMessageBox.Cancel)
        if answer == QMessageBox.Yes:
            self.removeRequested.emit(name)

    def choose_color(self, name: str):
        info = next(a for a in self.model.rows if a.name == name)
        initial = QColor(info.color) if info.color else colors.adapter_color(name)
        color = QColorDialog.getColor(initial, self, f"Colour of {name}")
        if color.isValid():
            self.set_color(name, color.name())

    def set_color(self, name: str, color: str | None):
        self.colorRequested.emit(name, color)

    def edited(self, select: str | None = None, error: str = ""):
        """An edit ended (the rows are shown again): `select` the adapter it concerned, or say why it failed."""
        self.notice.show_message(error, "error")
        if select is not None and not error:
            self.select(select)

    def _context_menu(self, pos):
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        info = self.model.rows[self.proxy.mapToSource(index).row()]
        menu = QMenu(self)
        menu.addAction("Rename", lambda: self.table.edit(self.proxy.index(index.row(), NAME)))
        menu.addAction("Colour…", lambda: self.choose_color(info.name))
        reset = menu.addAction("Automatic colour", lambda: self.set_color(info.name, None))
        reset.setEnabled(info.color is not None)
        menu.addAction("Enable" if not info.enabled else "Disable",
                       lambda: self.set_enabled(info.name, not info.enabled))
        menu.addSeparator()
        menu.addAction("Remove…", lambda: self.remove(info.name))
        menu.popup(self.table.viewport().mapToGlobal(pos))
