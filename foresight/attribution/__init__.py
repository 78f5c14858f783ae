"""Circuit attribution: node and edge scores (eap, eap-ig, exact patching), circuits
and their faithfulness. See foresight/graph.py for the graph and foresight/adapters.py
for where its nodes live on a Hugging Face model."""

from foresight.adapters import UnsupportedArchitecture, get_adapter
from foresight.attribution.api import attribute
from foresight.attribution.faithfulness import (
    faithfulness,
    faithfulness_curve,
    minimal_circuit,
    rank,
    top_k,
)
from foresight.attribution.metrics import METRICS
from foresight.attribution.scores import Scores
from foresight.graph import Graph

__all__ = [
    "Graph",
    "METRICS",
    "Scores",
    "UnsupportedArchitecture",
    "attribute",
    "faithfulness",
    "faithfulness_curve",
    "get_adapter",
    "minimal_circuit",
    "rank",
    "top_k",
]
