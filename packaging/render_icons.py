"""Render the application icon's PNGs (and the Windows .ico / macOS .icns the bundle uses) from its SVGs.

    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py

Sizes up to 24 px come from switchboard-small.svg (the same mark drawn on a 16 px grid, so it stays sharp);
the larger ones from switchboard.svg. Writes resources/icons/switchboard-<N>.png, switchboard.ico, switchboard.icns.
Both containers hold the PNGs as they are (Qt's own writers store a single size).
"""
import struct
import sys
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
SMALL = 24  # this size and below use the small drawing


def render(svg: Path, size: int) -> QImage:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        sys.exit(f"render_icons: {svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data)


def write_ico(path: Path, pngs: dict[int, bytes]):
    """A .ico whose entries are PNGs (Windows Vista and later): 6-byte header, 16-byte entries, then the data."""
    sizes = [n for n in sorted(pngs) if n <= 256]
    offset = 6 + 16 * len(sizes)
    header, data = struct.pack("<HHH", 0, 1, len(sizes)), b""
    for n in sizes:
        # width, height (0 means 256), colours, reserved, planes, bits per pixel, byte size, offset
        header += struct.pack("<BBBBHHII", n % 256, n % 256, 0, 0, 1, 32, len(pngs[n]), offset + len(data))
        data += pngs[n]
    path.write_bytes(header + data)


ICNS_TYPES = {16: b"icp4", 32: b"icp5", 64: b"icp6", 128: b"ic07", 256: b"ic08", 512: b"ic09"}


def write_icns(path: Path, pngs: dict[int, bytes]):
    """A .icns of PNG entries (macOS 10.7 and later): 'icns' + total length, then per entry type + length + PNG."""
    body = b"".join(ICNS_TYPES[n] + struct.pack(">I", 8 + len(pngs[n])) + pngs[n] for n in sorted(ICNS_TYPES))
    path.write_bytes(b"icns" + struct.pack(">I", 8 + len(body)) + body)


def main():
    app = QGuiApplication.instance() or QGuiApplication([])  # QPainter on QImage needs a Gui application
    pngs = {}
    for n in SIZES:
        image = render(ICONS / ("switchboard-small.svg" if n <= SMALL else "switchboard.svg"), n)
        pngs[n] = png_bytes(image)
        (ICONS / f"switchboard-{n}.png").write_bytes(pngs[n])
    write_ico(ICONS / "switchboard.ico", pngs)
    write_icns(ICONS / "switchboard.icns", pngs)
    del app
    print(f"wrote {len(SIZES)} PNGs, switchboard.ico and switchboard.icns into {ICONS}")


if __name__ == "__main__":
    main()
