"""The window's look: a light, quiet style sheet (Fusion base) and matching pyqtgraph defaults."""
import pyqtgraph as pg

STYLE_SHEET = """
QMainWindow, #messageList { background: #f4f6f9; }
#userMessage { background: #e8eef7; border: 1px solid #d3dcea; border-radius: 10px; }
#assistantMessage { background: #ffffff; border: 1px solid #dde2e8; border-radius: 10px; }
#userMessage QTextBrowser, #assistantMessage QTextBrowser { background: transparent; font-size: 10.5pt; }
#messageRole { font-weight: 600; color: #3b4656; }
#messageFooter { color: #7a8594; font-size: 8.5pt; }
#panelTitle { font-weight: 600; color: #3b4656; font-size: 10pt; }
#panelNote { color: #7a8594; }
#routingPanel, #routingPanel QScrollArea, #routingPanel QScrollArea > QWidget > QWidget { background: #ffffff; }
#routingPanel QSplitter::handle { background: #e6e9ee; }
#emptyTitle { font-size: 16pt; font-weight: 600; color: #3b4656; }
#emptyText { color: #566173; font-size: 10.5pt; }
#emptyError { color: #b03a2e; background: #fbeaea; border: 1px solid #f0c4c0; border-radius: 6px; padding: 8px; }
QPlainTextEdit { background: #ffffff; border: 1px solid #c9d1dc; border-radius: 8px; padding: 4px; font-size: 10.5pt; }
QPlainTextEdit:focus { border-color: #4e79a7; }
#sendButton { background: #4e79a7; color: white; border: none; border-radius: 6px; padding: 6px; font-weight: 600; }
#sendButton:disabled { background: #aab7c7; }
#sendButton[stop="true"] { background: #c0392b; }
QStatusBar QLabel { color: #3b4656; padding: 0 6px; }
"""


def configure_pyqtgraph():
    pg.setConfigOptions(antialias=True, foreground="#3b4656", background=None)
