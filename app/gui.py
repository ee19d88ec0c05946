"""`switchboard` with no arguments: the desktop app.

Extra flags (for packaging/screenshot.sh and quick tries): --model DIR opens that model and --library DIR that
adapter library for this run only;
--prompt TEXT sends it once the model is ready; --screenshot PNG saves the window after that reply and quits."""
import sys

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from app import log, paths
from app.commands.options import app_parser
from app.icon import APP_ID, ICON_DIR, SIZES
from app.settings import APPLICATION, ORGANIZATION, Settings


def main(argv: list[str] | None = None) -> int:
    """argv: the arguments after the program name (as app.cli passes them)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = app_parser().parse_args(argv)  # an unknown flag is an error (it used to go to Qt, silently)

    app = application()
    log.start(paths.log_file())
    from app.controller import Controller  # after QApplication: pyqtgraph reads the app's settings on import

    controller = Controller(Settings(QSettings()))
    controller.library_override = args.library
    controller.window.show()
    controller.open_default_model(args.model)
    if args.prompt or args.screenshot:
        _script(controller, args.prompt, args.screenshot)
    return app.exec()


def application() -> QApplication:
    """The QApplication, named for QSettings (where settings live) and the desktop, with the app's icon."""
    app = QApplication.instance() or QApplication(["switchboard"])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setStyle("Fusion")
    app.setDesktopFileName(APP_ID)  # Wayland compositors find the window's icon through the .desktop entry
    app.setWindowIcon(app_icon())   # every window's, the library's too
    return app


def app_icon() -> QIcon:
    """Every PNG size (no SVG icon-engine plugin needed); Qt picks the nearest for title bars and docks."""
    icon = QIcon()
    for n in SIZES:
        icon.addFile(str(ICON_DIR / f"switchboard-{n}.png"))
    return icon


def _script(controller, prompt: str | None, screenshot: str | None):
    """Send `prompt` when the model is ready; save `screenshot` after the reply (or on an error) and quit."""
    window = controller.window

    def ready():
        if prompt:
            window.chat.input.setPlainText(prompt)
            window.chat.send.click()
        elif screenshot:
            QTimer.singleShot(500, save)

    def save():
        window.grab().save(screenshot)
        print(f"screenshot: {screenshot}")
        window.close()

    controller.ready.connect(ready, type=Qt.SingleShotConnection)
    if screenshot:  # the window shows a failed load or reply: keep that too
        controller.replied.connect(lambda: QTimer.singleShot(500, save))
        controller.loadFailed.connect(lambda _message: QTimer.singleShot(500, save))


if __name__ == "__main__":
    sys.exit(main())
