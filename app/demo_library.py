"""The bundled demo as a library: its adapters, their router examples and its router, installed into the user's.

On first start (the library folder does not exist yet, or is empty) the app installs the demo's adapters into the
user's library and trains the library's router on their examples; from then on the demo model opens with that
library, so an adapter the user adds there is routed in the chat once the router is retrained, like any other.
Installed rather than shown read-only with a "copy into my library" action: the library window, the retrain and
the chat then see one set of adapters, and the user's first drop works without a step to discover first.

Training the router from the demo's examples with the library's defaults gives the bundled router exactly when the
bundle was built by the current packaging/build_demo.py (it trains it the same way); it takes 13-40 s on a 2-core
CPU, once, with the status bar saying so.
Installing is idempotent and loses nothing: a demo adapter whose name the library already has is skipped (the
user's adapter, its examples and settings stay as they are), and the router is retrained only when adapters were
added: head-only when the library had a router for its adapters, so the user's routing is kept.
"""
from dataclasses import dataclass, field

from engine.errors import RouterError

from . import paths
from .library import Library


@dataclass
class DemoInstall:
    added: list = field(default_factory=list)    # demo adapter names now in the library
    skipped: list = field(default_factory=list)  # (name, reason) not installed
    router: dict | None = None                   # the retrained router's report (accuracy, mode, path, ...)
    router_problem: str | None = None            # why the router was not retrained (the adapters are installed)

    @property
    def message(self) -> str:
        """One line for the status bar or the library window."""
        if not self.added:
            return "The demo's adapters are already in your library."
        text = f"Installed the demo's {len(self.added)} adapters into your library"
        if self.router is not None:
            text += f"; router retrained (held-out accuracy {self.router['accuracy']:.2f})"
        elif self.router_problem:
            text += f"; the router was not retrained: {self.router_problem}"
        return text + "."


def first_start(library: Library) -> bool:
    """True when the library folder does not exist or holds nothing: the demo is installed there."""
    return not library.root.exists() or (library.root.is_dir() and not any(library.root.iterdir()))


def demo_adapters() -> list:
    """The bundled demo's adapter folders, in name order (the bank's and the router's order)."""
    if not paths.demo_available():
        return []
    return sorted(p for p in (paths.DEMO_DIR / "adapters").iterdir() if p.is_dir())


def install_demo(library: Library, engine=None, progress=None) -> DemoInstall:
    """Import the demo adapters the library lacks (with `engine`: checked against its model and hot-added), then
    retrain the library's router when any were added (with `engine`: it loads the new router; its bank must hold
    exactly the library's enabled adapters, as after Library.load_into). progress(message) before each step."""
    result = DemoInstall()
    have = {a.name.casefold() for a in library.list()}
    todo = []
    for path in demo_adapters():
        if path.name.casefold() in have:
            result.skipped.append((path.name, "the library already has an adapter of this name"))
        else:
            todo.append(path)
    if progress is not None and todo:
        progress(f"Installing the demo's {len(todo)} adapters into your library…")
    for r in library.import_paths(todo, engine=engine):
        if r.ok:
            result.added.append(r.name)
        else:
            result.skipped.append((r.path, r.message))
    if result.added:
        if progress is not None:
            progress("Training the library's router on the demo's examples…")
        try:
            result.router = library.retrain(engine)
        except RouterError as e:  # e.g. one of the user's adapters has no examples yet
            result.router_problem = str(e)
    return result
