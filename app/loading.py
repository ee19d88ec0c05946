"""Open an engine the way the app and the CLI both do: a model folder (else the bundled demo),
its adapters and router. Pure Python; the GUI worker calls it on its thread."""
from dataclasses import dataclass
from pathlib import Path

from engine import Engine, ModelError

from .demo_library import demo_adapters, first_start, install_demo
from .paths import DEMO_DIR, demo_available


@dataclass
class Opened:
    engine: Engine
    demo: bool            # True when the bundled demo model was opened
    description: str      # e.g. "demo model (cpu, float32, 6 adapters)"
    refused: list         # [(path, reason)] adapters that could not be loaded
    colors: dict          # {adapter: "#rrggbb"} colours the user chose in the library
    installed: object = None  # app.demo_library.DemoInstall when the demo was just installed into the library


def open_engine(model_dir=None, *, library_dir=None, device="auto", dtype="auto", allow_pickle=False,
                progress=None) -> Opened:
    """model_dir None -> the demo model. library_dir: the adapter library to load (with its router). The demo
    with a library folder that is not there yet (first start) installs the demo's adapters, examples and router
    into it first (app/demo_library.py); the demo without a library loads its own bundled adapters and router."""
    demo = model_dir is None
    if demo:
        if not demo_available():
            raise ModelError("no model folder is configured and the bundled demo is not installed: "
                             "choose a model folder (switchboard chat --model DIR, or Settings in the app)")
        model_dir = DEMO_DIR / "model"
    engine = Engine.load(model_dir, device=device, dtype=dtype, allow_pickle=allow_pickle)
    refused, colors, installed = [], {}, None
    if library_dir is not None:
        from .library import Library

        library = Library(library_dir)
        if demo and first_start(library):
            installed = install_demo(library, engine)
        else:
            refused = library.load_into(engine, progress=progress)
        colors = {a.name: a.color for a in library.list() if a.color}
    elif demo:
        for path in demo_adapters():
            engine.add_adapter(path)
        engine.load_router(DEMO_DIR / "router.safetensors")
    what = "demo model" if demo else f"model {Path(model_dir).name}"
    dtype_name = str(engine.model.lm_head.weight.dtype).removeprefix("torch.")
    return Opened(engine, demo, f"{what} ({engine.device}, {dtype_name}, {len(engine.adapters)} adapters)", refused,
                  colors, installed)
