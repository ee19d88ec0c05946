"""Typed access to the persisted settings. The store is a QSettings (or anything with its value / setValue /
sync), made by the app (app/gui.py) or a test (backed by a temp file); this module needs no Qt."""
from engine.context import POLICIES
from engine.errors import SwitchboardError
from engine.generation import GenerationSettings

ORGANIZATION = "LoRA Switchboard"
APPLICATION = "switchboard"
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANTIZE = ("auto", "none", "int8", "int4")  # Engine.load's quantize (auto: a GGUF file's own precision, else none)
APPEARANCES = ("system", "light", "dark")


def _flag(value) -> bool:
    """A bool as INI files give it back ("true" / "false"), or as it was set."""
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ValueError(value)
        return value.lower() == "true"
    return bool(value)


# what the router reads before each sentence (engine/context.py): Settings offers these, in this order
ROUTING_CONTEXTS = {
    "turn": "Current turn: your latest message and the reply so far (recommended)",
    "sentence": "Current sentence: your latest message and the reply's last sentence",
    "decayed": "Current turn, with earlier turns at a lower weight",
    "history": "Whole conversation (its last 256 words)",
}


def _routing_context(value) -> str:
    if value not in POLICIES:
        raise ValueError(f"routing context must be one of {', '.join(POLICIES)}, got {value!r}")
    return value


# key: (default, type)
_FIELDS = {
    "model_dir": ("", str),
    "library_dir": ("", str),  # empty: app.paths.default_library_dir()
    "device": ("auto", str),
    "dtype": ("auto", str),
    "quantize": ("auto", str),
    "system_prompt": ("", str),  # a new conversation's
    "appearance": ("system", str),  # one of APPEARANCES; "system" follows the desktop's light or dark setting
    # the local server (app/server) the app runs while it is open
    "server_enabled": (False, _flag),
    "server_host": ("127.0.0.1", str),
    "server_port": (8000, int),
    "server_api_key": ("", str),
    "routing_context": (GenerationSettings().routing_context, _routing_context),  # every reply, from Settings
}
# the GenerationSettings fields the window's Generation controls set; a new conversation starts with the last
# values used (defaults: GenerationSettings)
GENERATION = {"top_p": float, "max_adapters": int, "temperature": float, "top_k": int, "sample_top_p": float,
              "repetition_penalty": float, "max_new_tokens": int}


class Settings:
    def __init__(self, store):
        self.q = store

    def __getattr__(self, key):
        if key not in _FIELDS:
            raise AttributeError(f"Settings has no field {key!r}; known: {', '.join(_FIELDS)}")
        default, kind = _FIELDS[key]
        value = self.q.value(key, default)
        try:  # INI files give strings back; a hand-edited bad value falls back to the default
            return kind(value)
        except (TypeError, ValueError):
            return default

    def __setattr__(self, key, value):
        if key == "q" or key == "generation":  # the store; the property below
            return object.__setattr__(self, key, value)
        if key not in _FIELDS:
            raise AttributeError(f"Settings has no field {key!r}; known: {', '.join(_FIELDS)}")
        self.q.setValue(key, _FIELDS[key][1](value))

    @property
    def generation(self) -> GenerationSettings:
        """The saved generation settings; a field never saved, or hand-edited into a bad value, is the default."""
        g = GenerationSettings()
        for key, kind in GENERATION.items():
            value = self.q.value(key)
            if value is None:
                continue
            try:
                value = kind(value)
                g = g.with_(**{key: None if key == "max_adapters" and value == 0 else value})
            except (TypeError, ValueError, SwitchboardError):
                pass
        return g

    @generation.setter
    def generation(self, g: GenerationSettings):
        for key in GENERATION:
            value = getattr(g, key)
            self.q.setValue(key, 0 if value is None else value)  # max_adapters None ("no limit") is stored as 0

    def window_state(self, name: str):
        """Saved geometry/splitter bytes under `name` (what the store gives back), or None on first run."""
        return self.q.value(f"window/{name}")

    def set_window_state(self, name: str, value):
        self.q.setValue(f"window/{name}", value)

    def location(self) -> str:
        """Where the settings are kept (the store's file), for Help > About."""
        return self.q.fileName() if hasattr(self.q, "fileName") else ""

    def sync(self):
        self.q.sync()
