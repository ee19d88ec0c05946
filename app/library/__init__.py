"""The adapter library on disk: the user's LoRA adapters, their router examples, and the router trained on them.

Layout (root: `--library DIR`, the app's setting, else app.paths.default_library_dir()):

    index.json      {"format": "lora-switchboard-library", "version": 1,
                     "adapters": [name, ...],                        the order; enabled ones load in this order
                     "router": null | {"file": "router-<n>.safetensors",      the current router
                                       "examples": {name: sha256 of the prompts it was trained on}}}
    model.json      {"model": name, "module_shapes": {module: [in, out]}}: the last model the library was used
                    with, so that imports without a model still check shapes
    adapters/<name>/adapter_config.json, adapter_model.safetensors      the PEFT files as imported
    adapters/<name>/examples.jsonl  router examples, {"prompt": ...} per line (absent: none yet)
    adapters/<name>/meta.json       {"name", "color": "#rrggbb" or null (automatic), "enabled", "imported" (ISO
                                     date), "source" (original path), "rank", "targets", "size_bytes",
                                     "n_examples", "accuracy": held-out router accuracy of the last retrain or null}
    router-<n>.safetensors, router-<n>.json   the router pair (Router.save) that index.json names
    .tmp/  staging for imports      .trash/  removed adapters on their way out      .lock  the writers' lock

Crash safety (a SIGKILL or power cut at any instant):
- An adapter exists iff `adapters/<name>/meta.json` does. Its folder is filled and fsynced in .tmp/ and appears
  with one rename; removal is one rename into .trash/. So every listed adapter is complete.
- index.json is replaced atomically (engine/atomic.py). Readers reconcile it with the folders: a name without a
  folder is dropped (a removal cut short before its index write), a folder missing from the index is appended
  (an import cut short after its rename: the adapter is complete, so it is kept).
- A new router pair is written under a fresh name and fsynced, and becomes current only when index.json names
  it: after a crash the index names either the complete old pair or the complete new one. .tmp/ and .trash/
  are emptied by the next writer, and unnamed router pairs deleted when the index names a complete one.
- meta.json and examples.jsonl are each replaced atomically.
Every write holds an exclusive lock on `.lock`, so the app and `switchboard library` can share a library.
Reading takes no lock and writes nothing; loading into an engine records the model in model.json only when
it changed and can be written, so a read-only library can be chatted with.
Damaged records (hand edits, broken disks) are repaired or reported, never a reason to delete (storage.py).

Files: storage.py (the records, the lock, clean-up), importer.py (what a drop holds, copying it in),
library.py (Library: the operations on the library and on the engine that uses it).

Calls that take `engine` also change the running engine (hot-add, remove, router) and must run on the thread
that owns it (app/worker.py). Without an engine they only touch the disk. Index order is kept equal to the
bank's order: the bank appends, so an adapter re-enabled or renamed with an engine moves to the end.
"""
from .importer import ImportResult
from .library import Library
from .storage import MIN_EXAMPLES, AdapterInfo, LibraryError

__all__ = ["MIN_EXAMPLES", "AdapterInfo", "ImportResult", "Library", "LibraryError"]
