"""Option types shared by the `switchboard` commands and the app's own flags.

Each type refuses a bad value with a one-line reason before any work starts; `Parser` prints it as
`switchboard chat: argument --top-p: must be in (0, 1], got 0.0 (see switchboard chat --help)` and exits 2.
Generation knobs are checked by engine.generation.GenerationSettings, the one place their rules are written.
"""
import argparse
import math
import re
from pathlib import Path

from engine.errors import SwitchboardError
from engine.generation import GenerationSettings

DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANTIZE = ("auto", "none", "int8", "int4")  # Engine.load's quantize: auto is a GGUF file's own precision, else none
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class Parser(argparse.ArgumentParser):
    """One line on a bad command line (argparse prints the whole usage first); subcommand parsers inherit it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def above_zero(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value:g}")
    return value


def at_least_zero(text: str) -> float:
    value = number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value:g}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def at_least(minimum: int, meaning: str = ""):
    """A whole number >= minimum; `meaning` explains the minimum (e.g. "the timed mixes fuse 3 adapters")."""
    def parse(text: str) -> int:
        value = integer(text)
        if value < minimum:
            why = f" ({meaning})" if meaning else ""
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{why}, got {value}")
        return value
    return parse


def setting(field: str, parse_text):
    """A value for GenerationSettings' `field`, read by `parse_text` (number or integer), checked by its rules."""
    def parse(text: str):
        value = parse_text(text)
        try:
            GenerationSettings(**{field: value})
        except SwitchboardError as e:  # "top_p must be in (0, 1], got 0.0": argparse names the flag itself
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{field} ")) from None
        return value
    return parse


def folder(text: str) -> str:
    """An existing folder (a typo must not silently mean an empty library or no model), ~ expanded."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"folder not found: {path}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"not a folder: {path}")
    return str(path)


def model(text: str) -> str:
    """An existing model folder or .gguf file, ~ expanded."""
    path = Path(text).expanduser()
    if path.suffix.lower() != ".gguf":
        return folder(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"GGUF file not found: {path}")
    return str(path)


def quantized_kinds(text: str) -> tuple[str, ...]:
    """'int8,int4' -> ("int8", "int4"): the quantized engines `bench` times next to the float one."""
    kinds = tuple(k.strip() for k in text.split(","))
    unknown = [k for k in kinds if k not in QUANTIZE[2:]]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind {unknown[0]!r}: use int8, int4 or int8,int4")
    return kinds


def device(text: str) -> str:
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto, cpu, cuda or cuda:N")
    return text


def router_file(text: str) -> Path:
    """A saved router: NAME.safetensors with its NAME.json beside it (as `switchboard router train` writes it);
    the .json may be named instead."""
    path = Path(text).expanduser()
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if path.suffix != ".safetensors":
        raise argparse.ArgumentTypeError(f"{path} is not a router: a router is a NAME.safetensors file with its "
                                         f"NAME.json beside it (switchboard router train --out NAME.safetensors)")
    for f in (path, path.with_suffix(".json")):
        if not f.is_file():
            raise argparse.ArgumentTypeError(f"router file not found: {f} (a router is the pair "
                                             f"{path.name} + {path.with_suffix('.json').name})")
    return path


def new_router_file(text: str) -> Path:
    """Where `router train` writes: NAME.safetensors (and NAME.json beside it)."""
    path = Path(text).expanduser()
    if path.suffix != ".safetensors":
        raise argparse.ArgumentTypeError(f"name the router NAME.safetensors (its NAME.json is written beside it), "
                                         f"got {path.name}")
    return path


def mix(text: str) -> dict[str, float]:
    """'math=0.7,units=0.3' (a bare name weighs 1) -> {name: weight}; weights must be finite and above 0."""
    out = {}
    for part in text.split(","):
        name, sep, weight = (s.strip() for s in part.partition("="))
        if not name:
            raise argparse.ArgumentTypeError(f"bad entry {part!r}: expected name=weight, e.g. 'math=0.7,units=0.3'")
        if name in out:
            raise argparse.ArgumentTypeError(f"adapter {name!r} is named twice")
        value = number(weight) if sep else 1.0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"the weight of {name!r} must be more than 0, got {value:g}")
        out[name] = value
    return out


def app_parser() -> Parser:
    """The app's flags (`switchboard` without a command)."""
    p = Parser(prog="switchboard", description="Open the LoRA Switchboard window (the bundled demo when no model is "
                                               "configured). The commands: switchboard --help.")
    p.add_argument("--model", metavar="DIR", help="model folder to open (not saved to settings; the window says what "
                                                  "is wrong with a bad one, with Settings at hand)")
    p.add_argument("--library", type=folder, metavar="DIR", help="adapter library folder to use (not saved to "
                                                                 "settings)")
    p.add_argument("--prompt", help="send this message once the model is ready")
    p.add_argument("--screenshot", metavar="PNG", help="save the window as this PNG after the reply, then quit")
    return p
