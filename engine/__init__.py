"""LoRA Switchboard engine: model, adapter bank, fused LoRA, decode loop, router. Never imports Qt."""
from .engine import Engine
from .errors import AdapterError, ExamplesError, ModelError, RouterError, SwitchboardError
from .events import DoneEvent, RoutingEvent, TokenEvent

__all__ = ["Engine", "AdapterError", "ExamplesError", "ModelError", "RouterError", "SwitchboardError",
           "DoneEvent", "RoutingEvent", "TokenEvent"]
