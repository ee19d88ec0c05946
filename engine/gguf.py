"""GGUF files (llama.cpp, Ollama, LM Studio, Jan, GPT4All): Llama, Mistral and Qwen2, re-quantized for the engine.

transformers' GGUF support reads the config and builds the tokenizer (chat template included) from the file's
metadata; the weights are streamed one tensor at a time (the `gguf` package dequantizes each, transformers
maps its name and undoes llama.cpp's q/k row order) into engine.model.assemble, which quantizes every
linear again to the engine's int8 or int4 as soon as it is complete. So the float weights are never held
whole: a few tensors at a time on the CPU, one fused weight at a time on the GPU.
"""
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .errors import ModelError
from .light import rope_table
from .model import assemble, resolve_dtype

ARCHITECTURES = {"llama": "Llama, Mistral", "qwen2": "Qwen2"}  # general.architecture -> families
FLOAT_TYPES = ("F32", "F16", "BF16")


def find_gguf(path: Path) -> Path | None:
    """The .gguf file `path` names or holds, or None for a Hugging Face folder (or a missing folder)."""
    if path.suffix.lower() == ".gguf" and not path.exists():
        raise ModelError(f"GGUF file not found: {path}")
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if not path.is_dir() or (path / "config.json").exists():
        return None
    files = sorted(path.glob("*.gguf"))
    if len(files) > 1:
        raise ModelError(f"{path} holds {len(files)} GGUF files ({', '.join(f.name for f in files)}): "
                         "choose one of them as the model")
    return files[0] if files else None


def load_gguf(file: Path, device: torch.device, dtype: str, quantize: str | None):
    """-> (Transformer, tokenizer, hf_config). quantize "auto": int4 for a 4-bit file, int8 for 5 to 8 bits,
    none for float weights."""
    reader = _reader(file)
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if quantize == "auto":
        counts = {}
        for t in reader.tensors:
            if len(t.shape) == 2 and t.name != "token_embd.weight":  # the linear weights
                counts[t.tensor_type] = counts.get(t.tensor_type, 0) + int(t.n_elements)
        main = max(counts, key=counts.get, default=GGMLQuantizationType.F32)  # the type most linear weights use
        block, size = GGML_QUANT_SIZES[main]
        bits = 8 * size / block
        quantize = None if main.name in FLOAT_TYPES else "int4" if bits <= 5 else "int8"
    from transformers import AutoConfig, AutoTokenizer

    try:
        cfg = AutoConfig.from_pretrained(file.parent, gguf_file=file.name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds; all mean metadata it cannot use
        raise ModelError(f"{file}: transformers could not read its config or tokenizer: {e}") from None
    for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        token_id = _field(reader, f"tokenizer.ggml.{key}_token_id")  # transformers 5.17 reads EOS as BOS, drops PAD
        if token_id is not None:
            setattr(tokenizer, f"{name}_token", tokenizer.convert_ids_to_tokens(int(token_id)))
    eos = {_field(reader, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom")} - {None}
    cfg.eos_token_id = sorted(int(e) for e in eos) or None  # llama.cpp ends a reply on any of them
    dev_dtype = resolve_dtype(dtype, device, cfg)
    model = assemble(cfg, device, dev_dtype, _tensors(reader, cfg, file), str(file), quantize)
    factors = next((t for t in reader.tensors if t.name == "rope_freqs.weight"), None)
    if factors is not None:  # Llama 3.1+ scaled RoPE: llama.cpp divides each frequency by the file's factor
        model.rope_table = rope_table(model.args.head_dim, cfg.rope_parameters["rope_theta"],
                                      torch.from_numpy(_dequantize(factors, file).copy()))
    return model, tokenizer, cfg


def _reader(file: Path):
    try:
        from gguf import GGMLQuantizationType, GGUFReader
    except ImportError:
        raise ModelError(f"{file}: reading GGUF files needs the gguf package (pip install gguf)") from None

    try:
        reader = GGUFReader(file)
    except Exception as e:  # noqa: BLE001 - the reader raises ValueError, IndexError, ... on a damaged file
        raise ModelError(f"{file} is not a readable GGUF file ({e}); a download that stopped early leaves a "
                         "truncated file") from None
    arch = _field(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise ModelError(f"{file}: GGUF architecture '{arch}' is not supported; supported: "
                         + ", ".join(f"{a} ({families})" for a, families in ARCHITECTURES.items()))
    if (_field(reader, "split.count") or 1) > 1:
        raise ModelError(f"{file} is one part of a split GGUF; merge the parts first "
                         "(llama.cpp: llama-gguf-split --merge FIRST-PART OUT.gguf)")
    for tensor_type in {t.tensor_type for t in reader.tensors} - {GGMLQuantizationType.F32}:
        probe = next(t for t in reader.tensors if t.tensor_type == tensor_type)
        _dequantize(probe, file, rows=1)  # a type the gguf package cannot read is refused before loading
    return reader


def _field(reader, key):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _dequantize(tensor, file: Path, rows: int | None = None) -> np.ndarray:
    from gguf import dequantize

    try:
        return dequantize(tensor.data if rows is None else tensor.data[:rows], tensor.tensor_type)
    except NotImplementedError:
        raise ModelError(f"{file}: tensor {tensor.name} is stored as {tensor.tensor_type.name}, which this version "
                         "of the gguf package cannot read") from None


def _tensors(reader, cfg, file: Path):
    """(Hugging Face name, float tensor) for every weight of the file, in file order. The gguf package
    dequantizes with numpy on one core (~0.3 s per 16M weights of Q4_K on the dev machine, minutes for an 8B
    file), so a few tensors are dequantized ahead on other cores while the engine quantizes the current one."""
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor, get_gguf_hf_weights_map

    arch = _field(reader, "general.architecture")
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(cfg)
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=cfg.to_dict())
    names = get_gguf_hf_weights_map(skeleton, processor, model_type=arch)   # GGUF name -> Hugging Face name

    def load(tensor):
        weights = processor.process(weights=_dequantize(tensor, file), name=tensor.name).weights
        return names[tensor.name], torch.from_numpy(np.require(weights, requirements=("C", "W")))  # off the file map

    ahead = min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(ahead) as pool:
        pending = deque()
        for tensor in (t for t in reader.tensors if t.name in names):
            pending.append(pool.submit(load, tensor))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
