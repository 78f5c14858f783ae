"""Per-component gradients of the task loss, for Circuit Conflict and as a
forecasting feature."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from foresight.architectures import base_model
from foresight.architectures.parameters import ComponentMap
from foresight.encoding import PairBatch


@contextmanager
def _weights_require_grad(
    weights: list[torch.Tensor], was_training: bool, model: nn.Module
) -> Iterator[None]:
    flags = [w.requires_grad for w in weights]
    try:
        model.eval()
        for w in weights:
            w.requires_grad_(True)
        yield
    finally:
        for w, flag in zip(weights, flags, strict=True):
            w.requires_grad_(flag)
        model.train(was_training)


class ComponentGradients:
    """Per-component gradients of the task loss for one model architecture.

    Calling it with a model (the one it was built for, or a PEFT wrapping of it)
    and a pair batch gives, for every head `a{L}.h{H}` and MLP `m{L}`, the
    gradient of the task loss (mean cross-entropy of the right answer at each
    clean prompt's last token) with respect to the weight entries the component
    owns (a head: its rows of q/k/v and its columns of the output projection;
    an MLP: all its weights), flattened to a float64 vector. The masks are built
    once. The model is left as found: parameter `.grad`, `requires_grad` and the
    training flag are unchanged (gradients come from `torch.autograd.grad`)."""

    def __init__(self, model: nn.Module):
        component_map = ComponentMap(model)
        self.masks = {
            c: {key: mask for key, mask in component_map.parameter_masks([c]).items() if mask.any()}
            for c in component_map.components
        }
        self.keys = sorted({key for per_component in self.masks.values() for key in per_component})

    def __call__(self, model: nn.Module, batch: PairBatch) -> dict[str, np.ndarray]:
        split = [key.rsplit(".", 1) for key in self.keys]
        base = base_model(model)
        tensors = [getattr(base.get_submodule(module), name) for module, name in split]
        batch = batch.to(tensors[0].device)
        with _weights_require_grad(tensors, model.training, model):
            logits = model(input_ids=batch.clean).logits[torch.arange(len(batch)), batch.last]
            loss = nn.functional.cross_entropy(logits.float(), batch.answer)
            grads = dict(zip(self.keys, torch.autograd.grad(loss, tensors), strict=True))
        return {
            component: torch.cat(
                [grads[key][mask.to(grads[key].device)].flatten() for key, mask in per.items()]
            )
            .double()
            .cpu()
            .numpy()
            for component, per in self.masks.items()
        }
