"""Load a local Hugging Face model folder into engine.transformer.Transformer, refusing bad folders precisely."""
import importlib
import json
import math
import re
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open

from .errors import ModelError
from .light import DTYPES, light_config, light_tokenizer, plain_rope_theta, rope_table
from .quant import BITS, KINDS, QuantizedLinear, quantized_linear
from .transformer import FUSED, LINEAR_KINDS, ModelArgs, Transformer

# model_type -> class-name prefix in transformers.models.<type>.modeling_<type>
SUPPORTED = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
# config.json fields the engine sizes tensors from -> the largest value accepted (far beyond any released model)
LIMITS = {"vocab_size": 1 << 22, "hidden_size": 1 << 16, "num_hidden_layers": 1024, "num_attention_heads": 1024,
          "num_key_value_heads": 1024, "head_dim": 4096, "intermediate_size": 1 << 20,
          "max_position_embeddings": 1 << 24}
OPTIONAL = ("num_key_value_heads", "head_dim")  # None: derived from the others


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device '{device}' was asked for but this PyTorch sees no CUDA GPU")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device '{device}': use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelError(f"device '{device}' does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type not in ("cpu", "cuda"):
        raise ModelError(f"device '{device}' is not supported: use auto, cpu, cuda or cuda:N")
    return dev


def resolve_dtype(dtype: str, device: torch.device, cfg) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cpu":
            return torch.float32  # bf16 matmuls are slow on most CPUs
        saved = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
        return saved if saved in (torch.bfloat16, torch.float16) else torch.bfloat16
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ModelError(f"unknown dtype '{dtype}': use auto, bfloat16, float16 or float32") from None


def read_config(model_dir: Path):
    if not model_dir.exists():
        raise ModelError(f"model folder not found: {model_dir}")
    if not model_dir.is_dir():
        raise ModelError(f"not a folder: {model_dir} (pick the folder that holds config.json, or a .gguf file)")
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir} has no config.json: is this a Hugging Face model folder?")
    try:
        raw = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise ModelError(f"{model_dir / 'config.json'} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{model_dir / 'config.json'}: expected a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type")
    for field in ("rope_parameters", "rope_scaling"):
        if raw.get(field) is not None and not isinstance(raw[field], dict):
            raise ModelError(f"{model_dir / 'config.json'}: {field} must be an object, got {raw[field]!r}")
    if model_type not in SUPPORTED:
        raise ModelError(f"unsupported architecture '{model_type}' in {model_dir / 'config.json'}; "
                         f"supported: {', '.join(SUPPORTED)}")
    cfg = light_config(raw)
    if cfg is None:
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - transformers raises many kinds; all mean a bad config
            raise ModelError(f"{model_dir / 'config.json'} could not be read: {e}") from None
    check_config(cfg, model_dir / "config.json")
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if not isinstance(rope, dict):
        raise ModelError(f"{model_dir / 'config.json'}: rope_parameters must be an object, got {rope!r}")
    if rope.get("rope_type", rope.get("type", "default")) in ("dynamic", "longrope"):
        raise ModelError(f"{model_dir}: rope type '{rope.get('rope_type')}' changes with length; not supported")
    return cfg


