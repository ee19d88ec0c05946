"""The windows' look: quiet style sheets (Fusion base) in a theme's colours (ui/theme.py), set on the whole
application, so the main window, the library window, their dialogs and notices share them."""
from dataclasses import asdict
from string import Template

RULES = Template("""
QMainWindow, #messageList { background: $window; }
#userMessage { background: $user_bubble; border: 1px solid $user_border; border-radius: 10px; }
#assistantMessage { background: $surface; border: 1px solid $border; border-radius: 10px; }
#userMessage QTextBrowser, #assistantMessage QTextBrowser { background: transparent; font-size: 10.5pt; }
#messageRole { font-weight: 600; color: $heading; }
#messageFooter { color: $muted; font-size: 8.5pt; }
#panelTitle { font-weight: 600; color: $heading; font-size: 10pt; }
#panelNote, #contextMeter { color: $muted; }
#contextWarning { color: $warn; }
#routingPanel, #routingPanel QScrollArea, #routingPanel QScrollArea > QWidget > QWidget { background: $surface; }
#routingPanel QSplitter::handle { background: $handle; }
#emptyTitle { font-size: 16pt; font-weight: 600; color: $heading; }
#emptyText { color: $muted; font-size: 10.5pt; }
#emptyError { color: $error; background: $error_back; border: 1px solid $error_border; border-radius: 6px;
              padding: 8px; }
QPlainTextEdit { background: $surface; border: 1px solid $input_border; border-radius: 8px; padding: 4px;
                 font-size: 10.5pt; }
QPlainTextEdit:focus { border-color: $accent; }
#sendButton { background: $accent; color: white; border: none; border-radius: 6px; padding: 6px; font-weight: 600; }
#sendButton:disabled { background: $accent_off; }
#sendButton[stop="true"] { background: $stop; }
QStatusBar QLabel, QStatusBar QToolButton { color: $heading; padding: 0 6px; }
#serverAddress[failed="true"], #serverProblem { color: $error; }

#libraryPanel { background: $window; }
#dropZone { border: 2px dashed $input_border; border-radius: 10px; background: $surface; }
#dropZone[hover="true"] { border-color: $accent; background: $info_back; }
#dropTitle { font-weight: 600; color: $heading; font-size: 10.5pt; }
#dropText, #footer, #hint { color: $muted; }
#sectionTitle { font-weight: 600; color: $heading; font-size: 10pt; }
#accuracy { font-size: 24pt; font-weight: 600; color: $accent; }
#primaryButton { background: $accent; color: white; border: none; border-radius: 6px; padding: 5px 14px;
                 font-weight: 600; }
#primaryButton:disabled { background: $accent_off; }
QTableView, QListWidget { background: $surface; border: 1px solid $border; border-radius: 6px;
                          alternate-background-color: $window; selection-background-color: $info_back;
                          selection-color: $text; }
QTableView { gridline-color: transparent; }
QListWidget::item { padding: 3px 2px; }
QHeaderView::section { background: $window; border: none; border-bottom: 1px solid $border; padding: 4px 6px;
                       font-weight: 600; color: $heading; }
QTabWidget::pane { border: 1px solid $border; border-radius: 6px; background: $surface; top: -1px; }
QTabBar::tab { padding: 6px 16px; border: 1px solid transparent; color: $muted; }
QTabBar::tab:selected { background: $surface; border: 1px solid $border; border-bottom-color: $surface;
                        border-top-left-radius: 6px; border-top-right-radius: 6px; color: $text; font-weight: 600; }
QLineEdit { background: $surface; border: 1px solid $input_border; border-radius: 6px; padding: 4px 6px; }
QLineEdit:focus { border-color: $accent; }
#libraryPanel QProgressBar { border: 1px solid $input_border; border-radius: 5px; background: $surface;
                             text-align: center; height: 16px; }
#libraryPanel QProgressBar::chunk { background: $accent; border-radius: 4px; }

QScrollBar:vertical { background: transparent; width: 10px; margin: 0; }
QScrollBar:horizontal { background: transparent; height: 10px; margin: 0; }
QScrollBar::handle { background: $input_border; border-radius: 4px; margin: 1px; }
QScrollBar::handle:vertical { min-height: 24px; }
QScrollBar::handle:horizontal { min-width: 24px; }
QScrollBar::handle:hover { background: $muted; }
QScrollBar::add-line, QScrollBar::sub-line { width: 0; height: 0; }
QScrollBar::add-page, QScrollBar::sub-page { background: transparent; }

#notice { border-radius: 6px; padding: 6px 8px; }
#notice[kind="info"] { color: $info; background: $info_back; border: 1px solid $info_border; }
#notice[kind="warn"] { color: $warn; background: $warn_back; border: 1px solid $warn_border; }
#notice[kind="error"] { color: $error; background: $error_back; border: 1px solid $error_border; }
""")


def sheet(theme) -> str:
    """The application's style sheet in `theme`'s colours (a ui.theme.Theme)."""
    return RULES.substitute(asdict(theme))
