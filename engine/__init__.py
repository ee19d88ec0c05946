"""LoRA Switchboard engine: model, adapter bank, fused LoRA, decode loop, router. Never imports Qt.

Names are imported on first use (PEP 562): `engine.errors`, `engine.events` and `engine.generation` stay cheap
to import (no torch), so the window and the CLI can name them before the model's thread loads torch."""
import importlib

_WHERE = {"Engine": "engine", "AdapterError": "errors", "ExamplesError": "errors", "ModelError": "errors",
          "RouterError": "errors", "SwitchboardError": "errors", "DoneEvent": "events", "RoutingEvent": "events",
          "TokenEvent": "events", "BASE": "events", "GenerationSettings": "generation"}

__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
