"""`switchboard install-desktop-entry [--prefix DIR]`: put the app in the Linux desktop's application menu.

Writes <data>/applications/<APP_ID>.desktop, whose Exec= starts this installation (the frozen bundle, the
`switchboard` script that is running, or this Python), and the icon into <data>/icons/hicolor/*/apps/.
<data> is $XDG_DATA_HOME (default ~/.local/share), or DIR/share with --prefix. Prints every file it wrote."""
import os
import shutil
import sys
from pathlib import Path

from app.icon import APP_ID, ICON_DIR, SIZES

# Desktop Entry spec: an Exec argument holding one of these must be double-quoted
RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def add_parser(sub):
    p = sub.add_parser("install-desktop-entry", help="add the app to the Linux application menu (with its icon)",
                       description="Write a freedesktop .desktop entry that starts this installation of "
                                   "switchboard, and the app icon, into the user's applications and icons folders.")
    p.add_argument("--prefix", metavar="DIR", help="write into DIR/share/applications and DIR/share/icons instead of "
                                    "$XDG_DATA_HOME (default ~/.local/share)")


def launcher() -> list[str]:
    """The command that starts this installation: the frozen executable, the running `switchboard` script, or
    this Python running app.cli (works wherever the package is importable)."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    script = Path(sys.argv[0])
    if script.name in ("switchboard", "switchboard.exe") and script.is_file():
        return [str(script.absolute())]  # not resolve(): keep pipx's stable ~/.local/bin link
    return [sys.executable, "-m", "app.cli"]


def exec_arg(arg: str) -> str:
    """One Exec= argument: quoted with \\ " ` $ escaped when it holds a reserved character, % doubled (field codes),
    then every backslash doubled once more (the string-value escape, applied before unquoting)."""
    arg = arg.replace("%", "%%")
    if any(c in RESERVED for c in arg):
        arg = '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg) + '"'
    return arg.replace("\\", "\\\\")


def desktop_entry(command: list[str]) -> str:
    """The .desktop file (packaging/<APP_ID>.desktop is this with command ["switchboard"])."""
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Version=1.4\n"
        "Name=LoRA Switchboard\n"
        "GenericName=Local LLM chat\n"
        "Comment=Chat with a local LLM while a router fuses the right LoRA adapters for every sentence\n"
        f"Exec={' '.join(exec_arg(a) for a in command)}\n"
        f"Icon={APP_ID}\n"
        "Terminal=false\n"
        "Categories=Science;ArtificialIntelligence;\n"
        "Keywords=LLM;LoRA;PEFT;adapter;router;chat;AI;\n"
        "StartupNotify=true\n"
        "StartupWMClass=switchboard\n"  # X11 WM_CLASS: app.gui names the QApplication "switchboard"
    )


def install(data_dir: Path) -> list[Path]:
    """Write the entry and icons under data_dir (an XDG data folder) -> the files written."""
    entry = data_dir / "applications" / f"{APP_ID}.desktop"
    icons = [(ICON_DIR / f"switchboard-{n}.png", data_dir / "icons" / "hicolor" / f"{n}x{n}" / "apps" / f"{APP_ID}.png")
             for n in SIZES]
    icons.append((ICON_DIR / "switchboard.svg", data_dir / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"))
    for source, target in icons:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(desktop_entry(launcher()), encoding="utf-8")
    return [entry] + [target for _, target in icons]


def run(args) -> int:
    if args.prefix:
        data_dir = Path(args.prefix) / "share"
    elif sys.platform in ("win32", "darwin"):
        print("switchboard install-desktop-entry: desktop entries are for Linux (freedesktop) desktops; on Windows "
              "and macOS use the app bundle (packaging/build_bundle.sh)", file=sys.stderr)
        return 2
    else:
        data_dir = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    try:
        written = install(data_dir)
    except OSError as e:
        print(f"switchboard install-desktop-entry: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0
