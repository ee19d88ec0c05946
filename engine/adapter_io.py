"""Read and validate one PEFT LoRA adapter (a folder or a .zip) into float32 CPU tensors for the bank.

Nothing here touches the model or the GPU: the bank (engine/lora.py) consumes LoraWeights. Every bad
input raises AdapterError naming the file, the module and the shapes. Weights are read with safetensors;
pickled weights are refused unless allow_pickle=True, and then only go through torch.load(weights_only=True).
Zips are read in memory, never extracted.
"""
import io
import json
import math
import re
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import safetensors.torch
import torch

from .errors import AdapterError

CONFIG = "adapter_config.json"
SAFETENSORS = "adapter_model.safetensors"
PICKLES = ("adapter_model.bin", "adapter_model.pt")
R_DEFAULT, ALPHA_DEFAULT = 8, 8      # PEFT 0.21's LoraConfig defaults, used when the JSON omits r / lora_alpha
MAX_CONFIG_BYTES = 16 << 20
MAX_ZIP_BYTES = 8 << 30              # total uncompressed size of all members
MAX_ZIP_RATIO = 100                  # uncompressed / compressed, of members over 1 MiB and of the whole archive
MAX_ZIP_MEMBERS = 10_000
MAX_PATTERN_KEYS = 1000              # rank_pattern / alpha_pattern keys, each at most this many characters
PATTERN_SECONDS = 1.0                # matching all pattern keys against all modules of one adapter

# Config fields that switch on something other than y += s * B @ A on a linear layer, or that train
# weights besides A and B. Refused when truthy, as PEFT itself treats them.
UNSUPPORTED = {
    "use_dora": "DoRA", "lora_bias": "LoRA bias terms (lora_bias)",
    "modules_to_save": "fully trained extra modules (modules_to_save)",
    "trainable_token_indices": "trainable token embeddings (trainable_token_indices)",
    "layer_replication": "layer replication", "target_parameters": "LoRA on bare parameters (target_parameters)",
    "use_qalora": "QA-LoRA", "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
    "arrow_config": "Arrow routing (arrow_config)", "use_bdlora": "block-diagonal LoRA (use_bdlora)",
    "velora_config": "VeLoRA", "monteclora_config": "MonteCLoRA", "kasa_config": "KaSA",
}
# These initialisations rewrite the base weights (W0 - s * B0 @ A0) and PEFT redoes that when it loads the
# adapter, so the saved A, B are only right on that rewritten base, never on the shared W0 the bank mixes on.
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")

# base_model.model.<module>.lora_A.weight; some tools keep the adapter name (.lora_A.default.weight), and
# transformers' own adapter saving drops the base_model.model. prefix.
KEY = re.compile(r"(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight")


@dataclass
class LoraWeights:
    name: str
    source: str                                               # the folder or zip it came from
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]     # module -> (A [r, in], B [out, r] * scaling), float32 CPU
    ranks: dict[str, int]                                     # module -> r
    config: dict                                              # the parsed adapter_config.json
    nbytes: int = None                                        # of the tensors as stored in the file

    def __post_init__(self):
        if self.nbytes is None:  # built by hand from float32 tensors
            self.nbytes = sum(4 * (a.numel() + b.numel()) for a, b in self.modules.values())

    @property
    def rank(self) -> int:
        return max(self.ranks.values())

    @property
    def targets(self) -> list[str]:
        return sorted({m.rsplit(".", 1)[-1] for m in self.modules})


def printable(text) -> str:
    """A path or message safe to print and to write as UTF-8: bytes of a file name that are not UTF-8 text
    (Python keeps them as lone surrogates) shown as U+FFFD."""
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (e.g. from a JSON "\\ud800")
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def read_adapter(path, module_shapes: dict[str, tuple[int, int]], *, name=None, allow_pickle=False) -> LoraWeights:
    """Read the PEFT LoRA adapter at `path` (folder or .zip) and check it against the model's linear
    layers, `module_shapes`: full HF module name -> (in_features, out_features). Raises AdapterError, whose
    message is printable (see printable)."""
    try:
        return _read_adapter(Path(path), module_shapes, name, allow_pickle)
    except AdapterError as e:
        raise AdapterError(printable(str(e))) from None


