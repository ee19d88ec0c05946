"""Errors the engine raises on bad input. Each message names the file, module and shapes involved."""


class SwitchboardError(Exception):
    """Base class: anything the user can fix (bad folder, bad adapter, bad examples)."""


class ModelError(SwitchboardError):
    """A model folder that cannot be loaded: missing, no config, unsupported, pickle-only, bad tokenizer."""


class AdapterError(SwitchboardError):
    """A PEFT adapter that cannot join the bank; the bank is left exactly as it was."""


class RouterError(SwitchboardError):
    """A router file that is corrupt or was trained for another set of adapters."""


class ExamplesError(SwitchboardError):
    """A router examples file that is empty, malformed or badly encoded (message names file and line)."""
