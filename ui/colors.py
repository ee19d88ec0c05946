"""A stable colour per adapter name, so the same adapter looks the same in the chat, chart and timeline."""
import zlib

from PySide6.QtGui import QBrush, QColor

# 20 mid-saturation colours that stay readable as bars on white and as light tints behind text.
PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#3d9fd6", "#8cd17d", "#d37295", "#499894", "#e6a23c", "#7b66d2", "#c85200",
    "#2f8f5b", "#a0cbe8", "#d4a6c8", "#86bcb6",
]
BASE = QColor("#b8bec7")      # the base model (no adapter selected)
UNSELECTED = QColor("#d5d9df")  # chart bars the top-p cut dropped
TINT_ALPHA = 60               # of 255: sentence backgrounds stay readable under dark text

_brushes: dict[str, QBrush] = {}


def adapter_color(name: str) -> QColor:
    # crc32, not hash(): Python's str hash is salted per process and colours must not change between runs
    return QColor(PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)])


def adapter_brush(name: str) -> QBrush:
    """Cached brush: the chart asks for one per bar on every update."""
    brush = _brushes.get(name)
    if brush is None:
        brush = _brushes[name] = QBrush(adapter_color(name))
    return brush


def tint(name: str | None) -> QColor:
    """Background for a sentence led by adapter `name` (None: base model)."""
    color = QColor(adapter_color(name)) if name else QColor(BASE)
    color.setAlpha(TINT_ALPHA)
    return color
