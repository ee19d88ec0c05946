"""The application icon's files (resources/icons, package data) and the desktop id they are installed under.
The QIcon built from them is app/gui.py's: this module needs no Qt, so the command line can use it."""
from pathlib import Path

import resources

# Reverse-DNS id: the .desktop file, the AppStream component and the installed icons are all named after it.
# On Wayland the window finds its icon through it: QGuiApplication.setDesktopFileName(APP_ID).
APP_ID = "io.github.lora_switchboard.Switchboard"
ICON_DIR = Path(resources.__file__).parent / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)  # switchboard-<N>.png, rendered by packaging/render_icons.py
