"""The adapter library window: a sortable, filterable table of the library's adapters, a drop zone and an Import
button, import results per item, rename / recolour / enable / remove, and beside them the selected adapter's
router examples and the router's retraining.

Everything that touches the engine or copies adapters runs on the engine thread (ui/library_jobs.py); only
colour and example edits, which are small atomic writes of one file, are Library calls from here.
`install_library_panel` adds the window and its menu to the main window."""
import functools
import threading
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QColorDialog, QDialog, QFileDialog, QFrame, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QListWidget, QListWidgetItem, QMenu, QMessageBox,
                               QProgressBar, QPushButton, QSplitter, QStyle, QTableView, QTabWidget, QVBoxLayout,
                               QWidget)

from ui import colors
from ui.examples_editor import ExamplesEditor
from ui.library_jobs import LibraryJobs
from ui.notice import Notice
from ui.retrain_panel import RetrainPanel

COLUMNS = ("Name", "Rank", "Targets", "Size", "Examples", "Enabled", "Routing accuracy")
NAME, RANK, TARGETS, SIZE, EXAMPLES, ENABLED, ACCURACY = range(len(COLUMNS))
SORT_ROLE = Qt.UserRole
NAME_ROLE = Qt.UserRole + 1  # the adapter's name, whatever the column
REFRESH_MS = 150  # an import refreshes the table at most this often

STYLE = """
#libraryPanel { background: #f4f6f9; }
#dropZone { border: 2px dashed #b6c2d2; border-radius: 10px; background: #fbfcfd; }
#dropZone[hover="true"] { border-color: #4e79a7; background: #eaf1fa; }
#dropTitle { font-weight: 600; color: #3b4656; font-size: 10.5pt; }
#dropText, #footer, #hint { color: #6b7684; }
#sectionTitle { font-weight: 600; color: #3b4656; font-size: 10pt; }
#primaryButton { background: #4e79a7; color: white; border: none; border-radius: 6px; padding: 5px 14px;
                 font-weight: 600; }
#primaryButton:disabled { background: #aab7c7; }
QTableView, QListWidget { background: #ffffff; border: 1px solid #dde2e8; border-radius: 6px;
                          alternate-background-color: #f7f9fb; selection-background-color: #dbe6f3;
                          selection-color: #1f2a37; }
QTableView { gridline-color: transparent; }
QListWidget::item { padding: 3px 2px; }
QHeaderView::section { background: #f0f3f7; border: none; border-bottom: 1px solid #dde2e8; padding: 4px 6px;
                       font-weight: 600; color: #3b4656; }
QTabWidget::pane { border: 1px solid #dde2e8; border-radius: 6px; background: #ffffff; top: -1px; }
QTabBar::tab { padding: 6px 16px; border: 1px solid transparent; color: #566173; }
QTabBar::tab:selected { background: #ffffff; border: 1px solid #dde2e8; border-bottom-color: #ffffff;
                        border-top-left-radius: 6px; border-top-right-radius: 6px; color: #1f2a37; font-weight: 600; }
QLineEdit { background: #ffffff; border: 1px solid #c9d1dc; border-radius: 6px; padding: 4px 6px; }
QLineEdit:focus { border-color: #4e79a7; }
QProgressBar { border: 1px solid #c9d1dc; border-radius: 5px; background: #ffffff; text-align: center;
               height: 16px; }
QProgressBar::chunk { background: #4e79a7; border-radius: 4px; }
"""


def install_library_panel(main_window, worker, library_dir):
    """Add a Library menu (Adapter library…, Import adapters…) that opens the library window, built on first
    use and again when library_dir() (a callable: the folder can change in Settings) names another folder.
    app.library (it imports torch: seconds) is only imported when the window first opens. -> the QAction that
    opens the window."""
    window = None

    def open_window(import_menu=False):
        nonlocal window
        root = library_dir()
        if window is not None and window.findChild(LibraryPanel).library.root != root:
            if window.findChild(LibraryJobs).busy:  # its results must reach it: switch when it is done
                main_window.statusBar().showMessage(f"The library changes to {root} when the running import or "
                                                    "retrain finishes; open it again then.", 15000)
            else:
                window.close()
                window.deleteLater()  # with its LibraryJobs: only the open library's jobs listen to the worker
                window = None
        if window is None:
            from app.library import Library  # see the docstring: not at start-up
            lib = Library(root)
            window = QDialog(main_window, windowTitle=f"Adapter library — {lib.root}")
            window.setWindowFlag(Qt.Window)  # its own window (minimise, maximise), not a dialog over the chat
            jobs = LibraryJobs(worker, lib, submit=main_window._submit, info=main_window.model_info, parent=window)
            layout = QVBoxLayout(window)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.addWidget(LibraryPanel(lib, jobs))
            window.resize(1240, 760)
        window.show()
        window.raise_()
        window.activateWindow()
        if import_menu:
            panel = window.findChild(LibraryPanel)
            panel.import_button.showMenu()

    menu = main_window.menuBar().addMenu("&Library")
    show = QAction("Adapter &library…", main_window, shortcut=QKeySequence("Ctrl+L"))
    show.triggered.connect(lambda: open_window())
    add = QAction("&Import adapters…", main_window, shortcut=QKeySequence("Ctrl+I"))
    add.triggered.connect(lambda: open_window(import_menu=True))
    menu.addActions([show, add])
    return show


