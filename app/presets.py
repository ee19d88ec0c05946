"""Sampling presets: named values of the four sampling knobs of GenerationSettings (temperature, top-k,
sampling top-p, repetition penalty). Three are built in; the user's own are kept in <user data>/presets.json:

    {"format": "lora-switchboard-presets", "version": 1,
     "presets": [{"name": str, "temperature": float, "top_k": int, "sample_top_p": float,
                  "repetition_penalty": float}, ...]}

written atomically (engine/atomic.py). A preset never touches routing (routing top-p, max adapters): it changes
how the next token is picked, not which adapters are fused. A damaged presets.json is reported in `problem`
and left as it is: the built-in presets still work, and saving a preset is refused until the file is fixed.
"""
import json
from dataclasses import dataclass, fields
from pathlib import Path

from engine.atomic import write_json
from engine.errors import SwitchboardError
from engine.generation import GenerationSettings

from .paths import user_data_dir

FORMAT, VERSION = "lora-switchboard-presets", 1
FIELDS = ("temperature", "top_k", "sample_top_p", "repetition_penalty")


@dataclass(frozen=True)
class Preset:
    name: str
    temperature: float
    top_k: int
    sample_top_p: float
    repetition_penalty: float
    builtin: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise SwitchboardError(f"a preset needs a name, got {self.name!r}")
        self.apply(GenerationSettings())  # GenerationSettings refuses a bad value, naming the field

    @classmethod
    def of(cls, name: str, settings: GenerationSettings) -> "Preset":
        """A user preset holding the sampling values of `settings`."""
        return cls(name.strip(), *(getattr(settings, f) for f in FIELDS))

    @property
    def values(self) -> dict:
        return {f: getattr(self, f) for f in FIELDS}

    def apply(self, settings: GenerationSettings) -> GenerationSettings:
        """`settings` with this preset's sampling values (routing and stopping unchanged)."""
        return settings.with_(**self.values)


# Precise is GenerationSettings' defaults (greedy): a new conversation starts on it
BUILTIN = (
    Preset("Precise", temperature=0.0, top_k=0, sample_top_p=1.0, repetition_penalty=1.0, builtin=True),
    Preset("Balanced", temperature=0.7, top_k=40, sample_top_p=0.9, repetition_penalty=1.1, builtin=True),
    Preset("Creative", temperature=1.1, top_k=0, sample_top_p=0.95, repetition_penalty=1.05, builtin=True),
)


class Presets:
    def __init__(self, path=None):
        self.path = Path(path).expanduser() if path is not None else user_data_dir() / "presets.json"
        self.problem: str | None = None  # why the user presets could not be read at the last all()

    def all(self) -> list[Preset]:
        """The built-in presets, then the user's in name order."""
        return [*BUILTIN, *sorted(self._user(), key=lambda p: p.name.casefold())]

    def get(self, name: str) -> Preset:
        """The preset called `name` (any case)."""
        presets = self.all()
        for p in presets:
            if p.name.casefold() == name.strip().casefold():
                return p
        raise SwitchboardError(f"no preset {name!r}; presets: {', '.join(p.name for p in presets)}")

    def matching(self, settings: GenerationSettings) -> Preset | None:
        """The first preset whose values `settings` has (the window shows its name, or "Custom" for None)."""
        return next((p for p in self.all() if p.apply(settings) == settings), None)

    def save(self, name: str, settings: GenerationSettings) -> Preset:
        """Save the sampling values of `settings` as the user preset `name`, replacing one of that name."""
        preset = Preset.of(name, settings)
        builtin = next((p for p in BUILTIN if p.name.casefold() == preset.name.casefold()), None)
        if builtin:
            raise SwitchboardError(f"{builtin.name!r} is a built-in preset: save under another name")
        kept = [p for p in self._writable() if p.name.casefold() != preset.name.casefold()]
        self._write([*kept, preset])
        return preset

    def delete(self, name: str):
        preset = self.get(name)
        if preset.builtin:
            raise SwitchboardError(f"{preset.name!r} is a built-in preset and cannot be deleted")
        self._write([p for p in self._writable() if p.name != preset.name])

    def _writable(self) -> list[Preset]:
        presets = self._user()
        if self.problem:
            raise SwitchboardError(f"{self.problem}: fix or move the file before changing presets")
        return presets

    def _write(self, presets: list[Preset]):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"format": FORMAT, "version": VERSION,
                               "presets": [{"name": p.name, **p.values} for p in presets]})

    def _user(self) -> list[Preset]:
        self.problem = None
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_bytes().decode("utf-8"))
            json.dumps(raw, ensure_ascii=False).encode("utf-8")  # a \ud800 escape reads as text that cannot be saved
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                raise SwitchboardError("not a LoRA Switchboard presets file")
            if raw.get("version") != VERSION:
                raise SwitchboardError(f"presets format version {raw.get('version')!r}; this app reads {VERSION}")
            entries = raw.get("presets")
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise SwitchboardError('"presets" must be a list of objects')
            known = {f.name for f in fields(Preset)} - {"builtin"}
            presets = [Preset(**{k: v for k, v in e.items() if k in known}) for e in entries]
        except (OSError, UnicodeError, json.JSONDecodeError, SwitchboardError, TypeError) as e:
            self.problem = f"{self.path}: {e}"
            return []
        return presets
