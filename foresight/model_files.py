"""Model-file integrity: a model directory's files can make the model its config describes.

Read before any weights are loaded: a tokenizer file, complete safetensors files (sizes as
their headers say), a complete pytorch_model.bin archive, and weights for every parameter of
the config's model (tied ones may be left out).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

from foresight.graph import Graph
from foresight.model_compat import check_model_tokenizer
from foresight.models import load_tokenizer, meta_skeleton, model_graph, resolve_model_path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


class ModelFileError(ValueError):
    """A model directory whose files cannot make the model its config describes."""


def _safetensors_keys(file: Path) -> set[str]:
    """The tensor names of a safetensors file; ModelFileError if its header is unreadable or
    the file is shorter or longer than the header says (a truncated download)."""
    try:
        with file.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n)) if n < file.stat().st_size else None
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{file}: unreadable safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{file}: unreadable safetensors header (truncated)")
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if file.stat().st_size != expected:
        raise ModelFileError(
            f"{file}: {file.stat().st_size} bytes, its header describes {expected} (truncated?)"
        )
    return {k for k in header if k != "__metadata__"}


def _weight_keys(path: Path) -> set[str] | None:
    """The parameter names stored in a model directory (None for pytorch_model.bin, whose
    names need unpickling; it is checked to be a complete zip archive)."""
    index = path / "model.safetensors.index.json"
    if (path / "model.safetensors").is_file():
        return _safetensors_keys(path / "model.safetensors")
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ModelFileError(f"{index}: unreadable weight index ({e})") from None
        keys: set[str] = set()
        for shard in shards:
            if not (path / shard).is_file():
                raise ModelFileError(f"{index}: names shard {shard}, which is missing")
            keys |= _safetensors_keys(path / shard)
        return keys
    if not zipfile.is_zipfile(path / "pytorch_model.bin"):
        raise ModelFileError(f"{path / 'pytorch_model.bin'}: not a complete torch archive (truncated?)")
    return None


def _check_weights_cover(path: Path, config: PretrainedConfig, stored: set[str]) -> None:
    """Every parameter of the model that `config` describes is stored (tied ones may be left out)."""
    skeleton = meta_skeleton(config)
    tied = getattr(skeleton, "_tied_weights_keys", None) or {}
    tied = tied if isinstance(tied, dict) else dict.fromkeys(tied)
    missing = sorted(
        key
        for key in skeleton.state_dict()
        if key not in stored and not (key in tied and (tied[key] is None or tied[key] in stored))
    )
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelFileError(f"model directory {path}: no weights for {shown} (config.json describes more)")


def checked_graph(model: str, attribution: bool = True) -> Graph:
    """The graph of `model`, read from its config.json (`foresight.models.model_graph`), after
    checking its files: a tokenizer, weights that are complete (safetensors sizes, a complete
    pytorch_model.bin) and that cover every parameter the config describes, a causal LM whose
    embedding covers its tokenizer (`foresight.model_compat`). No weights are loaded.

    ModelLoadError / ModelFileError if the directory, its config, tokenizer or weights are
    missing or broken, or its model_type is no causal LM that transformers knows (or, with
    `attribution`, one without an architecture in the registry)."""
    graph = model_graph(model, attribution)
    path = resolve_model_path(model)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelFileError(f"model directory {path}: no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    check_model_tokenizer(path, config, load_tokenizer(model))
    stored = _weight_keys(path)
    if stored is not None:
        _check_weights_cover(path, config, stored)
    return graph


def context_length(model: str) -> int | None:
    """The most positions the model takes (None if its config does not say)."""
    config = AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
