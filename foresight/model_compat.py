"""Does a model directory hold a causal LM whose embedding covers its tokenizer?

`check_model_tokenizer` runs before any command loads weights (`foresight.model_files.checked_graph`
calls it), so that a mismatch is one `error:` line, not an IndexError in the middle of a forward
pass or a masked LM silently scored as if it predicted the next token.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase


class ModelTokenizerError(ValueError):
    """A model directory whose model and tokenizer do not make a causal LM together."""


def check_causal(path: Path, config: PretrainedConfig) -> None:
    """ModelTokenizerError if `config` describes an encoder (a masked LM, as BERT's) rather than a
    causal LM: its `architectures` name no causal LM class of transformers, or it has none and its
    model_type is a masked LM's without `is_decoder`."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    named = getattr(config, "architectures", None) or []
    encoder = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.is_decoder
    if (named and not causal & set(named)) or (not named and encoder):
        what = ", ".join(named) or f"model_type {config.model_type!r} without is_decoder"
        raise ModelTokenizerError(
            f"model directory {path}: {what} is not a causal LM (an encoder cannot predict the next token)"
        )


def check_vocabulary(path: Path, config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """ModelTokenizerError if the tokenizer has ids beyond the model's embedding: len(tokenizer)
    (its vocabulary with added tokens) larger than the config's vocab_size."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    rows = getattr(text, "vocab_size", None)
    if rows is not None and len(tokenizer) > rows:
        raise ModelTokenizerError(
            f"model directory {path}: the embedding has {rows} rows, the tokenizer {len(tokenizer)} "
            f"tokens (ids {rows}..{len(tokenizer) - 1} have no embedding)"
        )


def check_model_tokenizer(path: Path, config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """`check_causal` and `check_vocabulary` of the model in directory `path`."""
    check_causal(path, config)
    check_vocabulary(path, config, tokenizer)
