"""Light and dark: the colours every window draws with. "system" follows the desktop's colour scheme (Qt's
QStyleHints.colorScheme, live as it changes); "light" and "dark" are the user's pick in Settings > Appearance.

`use(appearance)` sets the application's palette and style sheet (ui/style.py) and emits `notifier.changed`, which
the plots (`Plot`) and the windows that tint text listen to."""
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Theme:
    dark: bool
    window: str        # behind the messages
    surface: str       # panels, plots, the assistant's messages
    text: str
    heading: str       # titles, roles
    muted: str         # footers, notes
    border: str
    user_bubble: str
    user_border: str
    input_border: str
    handle: str        # splitter handles
    accent: str        # Send, selection, focus
    accent_off: str    # a disabled Send
    stop: str
    error: str
    error_back: str
    error_border: str
    warn: str
    warn_back: str
    warn_border: str
    info: str
    info_back: str
    info_border: str
    code_back: str     # code blocks in messages
    base_bar: str      # the base model's bar in the timeline
    dropped_bar: str   # adapters the top-p cut dropped, in the routing chart
    separator: str     # between replies in the timeline
    tint_alpha: int    # of 255, a sentence's adapter colour behind its text


LIGHT = Theme(
    dark=False, window="#f4f6f9", surface="#ffffff", text="#1f2a37", heading="#3b4656", muted="#6b7684",
    border="#dde2e8", user_bubble="#e8eef7", user_border="#d3dcea", input_border="#c9d1dc", handle="#e6e9ee",
    accent="#4e79a7", accent_off="#aab7c7", stop="#c0392b", error="#b03a2e", error_back="#fbeaea",
    error_border="#f0c4c0", warn="#7a4b00", warn_back="#fdf3e0", warn_border="#f1d9a8", info="#2f4b7c",
    info_back="#eaf1fa", info_border="#c9d8ec", code_back="#f1f3f6", base_bar="#b8bec7", dropped_bar="#d5d9df",
    separator="#9aa3ad", tint_alpha=60)
DARK = Theme(
    dark=True, window="#1b1e23", surface="#24282e", text="#e3e7ec", heading="#cfd6de", muted="#98a2ae",
    border="#363c44", user_bubble="#2a3647", user_border="#3a4a60", input_border="#4a515b", handle="#30353c",
    accent="#5b8cc4", accent_off="#3d4654", stop="#d9534f", error="#ff9b91", error_back="#3b2427",
    error_border="#6e3b3b", warn="#f4c66b", warn_back="#3a3121", warn_border="#6b5630", info="#a9c7ef",
    info_back="#22303f", info_border="#3b5270", code_back="#2e333a", base_bar="#6c7480", dropped_bar="#4a515b",
    separator="#7d8692", tint_alpha=90)


class _Notifier(QObject):
    changed = Signal()  # the theme changed: redraw what was drawn in the old colours


notifier = _Notifier()
_state = {"theme": LIGHT, "appearance": "system", "following": False}


def current() -> Theme:
    return _state["theme"]


def use(appearance: str):
    """appearance: "system" | "light" | "dark". Applies the theme now and, for "system", whenever the desktop's
    colour scheme changes."""
    _state["appearance"] = appearance
    hints = QGuiApplication.styleHints()
    if not _state["following"]:
        hints.colorSchemeChanged.connect(lambda _scheme: _apply())
        _state["following"] = True
    _apply(force=True)


def desktop_scheme() -> Qt.ColorScheme:
    """The desktop's colour scheme as Qt's platform theme reports it (Unknown where it cannot tell: light)."""
    return QGuiApplication.styleHints().colorScheme()


def _apply(force: bool = False):
    appearance = _state["appearance"]
    dark = appearance == "dark" or (appearance == "system" and desktop_scheme() == Qt.ColorScheme.Dark)
    theme = DARK if dark else LIGHT
    changed = theme is not _state["theme"]
    if not changed and not force:
        return
    from ui.style import sheet  # style.py formats its rules with this module's colours

    _state["theme"] = theme
    app = QApplication.instance()
    app.setPalette(palette(theme))
    app.setStyleSheet(sheet(theme))
    pg.setConfigOptions(foreground=theme.heading)
    if changed:
        notifier.changed.emit()


def palette(t: Theme) -> QPalette:
    """Fusion's roles in the theme's colours (dialogs, menus, tables and scroll bars follow it)."""
    p = QPalette()
    roles = {QPalette.Window: t.window, QPalette.WindowText: t.text, QPalette.Base: t.surface,
             QPalette.AlternateBase: t.window, QPalette.Text: t.text, QPalette.Button: t.surface if t.dark else
             "#eef1f5", QPalette.ButtonText: t.text, QPalette.Highlight: t.accent,
             QPalette.HighlightedText: "#ffffff", QPalette.ToolTipBase: t.surface, QPalette.ToolTipText: t.text,
             QPalette.PlaceholderText: t.muted, QPalette.Link: t.accent, QPalette.BrightText: t.error,
             QPalette.Mid: t.border, QPalette.Dark: t.input_border, QPalette.Light: t.surface,
             QPalette.Midlight: t.handle, QPalette.Shadow: "#000000"}
    for role, color in roles.items():
        p.setColor(role, QColor(color))
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, QColor(t.muted))
    return p


class Plot(pg.PlotWidget):
    """A PlotWidget in the theme's colours, restyled when the theme changes."""

    def __init__(self):
        super().__init__()
        self.hideButtons()
        self.setMenuEnabled(False)
        notifier.changed.connect(self.restyle)
        self.restyle()

    def restyle(self):
        t = current()
        self.setBackground(t.surface)
        for name in ("left", "bottom"):
            axis = self.getAxis(name)
            axis.setTextPen(pg.mkPen(t.heading))
            if axis.pen().style() != Qt.NoPen:  # a plot that hides its axis lines keeps them hidden
                axis.setPen(pg.mkPen(t.border))
