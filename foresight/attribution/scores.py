"""`Scores`: attribution scores of every node or edge of a graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from foresight import components
from foresight.graph import Graph


@dataclass
class Scores:
    """Scores of `names` (graph nodes, or edges "sender->receiver") [len(names)], float32
    (float64 for a float64 model: the precision the scores were accumulated in).

    Sign convention: score(c) approximates (patching: equals) metric(clean run with c
    patched to its corrupted activation) - metric(clean run). `metric_value` and
    `corrupted_value` are the batch-mean metric on the clean and corrupted prompts.
    """

    graph: Graph
    level: str
    method: str
    metric: str
    names: list[str]
    values: np.ndarray
    metric_value: float
    corrupted_value: float

    def as_dict(self) -> dict[str, float]:
        """name -> score."""
        return dict(zip(self.names, self.values.tolist(), strict=True))

    def to_frame(self) -> pd.DataFrame:
        """Columns component, kind, layer (embed -1, logits n_layers, an edge its
        sender's), head (-1 unless a head or an edge from one), score."""
        positions = [components.position(n, self.graph.n_layers) for n in self.names]
        return pd.DataFrame(
            {
                "component": self.names,
                "kind": [components.kind(n) for n in self.names],
                "layer": np.array([p[0] for p in positions], dtype=np.int64),
                "head": np.array([p[1] for p in positions], dtype=np.int64),
                "score": np.asarray(self.values, dtype=np.float64),
            }
        )
