"""Bar chart of every adapter's router probability for one sentence: horizontal bars, the selected (kept) ones
first in their adapter colours with weight labels, a dashed line at the top-p cut, the rest grey.

One BarGraphItem is updated in place with setOpts (no items are created per update). Rows keep a readable
height; with more adapters than fit, a scroll bar (or the wheel) moves the visible rows, so the axis only
draws the names in view and the chart stays cheap with hundreds of adapters."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollBar, QVBoxLayout, QWidget

from ui import theme
from ui.colors import adapter_brush, dropped_brush

ROW_PX = (22, 36)         # min, max pixel height of one adapter row
NAME_CHARS = 24           # longer adapter names are elided on the axis (full name in the tooltip)
X_STEPS = (0.1, 0.2, 0.5, 1.0)  # x range snaps to these so bars do not jump with every update
EMPTY_NOTE = "No routing yet: send a message to see the router's choice for every sentence."


class RoutingChart(QWidget):
    def __init__(self):
        super().__init__()
        self.title = QLabel("Routing", objectName="panelTitle")
        self.note = QLabel(objectName="panelNote", wordWrap=True)
        self.plot = theme.Plot()
        self.plot.hideAxis("bottom")
        self.plot.getAxis("left").setStyle(tickLength=0)
        vb = self.plot.getViewBox()
        vb.invertY(True)                      # highest probability at the top
        vb.setMouseEnabled(x=False, y=False)
        self.plot.viewport().installEventFilter(self)  # the wheel scrolls rows (eventFilter) instead of zooming
        self.bars = pg.BarGraphItem(x0=np.zeros(0), y=np.zeros(0), width=np.zeros(0), height=0.7,
                                    pen=pg.mkPen(None), brushes=[])
        self.plot.addItem(self.bars)
        # the label under the line: above it sits the last kept bar's weight
        self.cut = pg.InfiniteLine(angle=0, label="", labelOpts=dict(position=0.97, anchors=[(1, 0), (1, 0)]))
        self.plot.addItem(self.cut)
        self._labels: list[pg.TextItem] = []  # pool: grows to the most labels ever shown, then reused
        self._names: list[str] = []
        self._probs: dict[str, float] = {}
        self._x_max = 1.0
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.scroll = QScrollBar(Qt.Vertical)
        self.scroll.valueChanged.connect(self._apply_range)

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.plot, 1)
        row.addWidget(self.scroll)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 4)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.note)
        layout.addLayout(row, 1)
        self._shown = ({}, {}, None)
        theme.notifier.changed.connect(self._restyle)
        self._restyle()

    def _restyle(self):
        t = theme.current()
        self.cut.setPen(pg.mkPen(t.stop, width=1.5, style=Qt.DashLine))
        self.cut.label.setColor(t.stop)
        for label in self._labels:
            label.setColor(t.text)
        self.set_routing(*self._shown)

    def set_routing(self, probs: dict[str, float], selected: dict[str, float], top_p: float | None,
                    title: str = "Routing", empty_note: str = EMPTY_NOTE):
        """Show one sentence's routing: `probs` over all adapters, `selected` the mix in force.
        With neither, `empty_note` says why."""
        self._shown = (probs, selected, top_p, title, empty_note)
        values = probs or selected  # no router: show the pinned mix itself
        names = sorted(values, key=lambda n: (n not in selected, -values[n]))  # kept first, then by probability
        n, k = len(names), sum(1 for name in names if name in selected)
        widths = np.array([values[name] for name in names], dtype=float)
        if names != self._names:
            self.plot.getAxis("left").setTicks([[(i, _elide(name)) for i, name in enumerate(names)]])
            if set(names) != set(self._names):
                self._fit_axis(names)
        self._names, self._probs = names, probs
        self.title.setText(title)
        self.note.setText("" if n else empty_note)
        self.note.setVisible(not n)
        self.plot.setVisible(bool(n))
        dropped = dropped_brush()
        brushes = [adapter_brush(name) if name in selected else dropped for name in names]
        self.bars.setOpts(x0=np.zeros(n), y=np.arange(n, dtype=float), width=widths, height=0.7, brushes=brushes)

        self._x_max = next((s for s in X_STEPS if widths.max(initial=0) <= s), 1.0) * 1.22  # room for labels
        show_cut = bool(probs) and 0 < k < n
        self.cut.setVisible(show_cut)
        if show_cut:
            self.cut.setPos(k - 0.5)
            self.cut.label.setFormat(f"top-p {top_p:.2f}" if top_p is not None else "cut")

        kept = names[:k]
        while len(self._labels) < len(kept):
            label = pg.TextItem(anchor=(0, 0.5), color=theme.current().text)
            self.plot.addItem(label)
            self._labels.append(label)
        for i, label in enumerate(self._labels):
            label.setVisible(i < len(kept))
            if i < len(kept):
                label.setText(f" {selected[kept[i]]:.2f}")
                label.setPos(widths[i], i)
        self._fit_rows()

    def bar_values(self) -> dict[str, float]:
        """What the bars show now, by adapter name (tests and probes read this)."""
        return dict(zip(self._names, self.bars.opts["width"].tolist()))

    def visible_rows(self) -> int:
        """How many adapter rows the plot shows at once."""
        return max(min(len(self._names), self.plot.height() // ROW_PX[0]), self.plot.height() // ROW_PX[1], 1)

    def _fit_axis(self, names):
        width = max((QFontMetrics(QFont()).horizontalAdvance(_elide(n)) for n in names), default=40)
        self.plot.getAxis("left").setWidth(width + 12)

    def _fit_rows(self):
        hidden = max(len(self._names) - self.visible_rows(), 0)
        self.scroll.setRange(0, hidden)
        self.scroll.setPageStep(self.visible_rows())
        self.scroll.setVisible(hidden > 0)
        self._apply_range()

    def _apply_range(self):
        top = self.scroll.value()
        self.plot.setRange(xRange=(0, self._x_max), yRange=(top - 0.5, top + self.visible_rows() - 0.5),
                           padding=0)

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._fit_rows()

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Wheel:  # the wheel scrolls rows; the plot would zoom (or swallow it)
            self.scroll.setValue(self.scroll.value() - round(event.angleDelta().y() / 40))
            return True
        return super().eventFilter(obj, event)

    def _hover(self, pos):
        row = round(self.plot.getViewBox().mapSceneToView(pos).y())
        if 0 <= row < len(self._names):
            name = self._names[row]
            p = self._probs.get(name)
            self.plot.setToolTip(name if p is None else f"{name}: p = {p:.4f}")
        else:
            self.plot.setToolTip("")


def _elide(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"
