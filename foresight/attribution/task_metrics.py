"""Task metrics on the logits at each prompt's last position.

A metric maps (logits [B, V] at `last`, the pair batch, the clean run's logits
[B, V] at `last`) to one value per pair [B], computed in float32; the task
metric is its mean over the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from foresight.encoding import PairBatch

Metric = Callable[[torch.Tensor, PairBatch, torch.Tensor], torch.Tensor]


def accumulation(t: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """`t` in at least float32 precision (float64 stays float64), on `device` if given;
    `t` itself where nothing changes."""
    return t.to(device=device, dtype=torch.promote_types(t.dtype, torch.float32))


def _pick(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return values.gather(1, ids[:, None]).squeeze(1)


def logit_diff(logits: torch.Tensor, batch: PairBatch, clean: torch.Tensor) -> torch.Tensor:
    """logits[answer] - logits[wrong]."""
    logits = accumulation(logits)
    return _pick(logits, batch.answer) - _pick(logits, batch.wrong)


def prob_diff(logits: torch.Tensor, batch: PairBatch, clean: torch.Tensor) -> torch.Tensor:
    """p[answer] - p[wrong] under the softmax of the logits."""
    probs = accumulation(logits).softmax(-1)
    return _pick(probs, batch.answer) - _pick(probs, batch.wrong)


def kl_to_clean(logits: torch.Tensor, batch: PairBatch, clean: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || p): 0 on the clean run, where its gradient vanishes too, so
    first-order methods (eap) give all-zero scores with it; use eap-ig or patching."""
    log_p = accumulation(logits).log_softmax(-1)
    log_q = accumulation(clean).log_softmax(-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


METRICS: dict[str, Metric] = {"logit_diff": logit_diff, "prob_diff": prob_diff, "kl": kl_to_clean}


def get_metric(name: str) -> Metric:
    """The task metric called `name`; ValueError naming the known ones."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r} (known: {', '.join(METRICS)})")
    return METRICS[name]