def check_config(cfg, where):
    """The types and bounds of the fields the engine sizes tensors from, before anything is allocated."""
    for field, most in LIMITS.items():
        value = getattr(cfg, field, None)
        if value is None and field in OPTIONAL:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ModelError(f"{where}: {field} must be an integer from 1 to {most}, got {value!r}")
    eps = getattr(cfg, "rms_norm_eps", None)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ModelError(f"{where}: rms_norm_eps must be a number between 0 and 1, got {eps!r}")
    heads, kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    if heads % kv:
        raise ModelError(f"{where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    if getattr(cfg, "head_dim", None) is None and cfg.hidden_size % heads:
        raise ModelError(f"{where}: hidden_size {cfg.hidden_size} is not a multiple of num_attention_heads {heads}")
    window = getattr(cfg, "sliding_window", None)
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ModelError(f"{where}: sliding_window must be a positive integer or null, got {window!r}")


def check_weights(args: ModelArgs, files: list[Path], where):
    """The safetensors headers (read without loading any tensor) against config.json: the layers and the
    embedding it describes must be the ones the files hold, before a model is allocated from it."""
    shapes = {}
    for f in files:
        if f.suffix == ".safetensors":
            try:
                with safe_open(f, framework="pt") as st:
                    shapes.update({key: st.get_slice(key).get_shape() for key in st.keys()})
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
                raise ModelError(f"{f} is not a readable safetensors file: {e}") from None
    layers = {int(m[1]) for key in shapes if (m := re.match(r"model\.layers\.(\d+)\.", key))}
    if layers and layers != set(range(args.n_layers)):
        raise ModelError(f"{where}: config.json has num_hidden_layers={args.n_layers} but the weights hold "
                         f"{len(layers)} layers ({min(layers)} to {max(layers)})")
    embed = shapes.get("model.embed_tokens.weight")
    if embed is not None and list(embed) != [args.vocab_size, args.dim]:
        raise ModelError(f"{where}: config.json's vocab_size and hidden_size give model.embed_tokens.weight "
                         f"[{args.vocab_size}, {args.dim}] but the weights hold {list(embed)}")


def weights_size(args: ModelArgs, dtype: torch.dtype, quantize: str | None = None) -> tuple[int, int]:
    """(parameters, bytes) of the weights: the layers' linears and lm_head in `dtype` or quantized (a quantized
    lm_head is a copy even when tied), the embedding and the norms in `dtype`."""
    linear = sum(i * o for i, o in map(args.linear_shape, LINEAR_KINDS)) * args.n_layers
    head = 0 if args.tie_word_embeddings and not quantize else args.vocab_size * args.dim
    rest = args.vocab_size * args.dim + 2 * args.dim * args.n_layers
    bits = BITS[quantize] if quantize else torch.finfo(dtype).bits
    return linear + head + rest, int((linear + head) * bits + rest * torch.finfo(dtype).bits) // 8


def check_memory(args: ModelArgs, devices: list[torch.device], dtype: torch.dtype, where, quantize=None):
    """Refuse a model that cannot fit in the free memory of its devices, before allocating it."""
    params, need = weights_size(args, dtype, quantize)
    free = sum(free_bytes(d) or math.inf for d in set(devices))
    if need > free:
        raise ModelError(f"{where}: config.json describes {params:,} parameters ({need / 2**30:.1f} GiB in "
                         f"{quantize or dtype}) but only {free / 2**30:.1f} GiB is free on "
                         f"{', '.join(sorted(map(str, set(devices))))}")


def free_bytes(device: torch.device) -> int | None:
    """Free memory of a device (None when it cannot be told)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil
        return psutil.virtual_memory().available
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def weight_files(model_dir: Path, allow_pickle: bool) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not pickles:
        raise ModelError(f"{model_dir} holds no weights (*.safetensors)")
    if not allow_pickle:
        raise ModelError(f"{model_dir} has weights only in pickle form ({', '.join(p.name for p in pickles)}); "
                         "pickle files can run code when loaded, so they are refused. Convert them to "
                         "safetensors, or allow pickle explicitly (--allow-pickle) if you trust the source.")
    return pickles


def iter_tensors(files: list[Path]):
    for f in files:
        if f.suffix == ".safetensors":
            try:
                with safe_open(f, framework="pt") as st:
                    for key in st.keys():
                        yield key, st.get_tensor(key)
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
                raise ModelError(f"{f} is not a readable safetensors file: {e}") from None
        else:  # explicitly allowed pickle: still never execute code from it
            try:  # torch.save's zip format is mapped, not read; the legacy format cannot be
                state = torch.load(f, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(f))
            except Exception as e:  # noqa: BLE001 - the unpickler's errors are open-ended on bad input
                raise ModelError(f"{f}: cannot load it with torch.load(weights_only=True) ({e})") from None
            if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                      for k, v in state.items()):
                raise ModelError(f"{f}: expected a dict of named tensors, got {type(state).__name__}")
            yield from state.items()


def layer_devices(args: ModelArgs, device: torch.device, dtype: torch.dtype, quantize: str | None = None
                  ) -> list[torch.device]:
    """One device per layer: all on `device`, or spread evenly over every GPU when one is too small."""
    n_gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if n_gpus < 2 or device.index is not None:
        return [device] * args.n_layers
    if weights_size(args, dtype, quantize)[1] < 0.85 * torch.cuda.mem_get_info(0)[0]:
        return [torch.device("cuda", 0)] * args.n_layers
    per_gpu = -(-args.n_layers // n_gpus)
    return [torch.device("cuda", i // per_gpu) for i in range(args.n_layers)]


def device_runs(devices: list[torch.device]) -> list[tuple[int, int]]:
    """[(first layer, end)] of the consecutive layers that share a device."""
    runs, start = [], 0
    for i in range(1, len(devices) + 1):
        if i == len(devices) or devices[i] != devices[start]:
            runs.append((start, i))
            start = i
    return runs


def build(args: ModelArgs, devices: list[torch.device], dtype: torch.dtype, rope_table, quantize: str | None = None
          ) -> Transformer:
    """Allocate the model. Each fused linear is one stacked tensor per device run whose slices are the
    layers' weights; model.kind_stacks[kind] lists the row slices [n, out, in] holding each HF kind.
    Quantized (`quantize` "int8" | "int4"): every linear, lm_head included, is an engine.quant module instead,
    and the kind stacks are zero-stride stand-ins that give the adapter bank shapes, dtype and device only."""
    with torch.device("meta"):
        model = Transformer(args, rope_table)
    model.quantize = quantize
    model.kind_stacks.update({kind: [] for kind in LINEAR_KINDS})
    for fused, (parent, _) in FUSED.items():
        d_in, d_out = args.fused_shape(fused)
        for start, stop in device_runs(devices):
            if quantize:
                stack = torch.empty((), dtype=dtype, device=devices[start]).expand(stop - start, d_out, d_in)
            else:
                stack = torch.empty(stop - start, d_out, d_in, dtype=dtype, device=devices[start])
            for i in range(start, stop):
                module = getattr(model.model.layers[i], parent)
                if quantize:
                    setattr(module, fused, quantized_linear(quantize, d_in, d_out, getattr(module, fused).bias is not None,
                                                            dtype, devices[i]))
                else:
                    getattr(module, fused).weight = torch.nn.Parameter(stack[i - start], requires_grad=False)
            for kind, row, n in args.parts(fused):
                model.kind_stacks[kind].append((start, stack[:, row:row + n]))
    if quantize:
        model.lm_head = quantized_linear(quantize, args.dim, args.vocab_size, False, dtype, devices[-1])
    for name, p in list(model.named_parameters()):
        if p.is_meta:
            dev = devices[int(name.split(".")[2])] if name.startswith("model.layers.") else (
                devices[-1] if name.startswith(("lm_head", "model.norm")) else devices[0])
            module_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(module_name), attr,
                    torch.nn.Parameter(torch.empty(p.shape, dtype=dtype, device=dev), requires_grad=False))
    return model


def hf_targets(model: Transformer) -> dict[str, torch.Tensor]:
    """Hugging Face parameter name -> the tensor, or row slice of a fused one, that holds it."""
    targets = {}
    for name, p in model.named_parameters():
        module_name, _, attr = name.rpartition(".")
        prefix, _, fused = module_name.removesuffix(".base_layer").rpartition(".")  # also under the bank's LoRALinear
        if fused not in FUSED:
            targets[name] = p
            continue
        for kind, row, n in model.args.parts(fused):
            targets[f"{prefix}.{kind}.{attr}"] = p[row:row + n]
    return targets


def quantized_targets(model: Transformer) -> dict[str, tuple[QuantizedLinear, int, int]]:
    """Hugging Face weight name -> (the quantized module, first row, rows) it becomes part of."""
    targets = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            prefix, _, fused = name.rpartition(".")
            parts = model.args.parts(fused) if fused in FUSED else [(fused, 0, module.out_features)]
            targets.update({f"{prefix}.{kind}.weight".lstrip("."): (module, row, n) for kind, row, n in parts})
    return targets


def load_model(model_dir, device: str = "auto", dtype: str = "auto", allow_pickle: bool = False,
               quantize: str | None = "auto"):
    """-> (Transformer, tokenizer, hf_config). `model_dir`: a Hugging Face folder, or a .gguf file (or a folder
    holding one). `quantize`: None | "int8" | "int4" | "auto" (a GGUF file's own precision, else none).
    Raises ModelError with a specific message on a bad folder or file."""
    model_dir = Path(model_dir).expanduser()
    quantize = resolve_quantize(quantize)
    from .gguf import find_gguf, load_gguf

    gguf_file = find_gguf(model_dir)
    if gguf_file is not None:
        return load_gguf(gguf_file, resolve_device(device), dtype, quantize)
    cfg = read_config(model_dir)
    files = weight_files(model_dir, allow_pickle)
    tokenizer = light_tokenizer(model_dir)
    if tokenizer is None:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"the tokenizer in {model_dir} failed to load: {e}") from None
    dev = resolve_device(device)
    check_weights(ModelArgs.from_hf(cfg), files, model_dir)
    model = assemble(cfg, dev, resolve_dtype(dtype, dev, cfg), iter_tensors(files), str(model_dir),
                     None if quantize == "auto" else quantize)
    return model, tokenizer, cfg


def resolve_quantize(quantize: str | None) -> str | None:
    if quantize in (None, "none"):
        return None
    if quantize not in (*KINDS, "auto"):
        raise ModelError(f"unknown quantization '{quantize}': use none, int8, int4 or auto")
    return quantize


def assemble(cfg, device: torch.device, dtype: torch.dtype, tensors, where: str, quantize: str | None = None
             ) -> Transformer:
    """Build the Transformer for `cfg` and fill it from (name, tensor) pairs in Hugging Face naming; quantized
    linears quantize each fused weight as soon as all its parts have arrived."""
    args = ModelArgs.from_hf(cfg)
    devices = layer_devices(args, device, dtype, quantize)
    check_memory(args, devices, dtype, where, quantize)
    model = build(args, devices, dtype, make_rope_table(cfg), quantize)
    params = hf_targets(model)
    staged = quantized_targets(model)
    filled = set()
    with torch.no_grad():
        for key, tensor in tensors:
            if key not in params and key not in staged:
                continue
            module, row, n = staged.get(key, (None, 0, 0))
            shape = tuple(params[key].shape) if module is None else (n, module.in_features)
            if not tensor.is_floating_point():
                raise ModelError(f"{where}: weight {key} has dtype {tensor.dtype}; expected floating point")
            if tuple(tensor.shape) != shape:
                raise ModelError(f"{where}: weight {key} has shape {list(tensor.shape)}, config.json implies "
                                 f"{list(shape)}")
            if module is None:
                params[key].copy_(tensor)
            else:
                module.load_rows(row, tensor)
            filled.add(key)
    if args.tie_word_embeddings or "lm_head.weight" not in filled:
        emb = model.model.embed_tokens.weight
        if quantize:
            model.lm_head.load_rows(0, emb)  # a quantized copy: the lookup keeps the float rows
        elif emb.device == model.lm_head.weight.device:
            model.lm_head.weight = emb  # tied: one tensor, not two
        else:
            with torch.no_grad():
                model.lm_head.weight.copy_(emb)
        filled.add("lm_head.weight")
    missing = sorted((set(params) | set(staged)) - filled)
    if missing:
        raise ModelError(f"{where}: the weights lack {len(missing)} tensors the config needs, e.g. {missing[0]}")
    return model.eval()


def make_rope_table(cfg):
    """-> fn(n) giving (n, 2, head_dim) cos/sin in float32: plain RoPE computed here as transformers does,
    scaled variants by the transformers class itself, for exact parity."""
    theta = plain_rope_theta(getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None),
                             getattr(cfg, "rope_theta", None))
    if theta is not None:
        return rope_table(ModelArgs.from_hf(cfg).head_dim, theta)
    prefix = SUPPORTED[cfg.model_type]
    module = importlib.import_module(f"transformers.models.{cfg.model_type}.modeling_{cfg.model_type}")
    rotary = getattr(module, f"{prefix}RotaryEmbedding")(config=cfg)

    def table(n: int) -> torch.Tensor:
        pos = torch.arange(n)[None]
        cos, sin = rotary(torch.empty(0, dtype=torch.float32), pos)
        return torch.stack([cos[0], sin[0]], dim=1)

    return table