def _read_adapter(path: Path, module_shapes, name, allow_pickle) -> LoraWeights:
    if path.is_dir():
        config_label, config_bytes, weights_label, weights = _read_folder(path, allow_pickle)
        default_name = path.resolve().name
    elif path.is_file() and path.suffix.lower() == ".zip":
        config_label, config_bytes, weights_label, weights = _read_zip(path, allow_pickle)
        default_name = path.stem
    elif path.exists():
        raise AdapterError(f"{path}: not a PEFT adapter folder or .zip archive")
    else:
        raise AdapterError(f"{path}: no such adapter folder or .zip archive")

    config = _parse_config(config_label, config_bytes)
    tensors = _load_tensors(weights_label, weights)
    modules, ranks, nbytes = _lora_modules(weights_label, config_label, tensors, config, module_shapes)
    return LoraWeights(name or default_name, str(path), modules, ranks, config, nbytes)


def _read_folder(folder: Path, allow_pickle: bool):
    """-> (config label, config bytes, weights label, weights path)."""
    config = folder / CONFIG
    if not config.is_file():
        raise AdapterError(f"{folder}: no {CONFIG} (not a PEFT adapter folder)")
    try:
        if config.stat().st_size > MAX_CONFIG_BYTES:
            raise AdapterError(f"{config}: {config.stat().st_size} bytes, too large for an adapter config")
        config_bytes = config.read_bytes()
        present = {p.name for p in folder.iterdir() if p.is_file()}
    except OSError as e:
        raise AdapterError(f"{folder}: cannot read ({e})") from e
    weights = folder / weights_name(present, folder, allow_pickle)
    return str(config), config_bytes, str(weights), weights


def _read_zip(zpath: Path, allow_pickle: bool):
    """-> (config label, config bytes, weights label, weights bytes), read in memory, nothing extracted."""
    try:
        with zipfile.ZipFile(zpath) as zf:
            infos = zf.infolist()
            check_members(zpath, infos)
            configs = [i.filename for i in infos if PurePosixPath(i.filename).name == CONFIG and not i.is_dir()]
            if not configs:
                raise AdapterError(f"{zpath}: no {CONFIG} in the archive (not a PEFT adapter)")
            if len(configs) > 1:
                raise AdapterError(f"{zpath}: holds {len(configs)} adapters ({', '.join(configs)}); "
                                   "expected exactly one")
            folder = PurePosixPath(configs[0]).parent
            if len(folder.parts) > 1:
                raise AdapterError(f"{zpath}: {configs[0]} is nested too deep; put the adapter files at the "
                                   "root of the archive or in one folder")
            prefix = "" if folder == PurePosixPath(".") else f"{folder}/"
            present = {i.filename[len(prefix):] for i in infos if i.filename.startswith(prefix) and not i.is_dir()}
            weights = prefix + weights_name(present, f"{zpath}/{prefix}".rstrip("/"), allow_pickle)
            if zf.getinfo(configs[0]).file_size > MAX_CONFIG_BYTES:
                raise AdapterError(f"{zpath}/{configs[0]}: too large for an adapter config")
            return f"{zpath}/{configs[0]}", zf.read(configs[0]), f"{zpath}/{weights}", zf.read(weights)
    # what zipfile and zlib raise on corrupt, truncated, encrypted or exotic archives
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, NotImplementedError,
            ValueError, zlib.error) as e:
        raise AdapterError(f"{zpath}: cannot read the zip archive ({e})") from e


