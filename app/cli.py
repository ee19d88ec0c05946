"""`switchboard` command line: no arguments opens the app; subcommands live in app/commands/<name>.py."""
import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

COMMANDS = ["chat", "library", "router", "eval", "bench", "serve", "install_desktop_entry"]


def _version() -> str:
    try:
        return version("lora-switchboard")
    except PackageNotFoundError:
        return "unknown (not installed)"


def parser() -> tuple[argparse.ArgumentParser, dict]:
    p = argparse.ArgumentParser(prog="switchboard", description="LoRA Switchboard: chat with a local LLM while a "
                                "router fuses the right LoRA adapters for every sentence. Without a command, "
                                "opens the app.")
    p.add_argument("--version", action="version", version=f"switchboard {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f"app.commands.{name}")
        module.add_parser(sub)
        modules[name.replace("_", "-")] = module
    return p, modules


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        from app.gui import main as gui_main  # the app, with its own options (--model, --prompt, ...)

        return gui_main(argv)
    p, modules = parser()
    args = p.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
