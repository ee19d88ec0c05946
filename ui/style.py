"""The windows' look: light, quiet style sheets (Fusion base) for the main and library windows, and matching
pyqtgraph defaults."""
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

LIBRARY_STYLE_SHEET = """
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


def configure_pyqtgraph():
    pg.setConfigOptions(antialias=True, foreground="#3b4656", background=None)
