"""Measure the library window while it imports many adapters: event-loop stalls (the 5 ms QTimer probe of
scripts/ui_probe.py) and the per-item progress the panel shows. The numbers go to docs/PERFORMANCE.md (Library).

    python scripts/library_probe.py --adapters 100 --shape llama3-8b --targets q_proj,v_proj

The adapters are random rank-R PEFT folders of a real model's shape, dropped as one folder on the library window
(opened from the app's Library menu) whose library knows that model's shapes (model.json), as after the app used
the model. No model is loaded: the import runs on the engine thread like any library job and validates against
model.json.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from ui_probe import Probe, run_until  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapters", type=int, default=100)
    p.add_argument("--shape", default="llama3-8b")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--targets", default="q_proj,v_proj")
    p.add_argument("--dir", help="where to write the adapters and the library (default: the temp dir)")
    args = p.parse_args()

    app = QApplication(["library_probe"])
    import torch
    from transformers import AutoConfig

    from app.controller import Controller
    from app.library import Library
    from app.settings import Settings
    from engine.bench import SHAPES, parse_targets, write_adapters
    from engine.transformer import ModelArgs

    spec = dict(SHAPES[args.shape])
    shapes = ModelArgs.from_hf(AutoConfig.for_model(spec.pop("model_type"), **spec)).module_shapes()
    tmp = Path(tempfile.mkdtemp(dir=args.dir))
    folder = tmp / "dropped"
    write_adapters(folder, shapes, args.adapters, args.rank, parse_targets(args.targets), torch.bfloat16)
    library = Library(tmp / "library")
    library.set_model(args.shape, shapes)

    settings = Settings(QSettings(str(tmp / "probe.ini"), QSettings.IniFormat))
    settings.library_dir = str(library.root)
    controller = Controller(settings)
    controller.open_library()
    panel = controller.library.window
    steps = []  # (time, progress bar value) each time the window shows an item's result
    original = panel.import_step
    panel.import_step = lambda *step: (original(*step), steps.append((time.perf_counter(),
                                                                      panel.import_progress.value())))
    probe = Probe()
    probe.start()
    run_until(app, lambda: len(probe.gaps) >= 400, 30)  # ~2 s idle: the machine's noise floor
    idle = probe.stop()

    probe.start()
    t0 = time.perf_counter()
    panel.import_paths([str(folder)])
    run_until(app, lambda: not controller.library.busy, 600)
    seconds = time.perf_counter() - t0
    stall = probe.stop()
    app.processEvents()
    controller.window.close()  # stops the engine thread

    listed = len(library.list())
    shutil.rmtree(tmp)
    gaps = [b - a for (a, _), (b, _) in zip([(t0, 0)] + steps, steps)]
    print(f"idle event loop: max gap {idle['max_ms']:.1f} ms (p99 {idle['p99_ms']:.1f})")
    print(f"imported {listed} of {args.adapters} rank-{args.rank} {args.targets} adapters of the {args.shape} shape "
          f"in {seconds:.2f} s through the window")
    print(f"event loop while importing: max gap {stall['max_ms']:.1f} ms (p99 {stall['p99_ms']:.1f}, "
          f"{stall['ticks']} ticks)")
    print(f"progress: {len(steps)} per-item updates, bar reached {steps[-1][1] if steps else 0}, "
          f"longest wait between two {1000 * max(gaps, default=0):.0f} ms")
    return 0 if listed == args.adapters else 1


if __name__ == "__main__":
    sys.exit(main())