def check_members(zpath: Path, infos: list[zipfile.ZipInfo]):
    """Refuse the whole archive for zip-slip names, duplicate names and zip bombs (one member, or many small
    ones), before reading anything. Other odd names are harmless: members are only ever looked up by name."""
    if len(infos) > MAX_ZIP_MEMBERS:
        raise AdapterError(f"{zpath}: {len(infos)} members, more than {MAX_ZIP_MEMBERS}")
    seen = set()
    for i in infos:
        if not i.filename:
            raise AdapterError(f"{zpath}: a member has an empty name")
        parts = i.filename.replace("\\", "/").split("/")
        if i.filename.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[/\\]", i.filename) or ".." in parts:
            raise AdapterError(f"{zpath}: member {i.filename!r} points outside the archive (absolute path or "
                               "'..'); refusing the whole archive")
        if i.filename in seen:
            raise AdapterError(f"{zpath}: member {i.filename!r} appears twice")
        seen.add(i.filename)
        if i.file_size > (1 << 20) and i.file_size > MAX_ZIP_RATIO * max(i.compress_size, 1):
            raise AdapterError(f"{zpath}: member {i.filename!r} expands {i.compress_size} -> {i.file_size} bytes, "
                               f"more than {MAX_ZIP_RATIO}x (zip bomb guard)")
    total, packed = sum(i.file_size for i in infos), sum(i.compress_size for i in infos)
    if total > MAX_ZIP_BYTES:
        raise AdapterError(f"{zpath}: {total} bytes uncompressed, over the {MAX_ZIP_BYTES} byte limit")
    if total > (1 << 20) and total > MAX_ZIP_RATIO * max(packed, 1):
        raise AdapterError(f"{zpath}: its {len(infos)} members expand {packed} -> {total} bytes, more than "
                           f"{MAX_ZIP_RATIO}x (zip bomb guard)")


def weights_name(present: set[str], where, allow_pickle: bool) -> str:
    """The weights file to read among the file names `present` beside the config."""
    if SAFETENSORS in present:
        return SAFETENSORS
    pickled = [n for n in PICKLES if n in present]
    if not pickled:
        raise AdapterError(f"{where}: no {SAFETENSORS} beside {CONFIG}")
    if not allow_pickle:
        raise AdapterError(f"{where}/{pickled[0]}: pickle-only weights are refused (unpickling can run code); "
                           f"convert them to {SAFETENSORS}, or allow pickle to load them with weights_only=True")
    return pickled[0]


def _parse_config(label: str, data: bytes) -> dict:
    try:
        config = json.loads(data)
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON and bad UTF-8; RecursionError: deep nesting
        raise AdapterError(f"{label}: not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise AdapterError(f"{label}: expected a JSON object, got {type(config).__name__}")
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"{label}: peft_type is {config.get('peft_type')!r}; only LoRA adapters (\"LORA\") "
                           "are supported")
    for key, what in UNSUPPORTED.items():
        if config.get(key):
            raise AdapterError(f"{label}: {what} is not supported ({key}={config[key]!r}); only plain LoRA on "
                               "linear layers can be fused")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(BASE_REWRITING_INITS):
        raise AdapterError(f"{label}: init_lora_weights={init!r} rewrites the base weights, so this adapter only "
                           "works on that rewritten model; convert it to plain LoRA first (PEFT's "
                           "save_pretrained(path_initial_model_for_weight_conversion=...))")
    if not isinstance(config.get("use_rslora", False), bool):
        raise AdapterError(f"{label}: use_rslora must be true or false, got {config['use_rslora']!r}")
    if config.get("fan_in_fan_out"):
        # fan_in_fan_out only describes GPT-2's Conv1D ([in, out] weights). On nn.Linear targets PEFT warns
        # and resets it to False, so the saved A [r, in], B [out, r] are used as they are; do the same.
        warnings.warn(f"{label}: fan_in_fan_out=true ignored: the targets are nn.Linear layers (as PEFT does)")
    _rank_value(label, "r", config.get("r", R_DEFAULT))
    _alpha_value(label, "lora_alpha", config.get("lora_alpha", ALPHA_DEFAULT))
    for field, check in (("rank_pattern", _rank_value), ("alpha_pattern", _alpha_value)):
        pattern = config.get(field) or {}
        if not isinstance(pattern, dict):
            raise AdapterError(f"{label}: {field} must be an object mapping module patterns to values, "
                               f"got {pattern!r}")
        for key, value in pattern.items():
            check(label, f"{field}[{key!r}]", value)
    return config


