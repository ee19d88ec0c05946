"""Measure the library window while it imports many adapters: event-loop stalls (the 5 ms QTimer probe of
scripts/ui_probe.py) and the per-item progress the panel shows. The numbers go to docs/PERFORMANCE.md (Library).

    python scripts/library_probe.py --adapters 100 --shape llama3-8b --targets q_proj,v_proj

The adapters are random rank-R PEFT folders of a real model's shape, dropped as one folder on a LibraryPanel
whose library knows that model's shapes (model.json), as after the app used the model. No model is loaded: the
import runs on the engine thread like any library job and validates against model.json.
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

    from app.library import Library
    from app.worker import EngineWorker
    from engine.bench import SHAPES, parse_targets, write_adapters
    from engine.transformer import ModelArgs
    from ui.library_jobs import LibraryJobs
    from ui.library_panel import LibraryPanel

    spec = dict(SHAPES[args.shape])
    shapes = ModelArgs.from_hf(AutoConfig.for_model(spec.pop("model_type"), **spec)).module_shapes()
    tmp = Path(tempfile.mkdtemp(dir=args.dir))
    folder = tmp / "dropped"
    write_adapters(folder, shapes, args.adapters, args.rank, parse_targets(args.targets), torch.bfloat16)
    library = Library(tmp / "library")
    library.set_model(args.shape, shapes)

    worker = EngineWorker()
    worker.start()
    panel = LibraryPanel(library, LibraryJobs(worker, library))
    panel.resize(1240, 760)
    panel.show()
    steps = []  # (time, progress bar value) each time the panel shows an item's result
    original = panel._import_step
    panel._import_step = lambda payload: (original(payload), steps.append((time.perf_counter(),
                                                                           panel.import_progress.value())))
    probe = Probe()
    probe.start()
    run_until(app, lambda: len(probe.gaps) >= 400, 30)  # ~2 s idle: the machine's noise floor
    idle = probe.stop()

    probe.start()
    t0 = time.perf_counter()
    panel.import_paths([str(folder)])
    run_until(app, lambda: not panel.jobs.busy, 600)
    seconds = time.perf_counter() - t0
    stall = probe.stop()
    app.processEvents()
    worker.stop()

    listed = len(library.list())
    shutil.rmtree(tmp)
    gaps = [b - a for (a, _), (b, _) in zip([(t0, 0)] + steps, steps)]
    print(f"idle event loop: max gap {idle['max_ms']:.1f} ms (p99 {idle['p99_ms']:.1f})")
    print(f"imported {listed} of {args.adapters} rank-{args.rank} {args.targets} adapters of the {args.shape} shape "
          f"in {seconds:.2f} s through the panel")
    print(f"event loop while importing: max gap {stall['max_ms']:.1f} ms (p99 {stall['p99_ms']:.1f}, "
          f"{stall['ticks']} ticks)")
    print(f"progress: {len(steps)} per-item updates, bar reached {steps[-1][1] if steps else 0}, "
          f"longest wait between two {1000 * max(gaps, default=0):.0f} ms")
    return 0 if listed == args.adapters else 1


if __name__ == "__main__":
    sys.exit(main())
