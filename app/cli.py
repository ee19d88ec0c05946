"""`switchboard` command line: no command opens the app; commands live in app/commands/<name>.py.

A bad command line, a bad value or a missing display ends with one line on stderr and exit status 2."""
import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from app import paths
from app.commands.options import Parser, app_parser

COMMANDS = ["chat", "library", "router", "eval", "bench", "serve", "install_desktop_entry"]
# QT_QPA_PLATFORM values that need an X11 display ("": unset, and Qt then picks xcb unless WAYLAND_DISPLAY is set);
# offscreen, vnc, eglfs, ... need none, and wayland finds its socket without WAYLAND_DISPLAY
X11_PLATFORMS = ("xcb", "")


def _version() -> str:
    try:
        return version("lora-switchboard")
    except PackageNotFoundError:
        return "unknown (not installed)"


def parser() -> tuple[Parser, dict]:
    p = Parser(prog="switchboard", description="LoRA Switchboard: chat with a local LLM while a router fuses the "
               "right LoRA adapters for every sentence. Without a command, opens the app: switchboard [--model DIR] "
               "[--library DIR].")
    p.add_argument("--version", action="version", version=f"switchboard {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f"app.commands.{name}")
        module.add_parser(sub)
        modules[name.replace("_", "-")] = module
    return p, modules


def no_display() -> str | None:
    """Why the window cannot open here, or None. On Linux and the BSDs Qt needs an X11 or Wayland display unless
    QT_QPA_PLATFORM names a platform that draws without one."""
    if sys.platform in ("win32", "darwin"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0]
    if platform not in X11_PLATFORMS or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("switchboard: no display to open the window on (DISPLAY and WAYLAND_DISPLAY are not set); start it "
            "from a desktop session (or ssh -X), or use a command that needs no window: switchboard chat \"...\" "
            "(switchboard --help lists them)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    paths.use_compile_cache()  # before anything compiles
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        app_parser().parse_args(argv)  # a typo is an error here, not a silent demo
        problem = no_display()
        if problem:
            print(problem, file=sys.stderr)
            return 2
        from app.gui import main as gui_main

        return gui_main(argv)
    p, modules = parser()
    args = p.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
