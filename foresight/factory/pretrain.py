"""Pretraining of the shipped default models on the synthetic corpus.

Two architectures share one recipe: a Llama (the default) and a GPT-2 twin.
Both are small enough to fine-tune and attribute in well under a second a
step on two CPU cores.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from foresight.encoding import pad_right
from foresight.factory.corpus import corpus_document

WIDTH, LAYERS, HEADS, MLP_WIDTH, CONTEXT = 128, 4, 8, 512, 64


def make_model(architecture: str, vocab_size: int, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A randomly initialised default-sized model ("llama" or "gpt2")."""
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if architecture == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=WIDTH, intermediate_size=MLP_WIDTH, num_hidden_layers=LAYERS,
            num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=CONTEXT,
            tie_word_embeddings=True, attn_implementation="eager", **ids,
        )  # fmt: skip
        return LlamaForCausalLM(config)
    if architecture == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS, n_inner=MLP_WIDTH,
            n_positions=CONTEXT, attn_implementation="eager", **ids,
        )  # fmt: skip
        return GPT2LMHeadModel(config)
    raise ValueError(f"unknown architecture {architecture!r} (llama, gpt2)")


def pretrain(
    architecture: str,
    tokenizer: PreTrainedTokenizerFast,
    steps: int = 3000,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> PreTrainedModel:
    """Train a fresh model on freshly drawn corpus documents (next-token loss on
    every real token; padding ignored), AdamW with warmup and cosine decay."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = make_model(architecture, len(tokenizer), tokenizer)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)),
    )
    progress = tqdm(range(steps), desc=f"pretrain {architecture}", unit="step")
    for _ in progress:
        rows = [
            tokenizer(corpus_document(rng, sentences=rng.randint(1, 3)))["input_ids"][:CONTEXT]
            for _ in range(batch_size)
        ]
        input_ids = pad_right(rows, tokenizer.pad_token_id)
        labels = input_ids.masked_fill(input_ids == tokenizer.pad_token_id, -100)
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model


def save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """Save `model` and `tokenizer` to `path` (safetensors)."""
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
