"""`switchboard library add|list|remove|rename [--library DIR]`: the app's adapter library from the command line."""
import argparse
import sys

from engine.errors import SwitchboardError

from app.commands import options


def add_parser(subparsers):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--library", metavar="DIR", help="the library folder (default: the app's, in the user "
                                                          "data folder)")
    p = subparsers.add_parser("library", help="add, list, rename or remove the adapters of the library")
    sub = p.add_subparsers(dest="library_command", required=True)
    a = sub.add_parser("add", parents=[common], help="import adapters; exits 1 if any is refused",
                       description="Import PEFT LoRA adapters: adapter folders, .zip archives of one or more "
                                   "adapters, or folders holding adapter folders. One line per adapter.")
    a.add_argument("paths", nargs="+", metavar="PATH")
    a.add_argument("--model", type=options.folder, metavar="DIR", help="check shapes against this model folder "
                                                                       "(default: the model the library was last "
                                                                       "used with, if any)")
    sub.add_parser("list", parents=[common], help="list the adapters")
    r = sub.add_parser("remove", parents=[common], help="remove adapters")
    r.add_argument("names", nargs="+", metavar="NAME")
    n = sub.add_parser("rename", parents=[common], help="rename an adapter (the router then needs a retrain)")
    n.add_argument("old", metavar="OLD")
    n.add_argument("new", metavar="NEW")
    return p


def run(args) -> int:
    from app.library import Library

    for stream in (sys.stdout, sys.stderr):  # a name the terminal cannot show must not end the command
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    library = Library(args.library)
    try:
        return {"add": _add, "list": _list, "remove": _remove, "rename": _rename}[args.library_command](library, args)
    except SwitchboardError as e:
        print(f"switchboard library: {e}", file=sys.stderr)
        return 2


def _add(library, args) -> int:
    engine = None
    if args.model:
        from engine import Engine

        engine = Engine.load(args.model, device="cpu")
    results = library.import_paths(args.paths, engine=engine)
    for r in results:
        print(r.message if r.ok else f"refused: {r.message}", flush=True)
    if any(r.ok for r in results) and library.router_info() is not None:
        print("the router does not know the new adapters yet: retrain it in the app (Library > Adapter library…, Router tab)")
    return 0 if all(r.ok for r in results) else 1


def _list(library, args) -> int:
    adapters = library.list()
    for problem in library.problems():
        print(f"problem: {problem}", file=sys.stderr)
    if not adapters:
        print(f"no adapters in {library.root}")
        return 0
    rows = [("name", "rank", "targets", "size", "examples", "enabled", "accuracy")]
    for a in adapters:
        rows.append((a.name, str(a.rank or "?"), ",".join(a.targets) or "?",
                     "?" if a.size_bytes is None else f"{a.size_bytes / 1e6:.2f} MB",
                     f"{a.n_examples}{' (too few)' if a.too_few_examples else ''}",
                     ("yes" if a.enabled else "no") + ("" if a.problem is None else " (refused)"),
                     "-" if a.accuracy is None else f"{a.accuracy:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _remove(library, args) -> int:
    for name in args.names:
        library.remove(name)
        print(f"removed {name}")
    return 0


def _rename(library, args) -> int:
    library.rename(args.old, args.new)
    print(f"renamed {args.old} to {args.new}" + ("; the router needs a retrain" if library.router_info() else ""))
    return 0