def _rank_value(label, field, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdapterError(f"{label}: {field} must be a positive integer, got {value!r}")
    if value <= 0:
        raise AdapterError(f"{label}: {field} is {value}; a LoRA rank must be at least 1")
    return value


def _alpha_value(label, field, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AdapterError(f"{label}: {field} must be a number, got {value!r}")
    try:
        alpha = float(value)
    except OverflowError:  # an integer beyond float range
        alpha = math.inf
    if not math.isfinite(alpha):
        raise AdapterError(f"{label}: {field} must be a finite number, got {value!r}")
    return alpha


class _Patterns:
    """PEFT 0.21's rank_pattern / alpha_pattern rule (get_pattern_key): the first key k, in file order, with
    re.match(rf"(.*\\.)?({k})$", module) wins; otherwise the config-wide default. Matched here as k matching the
    whole of the module name from its start or from just after a dot (the same thing, without the leading
    `.*` to backtrack over), by the `regex` module with a deadline: "(.|.|.)*Z", which Python's re never
    finishes on a module name, is decided at once, and a key that still backtracks without end (such as
    "(.*){1,32000}[bc]") is refused after PATTERN_SECONDS instead of hanging the app."""

    def __init__(self, label, config):
        import regex

        self.label, self.regex, self.deadline = label, regex, None
        self.keys = {}
        for field in ("rank_pattern", "alpha_pattern"):
            pattern = config.get(field) or {}
            if len(pattern) > MAX_PATTERN_KEYS or any(len(k) > MAX_PATTERN_KEYS for k in pattern):
                raise AdapterError(f"{label}: {field} has more than {MAX_PATTERN_KEYS} keys or a key longer than "
                                   f"{MAX_PATTERN_KEYS} characters")
            compiled = []
            for key, value in pattern.items():
                try:
                    compiled.append((key, regex.compile(key, regex.VERSION0), value))
                except (regex.error, OverflowError, RecursionError, ValueError, MemoryError) as e:
                    raise AdapterError(f"{label}: {field} key {key!r} is not a valid regular expression ({e})") from e
            self.keys[field] = compiled

    def value(self, field, module, default):
        if self.deadline is None:
            self.deadline = time.monotonic() + PATTERN_SECONDS
        starts = [0] + [i + 1 for i, c in enumerate(module) if c == "."]
        for key, pattern, value in self.keys[field]:
            for start in starts:
                try:
                    hit = pattern.fullmatch(module, start, timeout=max(self.deadline - time.monotonic(), 1e-3))
                except TimeoutError:
                    raise AdapterError(f"{self.label}: {field} key {key!r} takes too long to match the module names "
                                       f"(over {PATTERN_SECONDS:g} s); simplify it") from None
                if hit:
                    return value
        return default


def _load_tensors(label: str, weights) -> dict[str, torch.Tensor]:
    """weights: a path (folder) or bytes (zip member) of a safetensors or pickled state dict."""
    # Both parsers are third-party code with open-ended error types on corrupt input: wrap whatever they raise.
    if label.endswith(SAFETENSORS):
        try:
            if isinstance(weights, Path):
                return safetensors.torch.load_file(weights)
            return safetensors.torch.load(weights)
        except Exception as e:
            raise AdapterError(f"{label}: corrupt or truncated safetensors file ({e})") from e
    try:
        state = torch.load(weights if isinstance(weights, Path) else io.BytesIO(weights), map_location="cpu",
                           weights_only=True)
    except Exception as e:
        raise AdapterError(f"{label}: cannot load it with torch.load(weights_only=True) ({e})") from e
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise AdapterError(f"{label}: expected a dict of named tensors, got {type(state).__name__}")
    return state


def _lora_modules(label, config_label, tensors, config, module_shapes):
    """-> ({module: (A [r, in], B [out, r] * scaling)} float32, {module: r}, bytes as stored)."""
    pairs: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, t in tensors.items():
        m = KEY.fullmatch(key)
        if m is None:
            raise AdapterError(f"{label}: unexpected tensor {key!r} {list(t.shape)}; only lora_A / lora_B weights "
                               "of linear layers are supported (no DoRA magnitudes, LoRA biases, modules_to_save "
                               "or embedding / lm_head adapters)")
        slot = pairs.setdefault(m["module"], {})
        if m["ab"] in slot:
            raise AdapterError(f"{label}: two lora_{m['ab']} tensors for {m['module']} ({slot[m['ab']][0]!r} and "
                               f"{key!r}); the file holds more than one adapter")
        slot[m["ab"]] = (key, t)
    if not pairs:
        raise AdapterError(f"{label}: no LoRA tensors (empty adapter)")

    r_default = config.get("r", R_DEFAULT)
    alpha_default = config.get("lora_alpha", ALPHA_DEFAULT)
    patterns = _Patterns(config_label, config)
    modules, ranks, nbytes = {}, {}, 0
    for module, slot in pairs.items():
        if module not in module_shapes:
            raise AdapterError(f"{label}: {_no_such_module(module, module_shapes)}")
        if len(slot) < 2:
            have, = slot
            miss = "B" if have == "A" else "A"
            raise AdapterError(f"{label}: {module} has lora_{have} but no lora_{miss}")
        a, b = slot["A"][1], slot["B"][1]
        _check_shapes(label, config_label, module, a, b, module_shapes[module],
                      patterns.value("rank_pattern", module, r_default))
        r = a.shape[0]
        alpha = float(patterns.value("alpha_pattern", module, alpha_default))
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r  # as PEFT's update_layer
        # one pass per tensor: a NaN/Inf in lora_B is still NaN/Inf once scaled (alpha is finite, checked above)
        a32 = _finite(label, f"{module}.lora_A", a.float())
        b32 = _finite(label, f"{module}.lora_B", b.float() * scaling, f" after the scaling {scaling:g}")
        modules[module] = (a32.contiguous(), b32.contiguous())
        ranks[module] = r
        nbytes += a.numel() * a.element_size() + b.numel() * b.element_size()
    return modules, ranks, nbytes


def _check_shapes(label, config_label, module, a, b, in_out, r_config):
    in_features, out_features = in_out
    for ab, t in (("A", a), ("B", b)):
        if not t.is_floating_point():
            raise AdapterError(f"{label}: {module}.lora_{ab} has dtype {t.dtype}; LoRA weights must be floating point")
        if t.dim() != 2:
            raise AdapterError(f"{label}: {module}.lora_{ab} has shape {list(t.shape)}; expected a matrix")
    if a.shape[0] == 0:
        raise AdapterError(f"{label}: {module}.lora_A has shape {list(a.shape)}: rank 0")
    if a.shape[1] != in_features:
        raise AdapterError(f"{label}: {module}.lora_A has shape {list(a.shape)} but the base layer takes "
                           f"{in_features} inputs")
    if b.shape[0] != out_features:
        raise AdapterError(f"{label}: {module}.lora_B has shape {list(b.shape)} but the base layer has "
                           f"{out_features} outputs")
    if b.shape[1] != a.shape[0]:
        raise AdapterError(f"{label}: {module}.lora_B has shape {list(b.shape)} but lora_A has shape "
                           f"{list(a.shape)}: their ranks differ")
    if a.shape[0] != r_config:
        raise AdapterError(f"{label}: {module}.lora_A has shape {list(a.shape)}, rank {a.shape[0]}, but "
                           f"{config_label} gives r={r_config} for this module")


def _finite(label, what, t, note=""):
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise AdapterError(f"{label}: {what} has {bad} NaN/Inf values{note} (shape {list(t.shape)})")
    return t


def _no_such_module(module, module_shapes):
    """Why `module` is not a target: a layer index beyond the model, or a kind of layer it lacks."""
    def generic(name):
        return re.sub(r"\.\d+\.", ".N.", name)
    same_kind = [n for n in module_shapes if generic(n) == generic(module)]
    if same_kind:
        return (f"targets {module}, which the model does not have (it has {len(same_kind)} such layers, "
                f"{same_kind[0]} ... {same_kind[-1]})")
    kinds = sorted({n.rsplit(".", 1)[-1] for n in module_shapes})
    return (f"targets {module}, which is not a linear layer of this model (its targetable layers are "
            f"{', '.join(kinds)}; embedding and lm_head adapters are not supported)")
