"""Typed access to the persisted settings (QSettings). Tests pass their own QSettings backed by a temp file."""
from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "LoRA Switchboard"
APPLICATION = "switchboard"
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")

# key: (default, type). max_adapters 0 means "no limit" (the engine's None).
_FIELDS = {
    "model_dir": ("", str),
    "library_dir": ("", str),  # empty: app.paths.default_library_dir()
    "device": ("auto", str),
    "dtype": ("auto", str),
    "top_p": (0.8, float),
    "max_adapters": (0, int),
    "temperature": (0.0, float),
    "max_new_tokens": (256, int),
}


class Settings:
    def __init__(self, qsettings: QSettings | None = None):
        self.q = qsettings if qsettings is not None else QSettings(ORGANIZATION, APPLICATION)

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
        if key == "q":
            return object.__setattr__(self, key, value)
        if key not in _FIELDS:
            raise AttributeError(f"Settings has no field {key!r}; known: {', '.join(_FIELDS)}")
        self.q.setValue(key, _FIELDS[key][1](value))

    def window_state(self, name: str) -> QByteArray | None:
        """Saved geometry/splitter bytes under `name`, or None on first run."""
        value = self.q.value(f"window/{name}")
        return value if isinstance(value, QByteArray) else None

    def set_window_state(self, name: str, value: QByteArray):
        self.q.setValue(f"window/{name}", value)

    def sync(self):
        self.q.sync()
