"""Per-component gradients of the task loss, for Circuit Conflict and as a
forecasting feature."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from foresight.architectures import base_model
from foresight.architectures.parameters import ComponentMap
from foresight.encoding import PairBatch
from foresight.next_token import next_token_logits


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
    an MLP: all its weights), flattened in row-major order of each parameter, the
    parameters in sorted name order: a 1-D tensor [n entries] in the weights' dtype,
    on the weights' device. Nothing is copied to the host (`gradient_norms` and
    `gradient_dots` bring the per-component reductions over in one transfer).
    The owned entries are kept as index vectors along one axis per parameter, built
    once. The model is left as found: parameter `.grad`, `requires_grad` and the
    training flag are unchanged (gradients come from `torch.autograd.grad`)."""

    def __init__(self, model: nn.Module):
        component_map = ComponentMap(model)
        self.owned: dict[str, dict[str, tuple[int, torch.Tensor]]] = {}
        for c in component_map.components:
            masks = sorted(component_map.owned_axis_masks(c).items())
            self.owned[c] = {key: (m.dim, m.keep.nonzero().squeeze(1)) for key, m in masks if m.keep.any()}
        self.keys = sorted({key for per_component in self.owned.values() for key in per_component})
        self._on: dict[torch.device, dict[str, dict[str, tuple[int, torch.Tensor]]]] = {}

    def _indices(self, device: torch.device) -> dict[str, dict[str, tuple[int, torch.Tensor]]]:
        """The owned index vectors on `device` (moved there once)."""
        if device not in self._on:
            self._on[device] = {
                c: {key: (dim, index.to(device)) for key, (dim, index) in per.items()}
                for c, per in self.owned.items()
            }
        return self._on[device]

    def __call__(self, model: nn.Module, batch: PairBatch) -> dict[str, torch.Tensor]:
        split = [key.rsplit(".", 1) for key in self.keys]
        base = base_model(model)
        tensors = [getattr(base.get_submodule(module), name) for module, name in split]
        batch = batch.to(tensors[0].device)
        with _weights_require_grad(tensors, model.training, model):
            logits = next_token_logits(model, batch.clean, batch.last)
            loss = nn.functional.cross_entropy(logits.float(), batch.answer)
            grads = dict(zip(self.keys, torch.autograd.grad(loss, tensors), strict=True))
        return {
            component: torch.cat(
                [
                    grads[key].index_select(dim, index).flatten()
                    for key, (dim, index) in self._indices(grads[next(iter(per))].device)[component].items()
                ]
            )
            for component, per in self.owned.items()
        }


def gradient_norms(grads: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Component -> L2 norm of its gradient, accumulated in float64 on the gradients' device
    and brought to the host in one transfer."""
    norms = [torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads.values()]
    return dict(zip(grads, torch.stack(norms).tolist() if norms else [], strict=True))


def gradient_dots(
    grads_a: Mapping[str, torch.Tensor], grads_b: Mapping[str, torch.Tensor], components: Iterable[str]
) -> dict[str, float]:
    """Component -> dot product g_A(c) . g_B(c) in float64, for each of `components`, in one
    transfer (ValueError for a component without a gradient in both, or of differing sizes)."""
    names = sorted(components)
    for name in names:
        if name not in grads_a or name not in grads_b:
            raise ValueError(f"component {name!r} has no gradient for both tasks")
        if grads_a[name].shape != grads_b[name].shape:
            raise ValueError(f"component {name!r}: gradient shapes differ")
    dots = [grads_a[n].double() @ grads_b[n].double() for n in names]
    return dict(zip(names, torch.stack(dots).tolist() if dots else [], strict=True))
