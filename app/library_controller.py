"""LibraryController: the library window (ui/library/window.py) wired to the library service
(app/library_service.py) and the engine worker.

Imports, retrains, probe sampling and the edits that change the bank (rename, enable, remove) run as the worker's
library jobs, one at a time after whatever the engine is doing; their steps (ImportStep, Epoch) come back as the
worker's events. Reads, colours and examples are small atomic file writes, done here in the window's thread."""
import threading

from PySide6.QtCore import QObject, QTimer

from engine.errors import SwitchboardError

from .library import MIN_EXAMPLES
from .library_service import Epoch, ImportStep, LibraryService
from ui import colors
from ui.library.window import LibraryWindow

REFRESH_MS = 150  # an import refreshes the table at most this often


class LibraryController(QObject):
    def __init__(self, root, app, parent_window=None):
        """app: the main window's Controller (app/controller.py), whose worker runs the jobs and whose status bar
        shows their progress."""
        super().__init__(parent_window)
        self.service = LibraryService(root)
        self.library = self.service.library
        self.app = app
        self._jobs = 0              # jobs run and not yet ended
        self._imports = 0
        self._cancel_import = threading.Event()
        self._cancel_retrain = threading.Event()
        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_MS, timeout=self.refresh)

        w = self.window = LibraryWindow(str(self.library.root), MIN_EXAMPLES, parent_window)
        w.importRequested.connect(self._import)
        w.cancelImportRequested.connect(self._cancel_import.set)
        w.renameRequested.connect(lambda old, new: self._edit(app.worker.rename_adapter(self.service, old, new), new))
        w.enableRequested.connect(
            lambda name, on: self._edit(app.worker.enable_adapter(self.service, name, on), name))
        w.removeRequested.connect(self._remove)
        w.colorRequested.connect(self._set_color)
        w.adapterSelected.connect(self._show_examples)
        w.examples.edited.connect(self._save_examples)
        w.examples.importRequested.connect(self._import_examples)
        w.examples.probesRequested.connect(self._sample_probes)
        w.retrain.retrainRequested.connect(self._retrain)
        w.retrain.cancelRequested.connect(self._cancel_retrain.set)
        app.signals.model.connect(self._on_model)
        app.signals.step.connect(self._on_step)
        self._show_bank(app.model)
        self.refresh()
        w.table.selectRow(0)

    @property
    def root(self):
        return self.library.root

    @property
    def busy(self) -> bool:
        return self._jobs > 0

    def show(self, import_menu: bool = False):
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()
        if import_menu:
            self.window.import_button.showMenu()

    def close(self):
        """Close the window for good (the library folder changed): its worker events go nowhere now."""
        self.app.signals.model.disconnect(self._on_model)
        self.app.signals.step.disconnect(self._on_step)
        self.window.close()
        self.window.deleteLater()
        self.deleteLater()

    def refresh(self):
        """Re-read the library (small JSON files) and show it; keeps the selection by name."""
        try:
            rows = self.library.list()
            router = self.library.router_info()
        except SwitchboardError as e:
            self.window.set_rows([], str(e))
            self.window.retrain.show_router(None, [], str(e))
            return
        self.window.set_rows(rows)
        self.window.retrain.show_router(router, rows)

    def _run(self, future, on_done, on_failed):
        self._jobs += 1

        def ended(callback, value):
            self._jobs -= 1
            callback(value)

        self.app.run(future, lambda result: ended(on_done, result), lambda message: ended(on_failed, message))

    def _on_model(self, changed):
        self._show_bank(changed.info)

    def _show_bank(self, info):
        self.window.set_bank(None if info is None else list(info.adapters), None if info is None else info.model_name)

    def _on_step(self, step):
        if isinstance(step, ImportStep):
            self.window.import_step(step.done, step.total, step.result)
            self._refresh_timer.start()
        elif isinstance(step, Epoch):
            self.window.retrain.show_epoch(step.epoch, step.epochs, step.loss, step.accuracy)

    # ---- importing ----
    def _import(self, paths: list[str]):
        if self._imports == 0:
            self._cancel_import.clear()
        self._imports += 1
        future = self.app.worker.import_adapters(self.service, paths, self._cancel_import.is_set)
        self._run(future, lambda outcome: self._import_ended(self.window.import_done, outcome.value, outcome.loaded),
                  lambda message: self._import_ended(self.window.import_failed, message))

    def _import_ended(self, show, *args):
        self._imports -= 1
        show(*args)
        self.refresh()

    # ---- editing ----
    def _edit(self, future, select=None):
        def done(_result):
            self.refresh()
            self.window.edited(select)

        def failed(message):
            self.refresh()
            self.window.edited(error=message)

        self._run(future, done, failed)

    def _remove(self, name: str):
        if self.window.bank is not None and name in self.window.bank:
            self.app.worker.exclude(name)  # a reply in progress stops using it after its current sentence
        self._edit(self.app.worker.remove_adapter(self.service, name))

    def _set_color(self, name: str, color: str | None):
        """meta.json only: the engine does not know colours."""
        try:
            self.library.set_color(name, color)
            colors.choose(name, color)  # the chat, chart and timeline use it from their next update
        except (SwitchboardError, OSError) as e:
            self.window.notice.show_message(f"Could not change the colour of '{name}': {e}", "error")
        self.refresh()

    # ---- examples ----
    def _show_examples(self, name: str):
        try:
            self.window.examples.show_adapter(name, self.library.examples(name))
        except (SwitchboardError, OSError) as e:
            self.window.examples.show_adapter(name, [], f"Could not read the examples of '{name}': {e}")

    def _save_examples(self, name: str, prompts: list[str]):
        try:
            self.library.set_examples(name, prompts)
        except (SwitchboardError, OSError) as e:
            self.window.examples.save_failed(f"Could not save the examples of '{name}': {e}")
            return
        self.refresh()
        self.window.select(name)

    def _import_examples(self, name: str, path: str):
        try:
            self.library.import_examples(name, path, append=True)
        except (SwitchboardError, OSError) as e:
            self.window.examples.imported([], path, str(e))
            return
        self.window.examples.imported(self.library.examples(name), path)
        self.refresh()
        self.window.select(name)

    def _sample_probes(self, name: str):
        show = self.window.examples.show_probes
        self._run(self.app.worker.sample_probes(self.service, name), lambda samples: show(name, samples),
                  lambda message: show(name, [], message))

    # ---- router ----
    def _retrain(self, full: bool):
        self._cancel_retrain.clear()

        def done(outcome):
            self.window.retrain.set_running(False)
            self.refresh()
            self.window.retrained(outcome.value, outcome.loaded)

        def failed(message):
            self.window.retrain.set_running(False)
            self.refresh()
            self.window.retrain.status.show_message(message, "error")

        self._run(self.app.worker.retrain_router(self.service, full, self._cancel_retrain.is_set), done, failed)
