"""Loading models and tokenizers from disk: the shipped defaults or any local
Hugging Face causal-LM directory, in a chosen dtype and placement. Nothing is ever
fetched from a hub.

Placement (`--device`): `cpu`, `cuda` or `cuda:N`, or `auto`: the GPU when there is one
(under torchrun / accelerate launch, the rank's own GPU, `cuda:$LOCAL_RANK`), spread over
all GPUs with accelerate's `device_map="auto"` when the weights do not fit in the first
GPU's free memory, else the CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from foresight.architectures import UnsupportedArchitecture, graph_of
from foresight.config import DEVICE_HELP, DTYPE_NAMES
from foresight.graph import Graph
from foresight.jsonfile import read_json_object

ASSETS = Path(__file__).parent / "assets"
SHIPPED = {"default": ASSETS / "default-llama", "default-gpt2": ASSETS / "default-gpt2"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_NAMES}


class ModelLoadError(ValueError):
    """A model reference that does not name a loadable local model."""


def resolve_model_path(name_or_path: str | Path) -> Path:
    """The directory of a shipped model name (`default`, `default-gpt2`) or a local path."""
    path = SHIPPED.get(str(name_or_path), Path(name_or_path))
    if not path.is_dir():
        raise ModelLoadError(f"model {str(name_or_path)!r}: no such directory (names: {', '.join(SHIPPED)})")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model directory {path}: no config.json")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise ModelLoadError(f"model directory {path}: no weights ({' or '.join(WEIGHT_FILES[:2])})")
    return path


def model_graph(name_or_path: str | Path, attribution: bool = True) -> Graph:
    """The graph of a model, read from its config.json before any weights are loaded.

    ModelLoadError if the directory, its config or its weights are missing, or its model_type
    is no causal LM that transformers knows (or, with `attribution`, one without an architecture
    in the registry)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = resolve_model_path(name_or_path)
    file = path / "config.json"
    model_type = read_json_object(file, "model config", ModelLoadError).get("model_type")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(f"{file}: model_type {model_type!r} is not a causal LM that transformers knows")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if not attribution:
        return Graph(config.num_hidden_layers, config.num_attention_heads)
    try:
        return graph_of(config)
    except UnsupportedArchitecture as e:
        raise ModelLoadError(f"{file}: {e}") from None


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable, else physical memory)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The torch dtype of a name in `DTYPES` (or a torch dtype, returned as it is)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_device(device: str, name: str = "device") -> None:
    """ValueError (naming `name`) unless `device` is auto, cpu, cuda or cuda:N with that GPU present."""
    if device in ("auto", "cpu"):
        return
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"{name} {device!r}: choose from {DEVICE_HELP}")
    if not torch.cuda.is_available():
        raise ValueError(f"{name} {device!r}: no CUDA GPU on this machine")
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"{name} {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")


def meta_skeleton(config: PretrainedConfig) -> PreTrainedModel:
    """The causal LM that `config` describes, on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def weight_bytes(path: Path, dtype: torch.dtype) -> int:
    """Bytes of the model's parameters in `dtype`, counted on the meta device (no weights read)."""
    from transformers import AutoConfig

    skeleton = meta_skeleton(AutoConfig.from_pretrained(path, local_files_only=True))
    return sum(p.numel() for p in skeleton.parameters()) * dtype.itemsize


def placement(device: str, path: Path, dtype: torch.dtype) -> str | dict[str, object]:
    """The `device_map` for `from_pretrained` of `--device` (see the module docstring)."""
    check_device(device)
    if device != "auto":
        return device
    if not torch.cuda.is_available():
        return "cpu"
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    if "LOCAL_RANK" not in os.environ and torch.cuda.device_count() > 1:
        free, _ = torch.cuda.mem_get_info(0)
        if weight_bytes(path, dtype) > free:
            return "auto"
    return f"cuda:{rank}"


GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(name_or_path: str | Path = "default") -> PreTrainedTokenizerBase:
    """The tokenizer of a model (pad token = eos when it has none). A directory whose
    tokenizer_config.json names the generic `tokenizers` backend gets exactly its tokenizer.json
    (AutoTokenizer would pick the model family's own class, e.g. Qwen2's, and re-tokenize)."""
    path = resolve_model_path(name_or_path)
    try:
        declared = json.loads((path / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        declared = None
    loader = PreTrainedTokenizerFast if declared in GENERIC_TOKENIZERS else AutoTokenizer
    tokenizer = loader.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str | Path = "default",
    dtype: str | torch.dtype = "float32",
    device: str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer offline in `dtype` (a `DTYPES` name) on `device`
    (see the module docstring), with eager attention (so that attention weights exist and
    every head's output can be hooked)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.disable_progress_bar()
    path = resolve_model_path(name_or_path)
    dtype = torch_dtype(dtype)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        dtype=dtype,
        attn_implementation="eager",
        local_files_only=True,
        device_map=placement(device, path, dtype),
    )
    return model, load_tokenizer(path)
