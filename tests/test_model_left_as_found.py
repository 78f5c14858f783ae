"""Training with attribution interleaved gives bit-identical weights to training without it."""

from __future__ import annotations

from pathlib import Path

import torch

from foresight.attribution import attribute, faithfulness
from foresight.encoding import encode_pairs
from foresight.gradients import ComponentGradients
from foresight.models import load_model
from foresight.sft import AnswerCollator, ExampleDataset
from foresight.tasks import get_task


def _train(model_dir: Path, interleave: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model, tokenizer = load_model(model_dir)
    model.train()
    task = get_task("ioi")
    data = ExampleDataset(tokenizer, [task], n_per_task=24, seed=0)
    pairs = encode_pairs(tokenizer, task.attribution_pairs(8))
    gradients = ComponentGradients(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    collate = AnswerCollator(tokenizer.pad_token_id)
    for step in range(3):
        batch = collate([data[i] for i in range(step * 8, step * 8 + 8)])
        model(**batch).loss.backward()
        if interleave:  # between backward and step: .grad must survive untouched
            for method in ("eap", "eap-ig"):
                attribute(model, pairs, method=method, level="edge")
            faithfulness(model, pairs, {"a0.h1", "m1"})
            gradients(model, pairs)
        optimizer.step()
        optimizer.zero_grad()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_interleaved_attribution_leaves_training_bit_identical(tiny_model_dir: Path) -> None:
    plain, interleaved = _train(tiny_model_dir, False), _train(tiny_model_dir, True)
    assert plain.keys() == interleaved.keys()
    for key in plain:
        assert torch.equal(plain[key], interleaved[key]), key