class LibraryPanel(QWidget):
    def __init__(self, library, jobs: LibraryJobs, parent=None):
        super().__init__(parent, objectName="libraryPanel")
        self.library, self.jobs = library, jobs
        self.setAttribute(Qt.WA_StyledBackground)
        self.setStyleSheet(STYLE)
        self.setAcceptDrops(True)  # drops anywhere in the window import, not only on the zone
        self._cancel_import = threading.Event()
        self._imports = 0          # import jobs submitted and not finished
        self._counts = [0, 0]      # added, refused since the results were last cleared
        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_MS, timeout=self.refresh)

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
        # refresh, and an import of 100 adapters stalled the window up to 0.3 s per refresh (library_probe.py)
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
        self.cancel_button.clicked.connect(self._cancel_import.set)
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

        # ---- the selected adapter's examples; the router
        self.examples = ExamplesEditor(library, jobs)
        self.examples.changed.connect(self._examples_changed)
        self.retrain = RetrainPanel(library, jobs)
        self.retrain.finished.connect(self._retrained)
        self.tabs = QTabWidget(documentMode=False)
        self.tabs.addTab(self.examples, "Examples")
        self.tabs.addTab(self.retrain, "Router")

        split = QSplitter(Qt.Horizontal, childrenCollapsible=False)
        split.addWidget(split_left)
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

        jobs.bankChanged.connect(self._bank_changed)
        self.refresh()
        if self.proxy.rowCount():
            self.table.selectRow(0)

    # ---- reading ----
    def refresh(self):
        """Re-read the library (small JSON files) and redraw; keeps the selection by name."""
        from engine.errors import SwitchboardError  # the library is open, so the engine package is imported

        selected = self.selected()
        try:
            rows = self.library.list()
        except SwitchboardError as e:
            self.notice.show_message(str(e), "error")
            rows = []
        self.model.set_rows(rows, self.jobs.bank)
        if selected is not None:
            self.select(selected)
        if self.selected() is None:
            self.examples.set_adapter(None)
        self._update_buttons()
        self.retrain.refresh()
        self._update_footer(rows)

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
        self.examples.set_adapter(info.name if info else None)
        self._update_buttons()

    def _update_buttons(self):
        info = self._selected_info()
        for b in (self.rename_button, self.color_button, self.enable_button, self.remove_button):
            b.setEnabled(info is not None)
        self.enable_button.setText("Enable" if info is not None and not info.enabled else "Disable")

    def _update_footer(self, rows):
        enabled = sum(a.enabled for a in rows)
        text = f"{len(rows)} adapters · {enabled} enabled · {self.library.root}"
        bank = self.jobs.bank
        if bank is None:
            text += " · no model loaded: imports are checked against the library's last model"
        elif bank == [a.name for a in rows if a.enabled]:
            text += f" · {self.jobs.model_name}: all enabled adapters loaded; imports are usable at once"
        else:
            text += (f" · {self.jobs.model_name} has other adapters loaded ({len(bank)}): changes here take effect "
                     "when it is reopened with this library")
        self.footer.setText(text)

    def _bank_changed(self):
        self.model.set_loaded(self.jobs.bank)
        self._update_footer(self.model.rows)
        self.examples.update_state()

    def _retrained(self, report):
        if report is not None:
            self.notice.show_message("")  # the "retrain the router" prompt is answered
        self.refresh()

    def _examples_changed(self, name: str):
        self.refresh()
        self.select(name)

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
        """Import on the engine thread; each adapter's result is listed as soon as it is known."""
        if self._imports == 0:
            self._cancel_import.clear()
            self.import_progress.setRange(0, 0)  # busy until the first item: the engine may be generating
            self.import_label.setText("Waiting for the engine…")
        self._imports += 1
        for w in self._progress_widgets:
            w.show()
        self.cancel_button.setEnabled(True)
        self.results_box.show()
        cancel = self._cancel_import.is_set
        paths = [str(p) for p in paths]

        def job(engine, progress):
            def step(done, total, result):
                progress(f"Importing adapters: {done} of {total}", done / total)
                self.jobs.report(self._import_step, (done, total, result))
            return self.library.import_paths(paths, engine=engine, progress=step, cancel=cancel)

        self.jobs.run(job, self._import_done, self._import_failed)

    def _import_step(self, payload):
        done, total, result = payload
        self.import_progress.setRange(0, total)
        self.import_progress.setValue(done)
        self.import_label.setText(f"{'Added' if result.ok else 'Refused'} {result.name or Path(result.path).name}")
        self.add_result(result)
        self._refresh_timer.start()

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

    def _import_done(self, results, with_engine: bool):
        self._import_ended()
        added = [r.name for r in results if r.ok]
        if not added:
            self.notice.show_message("")
        elif with_engine:
            self.notice.show_message(f"Added {', '.join(added)} and loaded into {self.jobs.model_name}. "
                                     "Retrain the router (Router tab) so that it routes to them.", "info")
        else:
            self.notice.show_message(f"Added {', '.join(added)} to the library. Retrain the router (Router tab) "
                                     "so that it routes to them.", "info")

    def _import_failed(self, message: str):
        self._import_ended()
        self.notice.show_message(message, "error")

    def _import_ended(self):
        self._imports -= 1
        if self._imports == 0:
            for w in self._progress_widgets:
                w.hide()
        self.refresh()

    # drops anywhere on the panel go to the zone (it shows the hover state)
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
            self._edit(lambda engine: self.library.rename(old, new, engine), select=new)

    def set_enabled(self, name: str, enabled: bool):
        self._edit(lambda engine: self.library.set_enabled(name, enabled, engine), select=name)

    def remove(self, name: str):
        loaded = self.jobs.bank is not None and name in self.jobs.bank
        text = (f"Remove '{name}' from the library?\n\nIts files and router examples are deleted from "
                f"{self.library.root}. The router needs a retrain afterwards.")
        if loaded:
            text += "\n\nIt is loaded: a reply in progress stops using it after the current sentence."
        answer = QMessageBox.question(self, "Remove adapter", text, QMessageBox.Yes | QMessageBox.Cancel,
                                      QMessageBox.Cancel)
        if answer == QMessageBox.Yes:
            if loaded:
                self.jobs.worker.exclude(name)
            self._edit(lambda engine: self.library.remove(name, engine))

    def choose_color(self, name: str):
        info = self.library.get(name)
        initial = QColor(info.color) if info.color else colors.adapter_color(name)
        color = QColorDialog.getColor(initial, self, f"Colour of {name}")
        if color.isValid():
            self.set_color(name, color.name())

    def set_color(self, name: str, color: str | None):
        """A direct write: meta.json only (the engine does not know colours)."""
        from engine.errors import SwitchboardError

        try:
            self.library.set_color(name, color)
            colors.choose(name, color)  # the chat, chart and timeline use it from their next update
        except (SwitchboardError, OSError) as e:
            self.notice.show_message(f"Could not change the colour of '{name}': {e}", "error")
        self.refresh()

    def _edit(self, change, select=None):
        """Run `change(engine or None)` on the engine thread, then re-read the library."""
        def done(_result, _with_engine):
            self.notice.show_message("")
            self.refresh()
            if select is not None:
                self.select(select)

        def failed(message):
            self.notice.show_message(message, "error")
            self.refresh()

        self.jobs.run(lambda engine, progress: change(engine), done, failed)

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


class DropZone(QFrame):
    """Accepts local folders and files dropped on it (as file URLs) and emits their paths."""
    dropped = Signal(list)

    def __init__(self):
        super().__init__(objectName="dropZone")
        self.setAcceptDrops(True)
        self.setProperty("hover", False)
        title = QLabel("Drop adapters here", objectName="dropTitle", alignment=Qt.AlignCenter)
        text = QLabel("PEFT adapter folders, .zip archives of one or more adapters, or a folder of adapters. "
                      "Each one is checked against the model and added, or refused with the reason.",
                      objectName="dropText", alignment=Qt.AlignCenter, wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(2)
        layout.addWidget(title)
        layout.addWidget(text)

    def dragEnterEvent(self, event):
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()
            self._hover(True)

    def dragMoveEvent(self, event):
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event):
        self._hover(False)

    def dropEvent(self, event):
        self._hover(False)
        paths = _local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.dropped.emit(paths)

    def _hover(self, on: bool):
        self.setProperty("hover", on)
        self.style().unpolish(self)
        self.style().polish(self)


def _local_paths(mime) -> list[str]:
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
