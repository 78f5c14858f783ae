"""The look-ahead derivative of eap node scores against central finite differences (float64 GPT-2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attribution import build, make_batch

from foresight.attribution import attribute
from foresight.attribution.lookahead import node_score_derivative


@pytest.mark.parametrize("moved", ["every parameter", "layer 1 only"])
def test_node_score_derivative_matches_a_finite_difference(moved: str) -> None:
    model, batch = build("gpt2"), make_batch()
    g = torch.Generator().manual_seed(3)
    direction = {
        n: torch.randn(p.shape, generator=g, dtype=p.dtype)
        for n, p in model.named_parameters()
        if moved == "every parameter" or ".h.1." in n
    }
    exact = node_score_derivative(model, batch, direction)
    h, base = 1e-5, {n: p.detach().clone() for n, p in model.named_parameters()}

    def scores_at(e: float) -> np.ndarray:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(base[n] + e * direction[n] if n in direction else base[n])
        return attribute(model, batch, method="eap", level="node").values

    finite = (scores_at(h) - scores_at(-h)) / (2 * h)
    assert np.abs(finite).max() > 1e-2  # the direction moves the scores
    np.testing.assert_allclose(exact, finite, rtol=1e-5, atol=1e-7 * np.abs(finite).max())
    if moved == "layer 1 only":
        assert exact[:6].any()  # layer-0 heads' scores move through the gradient from layer 1
