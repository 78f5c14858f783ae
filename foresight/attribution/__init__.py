"""Circuit attribution: node and edge scores (eap, eap-ig, exact patching: the registry
`methods.METHODS`) and the faithfulness of circuits. The graph is `foresight.graph`, circuits
are `foresight.circuits`, and where the nodes live on a Hugging Face model is
`foresight.architectures`.

The names below are imported on first use (`foresight.attribution.methods`, whose method names
the command line reads at start-up, does not pull in torch)."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "METRICS": "task_metrics", "Scores": "scores", "attribute": "api", "faithfulness": "faithfulness",
    "faithfulness_curve": "faithfulness", "minimal_circuit": "faithfulness",
}  # fmt: skip
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """`name` from its module of this package (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
