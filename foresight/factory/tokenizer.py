"""The default word-level tokenizer, built locally with `tokenizers` and wrapped
as a transformers fast tokenizer. Every word of the task vocabulary is one token;
a prompt is encoded as `<bos>` followed by its whitespace-separated words."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from foresight.tasks.vocab import vocabulary

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")


def build_tokenizer(words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` (default: the task vocabulary)."""
    tokens = list(SPECIAL_TOKENS) + [w for w in (words or vocabulary()) if w not in SPECIAL_TOKENS]
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", tokens.index("<bos>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )
