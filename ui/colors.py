"""A stable colour per adapter name, so the same adapter looks the same in the chat, chart and timeline."""
import zlib

from PySide6.QtGui import QBrush, QColor

from ui import theme

# 20 qualitative colours that stay readable as bars on white or dark grey, and as tints behind text.
PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#a0cbe8", "#8cd17d", "#d37295", "#499894", "#7b66d2", "#c85200", "#2f4b7c",
    "#bcbd22", "#17becf", "#8c564b", "#f1ce63",
]

BASE_NAME = "base model"  # the router's name for the base model in probs and mixes (engine.events.BASE)

_assigned: dict[str, int] = {}  # palette slot of each adapter in the current bank (see assign)
_chosen: dict[str, str] = {}    # colours the user picked in the library ("#rrggbb"), which win over the palette
_brushes: dict[str, QBrush] = {}


def _slot(name: str) -> int:
    # crc32, not hash(): Python's str hash is salted per process and colours must not change between runs
    return zlib.crc32(name.encode("utf-8")) % len(PALETTE)


def assign(names: list[str]):
    """Distinct colours for a bank's adapters while the palette lasts: each keeps its hashed slot unless an
    adapter earlier in name order took it, then takes the next free slot. The same set always gets the same
    colours, and an adapter keeps its colour across sessions unless it collides."""
    _assigned.clear()
    _brushes.clear()
    taken: set[int] = set()
    for name in sorted(names):
        slot = _slot(name)
        while slot in taken and len(taken) < len(PALETTE):
            slot = (slot + 1) % len(PALETTE)
        taken.add(slot)
        _assigned[name] = slot


def choose(name: str, color: str | None):
    """The user's colour for `name` (None: back to the automatic one)."""
    if color:
        _chosen[name] = color
    else:
        _chosen.pop(name, None)
    _brushes.pop(name, None)


def adapter_color(name: str) -> QColor:
    if name == BASE_NAME:  # the router's share for the base model looks like the base model everywhere
        return QColor(theme.current().base_bar)
    return QColor(_chosen.get(name) or PALETTE[_assigned.get(name, _slot(name))])


def adapter_brush(name: str) -> QBrush:
    """Cached brush: the chart asks for one per bar on every update."""
    if name == BASE_NAME:
        return base_brush()  # follows the theme
    brush = _brushes.get(name)
    if brush is None:
        brush = _brushes[name] = QBrush(adapter_color(name))
    return brush


def base_brush() -> QBrush:
    """The base model's bars (no adapter selected)."""
    return QBrush(QColor(theme.current().base_bar))


def dropped_brush() -> QBrush:
    """Chart bars of the adapters the top-p cut dropped."""
    return QBrush(QColor(theme.current().dropped_bar))


def tint(name: str | None) -> QColor:
    """Background for a sentence led by adapter `name` (None: base model), light enough for the theme's text."""
    color = adapter_color(name) if name else QColor(theme.current().base_bar)
    color.setAlpha(theme.current().tint_alpha)
    return color
