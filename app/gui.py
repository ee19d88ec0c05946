"""`switchboard` with no arguments: the desktop app.

Extra flags (for packaging/screenshot.sh and quick tries): --model DIR opens that model and --library DIR that
adapter library for this run only;
--prompt TEXT sends it once the model is ready; --screenshot PNG saves the window after that reply and quits."""
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.commands.options import app_parser
from app.icon import APP_ID
from app.settings import APPLICATION, ORGANIZATION, Settings


def main(argv: list[str] | None = None) -> int:
    """argv: the arguments after the program name (as app.cli passes them)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = app_parser().parse_args(argv)  # an unknown flag is an error (it used to go to Qt, silently)

    app = QApplication.instance() or QApplication(["switchboard"])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setStyle("Fusion")
    app.setDesktopFileName(APP_ID)  # Wayland compositors find the window's icon through the .desktop entry
    from ui.main_window import MainWindow  # after QApplication: pyqtgraph reads the app's settings on import

    window = MainWindow(Settings())
    window.library_override = args.library
    window.show()
    window.open_default_model(args.model)
    if args.prompt or args.screenshot:
        _script(window, args.prompt, args.screenshot)
    return app.exec()


def _script(window, prompt: str | None, screenshot: str | None):
    """Send `prompt` when the model is ready; save `screenshot` after the reply (or on an error) and quit."""
    sent = False

    def on_done(name, result):
        nonlocal sent
        if name == "warm_up" and prompt and not sent:
            sent = True
            window.chat.input.setPlainText(prompt)
            window.chat.send.click()
        elif (name == "generate" or (name == "warm_up" and not prompt)) and screenshot:
            QTimer.singleShot(500, save)

    def save():
        window.grab().save(screenshot)
        print(f"screenshot: {screenshot}")
        window.close()

    def on_failed(name, message):
        if name in ("load_model", "warm_up", "generate") and screenshot:  # the window shows the error: keep that
            QTimer.singleShot(500, save)

    window.worker.done.connect(on_done)
    window.worker.failed.connect(on_failed)


if __name__ == "__main__":
    sys.exit(main())
