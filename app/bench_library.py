"""`switchboard bench --library`: time importing N random adapters of a real model's shape into a fresh library.

No model is built: the library checks shapes against model.json, as it does when the app has no model loaded.
The disk baseline copies and fsyncs the same files (what any crash-safe import must at least do), so
`import - disk` is the library's own cost: validation, metadata, index.
"""
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from engine.bench import SHAPES, write_adapters
from engine.errors import SwitchboardError
from engine.transformer import ModelArgs
from .library import Library
from .plural import noun


def run(shape: str, adapters: int, rank: int, targets, dtype: str, where=None, log=print) -> dict:
    from transformers import AutoConfig

    spec = dict(SHAPES[shape])
    shapes = ModelArgs.from_hf(AutoConfig.for_model(spec.pop("model_type"), **spec)).module_shapes()
    dt = getattr(torch, "bfloat16" if dtype == "auto" else dtype)
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        tmp = Path(tmp)
        log(f"writing {adapters} random rank-{rank} {','.join(targets)} {noun(adapters, 'adapter')} "
            f"of the {shape} shape")
        paths = write_adapters(tmp / "src", shapes, adapters, rank, targets, dt)
        files = [f for p in paths for f in p.iterdir()]
        nbytes = sum(f.stat().st_size for f in files)

        t = time.perf_counter()
        for p in paths:
            dst = tmp / "copy" / p.name
            dst.mkdir(parents=True)
            for f in p.iterdir():
                with open(f, "rb") as src, open(dst / f.name, "wb") as out:
                    shutil.copyfileobj(src, out)
                    out.flush()
                    os.fsync(out.fileno())
        disk_s = time.perf_counter() - t

        library = Library(tmp / "library")
        library.set_model(shape, shapes)
        times = []
        t = time.perf_counter()
        results = library.import_paths(paths, progress=lambda *_: times.append(time.perf_counter()))
        import_s = time.perf_counter() - t
        refused = [r.message for r in results if not r.ok]
        if refused:
            raise SwitchboardError(f"the library refused generated adapters: {refused[:3]}")
    each = sorted(b - a for a, b in zip([t] + times, times))
    return {"shape": shape, "adapters": adapters, "rank": rank, "targets": list(targets),
            "dtype": str(dt).removeprefix("torch."), "bytes": nbytes, "import_s": import_s, "disk_s": disk_s,
            "library_s": import_s - disk_s, "each_ms_p50": 1000 * each[len(each) // 2], "each_ms_max": 1000 * each[-1]}


def table(res: dict) -> str:
    return "\n".join([
        f"library import: {res['adapters']} x rank {res['rank']} {','.join(res['targets'])} "
        f"{noun(res['adapters'], 'adapter')}, "
        f"{res['shape']} shape, {res['dtype']}, {res['bytes'] / 1e6:.0f} MB",
        f"  import (copy + fsync + validate + meta + index)  {res['import_s']:7.2f} s",
        f"  disk baseline (copy + fsync the same files)      {res['disk_s']:7.2f} s",
        f"  import - disk                                    {res['library_s']:7.2f} s",
        f"  per adapter: p50 {res['each_ms_p50']:.0f} ms, max {res['each_ms_max']:.0f} ms",
    ])
