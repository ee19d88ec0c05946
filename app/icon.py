"""The application icon, read from the package data (resources/icons), and the desktop id it is installed under."""
from pathlib import Path

import resources

# Reverse-DNS id: the .desktop file, the AppStream component and the installed icons are all named after it.
# On Wayland the window finds its icon through it: QGuiApplication.setDesktopFileName(APP_ID).
APP_ID = "io.github.lora_switchboard.Switchboard"
ICON_DIR = Path(resources.__file__).parent / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)  # switchboard-<N>.png, rendered by packaging/render_icons.py


def app_icon():
    """-> QIcon with every PNG size (no SVG icon-engine plugin needed); Qt picks the nearest size for title bars
    and docks. Qt is imported here, so the command line (install-desktop-entry) runs without it."""
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for n in SIZES:
        icon.addFile(str(ICON_DIR / f"switchboard-{n}.png"))
    return icon
