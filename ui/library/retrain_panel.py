"""Retrain the router on the library's examples: whether the router is up to date, progress per epoch (loss,
held-out accuracy), cancel, head-only when adapters were only added or removed or full on request; then the
held-out accuracy and a confusion-matrix heatmap (rows: the adapter an example belongs to, columns: the adapter
it was routed to). The retrain itself runs on the engine thread (app/library_controller.py); it replaces the
router only when training finished: a cancel or a failure keeps the old one."""
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ui import theme
from ui.notice import Notice

HEAT = pg.ColorMap([0.0, 1.0], [(241, 244, 248), (46, 84, 140)])  # share of a row: pale grey -> deep blue
MAX_CELL_LABELS = 16   # counts are written in the cells up to this many adapters
MAX_TICKS = 24         # more adapters than this: every k-th name on the axes
TICK_CHARS = 14


class RetrainPanel(QWidget):
    retrainRequested = Signal(bool)              # full
    cancelRequested = Signal()
    epochDone = Signal(int, int, float, object)  # epoch, epochs, loss, held-out accuracy (None: no held-out set)
    finished = Signal(object)                    # the new router's report, or None when cancelled

    def __init__(self, parent=None):
        super().__init__(parent)
        self.running = False
        self.confusion = np.zeros((0, 0), np.int64)  # [true, routed] counts shown in the heatmap

        self.status = Notice()
        self.full = QCheckBox("Full retrain", toolTip="Refit the router's features too (slower). Without it the "
                              "retrain is head-only when adapters were only added or removed, and full when "
                              "examples changed or there is no router yet.")
        self.retrain_button = QPushButton("Retrain router", objectName="primaryButton")
        self.cancel_button = QPushButton("Cancel", toolTip="Stop training; the current router is kept")
        self.retrain_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar(textVisible=False)
        self.progress_label = QLabel(objectName="hint")
        self.result_title = QLabel("Held-out accuracy", objectName="hint")
        self.accuracy = QLabel("—", objectName="accuracy")
        self.summary = QLabel(objectName="hint", wordWrap=True)
        self.matrix_title = QLabel("Confusion matrix", objectName="sectionTitle")

        self.plot = theme.Plot()
        vb = self.plot.getViewBox()
        vb.invertY(True)   # first adapter at the top
        vb.setMouseEnabled(x=False, y=False)
        for side in ("left", "bottom"):
            axis = self.plot.getAxis(side)
            axis.setStyle(tickLength=0)
            axis.setPen(pg.mkPen(None))  # no axis lines around the matrix: only the names
        self.plot.setLabel("left", "examples of adapter")
        self.plot.setLabel("bottom", "routed to adapter")
        self.image = pg.ImageItem(axisOrder="row-major")  # image[row, col] = confusion[true, routed]
        self.image.setLookupTable(HEAT.getLookupTable(0.0, 1.0, 256))
        self.plot.addItem(self.image)
        self._cell_labels: list[pg.TextItem] = []

        controls = QHBoxLayout()
        controls.addWidget(self.full)
        controls.addStretch(1)
        controls.addWidget(self.cancel_button)
        controls.addWidget(self.retrain_button)
        self.empty = QLabel("Train the router to see how well it tells the adapters apart on examples it did not "
                            "train on.", objectName="hint", alignment=Qt.AlignCenter, wordWrap=True)
        self.result_box = QWidget()
        numbers = QVBoxLayout()
        numbers.addWidget(self.result_title)
        numbers.addWidget(self.accuracy)
        head = QHBoxLayout()
        head.addLayout(numbers)
        head.addWidget(self.summary, 1)
        box = QVBoxLayout(self.result_box)
        box.setContentsMargins(0, 8, 0, 0)
        box.addLayout(head)
        box.addWidget(self.matrix_title)
        box.addWidget(self.plot, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.addWidget(self.status)
        layout.addLayout(controls)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.result_box, 1)
        layout.addWidget(self.empty, 1)
        self.set_running(False)

    # ---- state ----
    def show_router(self, info: dict | None, adapters, error: str = ""):
        """Say whether the router (Library.router_info: None when there is none) matches the enabled adapters
        (AdapterInfo rows), and show its last report; or the error that kept them from being read."""
        if self.running:
            return
        if error:
            self.status.show_message(error, "error")
            return
        enabled = [a for a in adapters if a.enabled]
        missing = [a.name for a in enabled if a.n_examples == 0]
        self.retrain_button.setEnabled(bool(enabled) and not missing)
        if not enabled:
            self.status.show_message("No enabled adapters: import some, then train the router on their examples.",
                                     "warn")
        elif missing:
            self.status.show_message(f"No router examples for {', '.join(missing)}: add some in the Examples tab "
                                     "(or disable those adapters) before training.", "warn")
        elif info is None:
            self.status.show_message("No router yet: replies use the base model until one is trained.", "warn")
        elif not info["matches"]:
            names = {a.name for a in enabled}
            trained = set(info["adapters"] or [])
            parts = [f"new: {', '.join(sorted(names - trained))}" if names - trained else "",
                     f"gone: {', '.join(sorted(trained - names))}" if trained - names else ""]
            self.status.show_message("The router was trained for other adapters ("
                                     + "; ".join(p for p in parts if p) + "). Retrain it so that it routes to them "
                                     "(head-only: seconds).", "warn")
        else:
            self.status.show_message(f"Up to date: trained on the {len(enabled)} enabled adapters.", "info")
        self.show_report(info["report"] if info else None)

    def show_report(self, report: dict | None):
        self.result_box.setVisible(bool(report))
        self.empty.setVisible(not report)
        if not report:
            self._draw_matrix(np.zeros((0, 0), np.int64), [])
            return
        acc = report.get("accuracy")
        self.accuracy.setText("—" if acc is None else f"{acc:.1%}")
        mode = {"head": "Head-only retrain", "full": "Full retrain"}.get(report.get("mode"), "Last training")
        if report.get("refit_for"):
            short = ", ".join(f"{name} at {acc:.0%}" for name, acc in report["refit_for"].items())
            mode += f" (a head-only one left {short} held out)"
        date = report.get("date", "").replace("T", " ")[:16]  # ISO, UTC: minutes are enough
        classes = f"{len(report['per_adapter'])} adapters" + (" and the base model" if report.get("base") is not None
                                                               else "")
        self.summary.setText(f"{mode} · {classes}\n{report['n_train']} training and "
                             f"{report['n_heldout']} held-out examples" + (f" · {date} UTC" if date else "")
                             + ("" if acc is not None else "\ntoo few examples to hold any out"))
        self._draw_matrix(np.asarray(report["confusion"], np.int64), report["labels"])

    def _draw_matrix(self, confusion, labels):
        self.confusion = confusion
        for item in self._cell_labels:
            self.plot.removeItem(item)
        self._cell_labels = []
        n = len(labels)
        if n == 0:
            return
        totals = confusion.sum(axis=1, keepdims=True)
        share = confusion / np.maximum(totals, 1)  # [true, routed]: each row sums to 1 (or 0 without examples)
        self.image.setImage(share, levels=(0.0, 1.0))
        self.image.setRect(0, 0, n, n)
        step = math.ceil(n / MAX_TICKS)
        shown = [i for i in range(n) if i % step == 0]
        # names on the left; the columns are numbered as the rows, since names side by side would overlap
        self.plot.getAxis("left").setTicks([[(i + 0.5, f"{_short(labels[i])}  {i + 1}") for i in shown]])
        self.plot.getAxis("bottom").setTicks([[(i + 0.5, str(i + 1)) for i in shown]])
        self.plot.setRange(xRange=(0, n), yRange=(0, n), padding=0)
        if n <= MAX_CELL_LABELS:
            for i in range(n):
                for j in range(n):
                    if confusion[i, j]:
                        label = pg.TextItem(str(confusion[i, j]), anchor=(0.5, 0.5),
                                            color="w" if share[i, j] > 0.55 else "#3b4656")
                        label.setPos(j + 0.5, i + 0.5)
                        self.plot.addItem(label)
                        self._cell_labels.append(label)

    # ---- training ----
    def start(self):
        """Ask for a retrain; the progress bar follows the epochs (show_epoch)."""
        self.set_running(True)
        self.progress.setRange(0, 0)
        self.progress_label.setText("Waiting for the engine…")
        self.retrainRequested.emit(self.full.isChecked())

    def cancel(self):
        self.cancelRequested.emit()
        self.progress_label.setText("Cancelling…")

    def show_epoch(self, e: int, epochs: int, loss: float, acc: float | None):
        self.progress.setRange(0, epochs)
        self.progress.setValue(e)
        held = "" if acc is None else f" · held-out accuracy {acc:.1%}"
        self.progress_label.setText(f"Epoch {e} / {epochs} · loss {loss:.3f}{held}")
        self.epochDone.emit(e, epochs, loss, acc)

    def show_outcome(self, report: dict | None, loaded: bool):
        """The retrain ended (report None: cancelled); loaded: the running model uses the new router."""
        self.finished.emit(report)
        if report is None:
            self.status.show_message("Cancelled: the previous router is kept.", "warn")
        else:
            self.show_report(report)
            where = "and loaded into the model" if loaded else "in the library; the model uses it when reopened"
            self.status.show_message(f"Router retrained ({report['mode']}) {where}.", "info")

    def set_running(self, running: bool):
        self.running = running
        self.retrain_button.setEnabled(not running)
        self.full.setEnabled(not running)
        for w in (self.cancel_button, self.progress, self.progress_label):
            w.setVisible(running)


def _short(name: str) -> str:
    return name if len(name) <= TICK_CHARS else name[:TICK_CHARS - 1] + "…"
