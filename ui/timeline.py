"""One stacked bar per generated sentence: the mix in force (adapter weights, summing to 1) in adapter colours,
grey for the base model. Thin grey bars separate the replies. Click a bar to inspect that sentence."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ui import theme
from ui.colors import adapter_brush, base_brush

BAR_PX = 20  # about this many pixels per sentence: the visible window follows the newest sentences


class Timeline(QWidget):
    sentenceClicked = Signal(int)  # index of the sentence (0 = first of the conversation)

    def __init__(self):
        super().__init__()
        self._mixes: list[dict[str, float]] = []
        self.title = QLabel("Timeline", objectName="panelTitle")
        self.plot = theme.Plot()
        self.plot.hideAxis("left")
        self.plot.getAxis("bottom").setStyle(tickLength=-4)
        vb = self.plot.getViewBox()
        vb.setMouseEnabled(x=True, y=False)  # drag/scroll back through a long conversation
        self.segments = pg.BarGraphItem(x=np.zeros(0), y0=np.zeros(0), height=np.zeros(0), width=0.8,
                                        pen=pg.mkPen(None), brushes=[])
        self.separators = pg.BarGraphItem(x=np.zeros(0), y0=-0.04, height=1.08, width=0.08, pen=pg.mkPen(None))
        self.current = pg.BarGraphItem(x=[0], y0=-0.03, height=1.06, width=0.95, brush=None)
        self.current.hide()
        for item in (self.segments, self.separators, self.current):
            self.plot.addItem(item)
        vb.sigXRangeChanged.connect(self._draw)  # panning back draws the older sentences
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        self.plot.scene().sigMouseMoved.connect(self._hover)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        self.set_sentences([], [])
        theme.notifier.changed.connect(self._restyle)
        self._restyle()

    def _restyle(self):
        t = theme.current()
        self.separators.setOpts(brush=t.separator)
        self.current.setOpts(pen=pg.mkPen(t.text, width=2))
        self._draw()

    def count(self) -> int:
        return len(self._mixes)

    def set_sentences(self, mixes: list[dict[str, float]], reply_starts: list[int]):
        """All sentences of the conversation (their mixes) and the index where each reply starts.
        The view follows the newest sentence."""
        self._mixes = mixes
        self.separators.setOpts(x=np.array([s - 0.5 for s in reply_starts[1:]], float))
        visible = max(10, self.plot.width() // BAR_PX)
        n = len(mixes)
        self.plot.getViewBox().setLimits(xMin=-1, xMax=max(n, visible) + 0.5)
        self.plot.setRange(xRange=(max(-0.6, n - visible + 0.4), max(n, visible) - 0.6), yRange=(-0.05, 1.05),
                           padding=0)
        self._draw()

    def _draw(self):
        """Segments of the sentences in view only: a long conversation costs no more to draw than a short one."""
        lo, hi = self.plot.getViewBox().viewRange()[0]
        x, y0, h, brushes = [], [], [], []
        base = base_brush()
        for i in range(max(0, int(lo)), min(len(self._mixes), int(hi) + 2)):
            bottom = 0.0
            for name, w in sorted(self._mixes[i].items(), key=lambda kv: -kv[1]) or [(None, 1.0)]:
                x.append(i)
                y0.append(bottom)
                h.append(w)
                brushes.append(adapter_brush(name) if name else base)
                bottom += w
        self.segments.setOpts(x=np.array(x, float), y0=np.array(y0, float), height=np.array(h, float),
                              width=0.8, brushes=brushes)

    def set_current(self, index: int | None):
        """Outline the sentence being inspected (None: no outline)."""
        self.current.setVisible(index is not None)
        if index is not None:
            self.current.setOpts(x=[index])

    def _index_at(self, scene_pos) -> int | None:
        x = self.plot.getViewBox().mapSceneToView(scene_pos).x()
        i = round(x)
        return i if 0 <= i < len(self._mixes) and abs(x - i) <= 0.45 else None

    def _clicked(self, event):
        if event.button() == Qt.LeftButton:
            i = self._index_at(event.scenePos())
            if i is not None:
                self.sentenceClicked.emit(i)

    def _hover(self, pos):
        i = self._index_at(pos)
        if i is None:
            self.plot.setToolTip("")
            return
        mix = self._mixes[i]
        parts = ", ".join(f"{n} {w:.2f}" for n, w in sorted(mix.items(), key=lambda kv: -kv[1])) or "base model"
        self.plot.setToolTip(f"Sentence {i + 1}: {parts}")

