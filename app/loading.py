"""Open an engine the way the app and the CLI both do: a model folder (else the bundled demo),
its adapters and router. Pure Python; the GUI worker calls it on its thread."""
from dataclasses import dataclass, field
from pathlib import Path

from engine import Engine, ModelError

from .demo_library import demo_adapters, first_start, install_demo
from .library import Library
from .paths import DEMO_DIR, demo_available
from .plural import plural


@dataclass
class Opened:
    engine: Engine
    demo: bool            # True when the bundled demo model was opened
    description: str      # e.g. "demo model (cpu, float32, 6 adapters)"
    refused: list         # [(path, reason)] adapters and the router that could not be loaded
    colors: dict          # {adapter: "#rrggbb"} colours the user chose in the library
    notes: list = field(default_factory=list)  # what the library repaired or skipped, and a missing router
    installed: object = None  # app.demo_library.DemoInstall when the demo was just installed into the library


def open_engine(model_dir=None, *, library_dir=None, device="auto", dtype="auto", allow_pickle=False,
                quantize="auto", progress=None, notify=None) -> Opened:
    """model_dir None -> the demo model; else a model folder or .gguf file. library_dir: the adapter library to
    load (with its router). The demo with a library folder that is not there yet or empty (first start) installs
    the demo's adapters, examples and router into it first (app/demo_library.py); the demo without a library loads
    its own bundled adapters and router. quantize: "auto" | "none" | "int8" | "int4" (see Engine.load).
    progress(done, total, name) after each library adapter loads; notify(message) before each step of installing
    the demo."""
    demo = model_dir is None
    if demo:
        if not demo_available():
            raise ModelError("no model folder is configured and the bundled demo is not installed: "
                             "choose a model folder (switchboard chat --model DIR, or Settings in the app)")
        model_dir = DEMO_DIR / "model"
    engine = Engine.load(model_dir, device=device, dtype=dtype, allow_pickle=allow_pickle, quantize=quantize)
    if demo:
        engine.model_name = "demo model"  # not its folder's name, `model`: exports and the library show this
    refused, colors, notes, installed = [], {}, [], None
    if library_dir is not None:
        library = Library(library_dir)
        if demo and first_start(library):
            installed = install_demo(library, engine, progress=notify)
            notes = [installed.message]
        else:
            notes = library.problems()  # before loading: a writer repairs what it can
            refused = library.load_into(engine, progress=progress)
        colors = {a.name: a.color for a in library.list() if a.color}
        if engine.adapters and library.router_file() is None:
            notes.append("no router has been trained for these adapters: every sentence uses the base model "
                         "(retrain it in the app: Library > Adapter library…, Router tab)")
    elif demo:
        for path in demo_adapters():
            engine.add_adapter(path)
        engine.load_router(DEMO_DIR / "router.safetensors")
    what = "demo model" if demo else f"model {Path(model_dir).name}"
    precision = str(engine.dtype).removeprefix("torch.") + (f", {engine.quantize} weights" if engine.quantize else "")
    return Opened(engine, demo, f"{what} ({engine.device}, {precision}, {plural(len(engine.adapters), 'adapter')})",
                  refused, colors, notes, installed)
