"""GNN forecaster (torch_geometric, full batch): node membership probabilities per graph.

One graph per (run, k): nodes = the node-level components (sorted by name) with
`features.FEATURES` (standardised with training means/stds; NaN -> 0); edges = the run's edges
sender->receiver (receiver a{L}: every head of layer L) with features
[|score| at k, at 0, their difference] (normalised per checkpoint) when the training runs carry
edge scores, else the edges of the run's `Graph` (`node_edges`, parallel residual included) with
the single feature 1.0. Every edge is also
added reversed; a last edge feature marks the direction (1 forward, 0 reversed).
Model: linear encoder, `n_layers` residual GATv2Conv(edge_dim) layers, a linear head on
[encoder output, last layer]; BCE-with-logits with pos_weight = #neg / #pos; Adam, fixed epochs.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GATv2Conv

from foresight import components
from foresight.circuits import circuit
from foresight.graph import Graph
from predictors.base import Forecaster
from predictors.dataset import sample_features, training_prefixes
from predictors.features import FEATURES
from predictors.problem import (
    ForecasterMismatch,
    ForecastProblem,
    Observation,
    Trajectory,
    level_scores,
    observe,
    target_scores,
    valid_prefixes,
)

MODEL_FILE = "model.pt"


def _node_receivers(receiver: str, heads_by_layer: dict[int, list[str]], n_layers: int) -> list[str]:
    """The nodes a graph receiver stands for: attention input a{L} -> every head of layer L."""
    if receiver == "logits" or components.is_member_kind(receiver):  # m{L}: the MLP itself
        return [receiver]
    return heads_by_layer[components.position(receiver, n_layers)[0]]


def _heads_by_layer(graph: Graph) -> dict[int, list[str]]:
    return {
        layer: [components.head(layer, h) for h in range(graph.n_heads)] for layer in range(graph.n_layers)
    }


def node_edges(graph: Graph) -> list[tuple[str, str]]:
    """The graph's edges between nodes: sender -> receiver, an attention input a{L} standing
    for every head of layer L (so a parallel-residual graph has no head -> same-layer MLP edge)."""
    heads_by_layer = _heads_by_layer(graph)
    return [
        (s, r)
        for s, receiver in graph.edge_pairs()
        for r in _node_receivers(receiver, heads_by_layer, graph.n_layers)
    ]


def _edges(
    obs: Observation, nodes: list[str], graph: Graph, edge_scores: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(2 x E) node indices and (E x d) edge features, forward edges then reversed ones."""
    index = {c: i for i, c in enumerate(nodes)}
    heads_by_layer = _heads_by_layer(graph)
    if edge_scores:
        scores = level_scores(obs.history, "edge")
        if scores.empty:
            raise ForecasterMismatch(
                f"run {obs.run}: the GNN was trained with edge scores, this run has none"
            )
        a = scores.abs().to_numpy()
        a = a / np.where(a.max(axis=1, keepdims=True) > 0, a.max(axis=1, keepdims=True), 1.0)
        pairs, attrs = [], []
        for j, edge in enumerate(scores.columns):
            sender, receiver = components.edge_ends(edge)
            for r in _node_receivers(receiver, heads_by_layer, graph.n_layers):
                pairs.append((index[sender], index[r]))
                attrs.append([a[obs.k, j], a[0, j], a[obs.k, j] - a[0, j]])
    else:
        pairs = [(index[s], index[r]) for s, r in node_edges(graph)]
        attrs = [[1.0]] * len(pairs)
    ei = np.array(pairs, dtype=np.int64).T.reshape(2, -1)
    ea = np.array(attrs, dtype=np.float32).reshape(len(pairs), -1)
    ea = np.vstack([np.hstack([ea, np.ones((len(ea), 1))]), np.hstack([ea, np.zeros((len(ea), 1))])])
    return np.hstack([ei, ei[::-1]]), ea.astype(np.float32)


class _Net(nn.Module):
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, n_layers: int, heads: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.convs = nn.ModuleList(
            GATv2Conv(hidden, hidden, heads=heads, concat=False, edge_dim=edge_dim) for _ in range(n_layers)
        )
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        h0 = h = self.encode(x)
        for conv in self.convs:
            h = h + torch.relu(conv(h, edge_index, edge_attr))
        return self.head(torch.cat([h0, h], dim=-1)).squeeze(-1)


class GNNForecaster(Forecaster):
    """Node membership probabilities from a GATv2 network over the run's graph (module docstring)."""

    name = "gnn"

    def __init__(
        self,
        problem: ForecastProblem,
        seed: int = 0,
        hidden: int = 32,
        n_layers: int = 2,
        heads: int = 1,
        epochs: int = 100,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
    ) -> None:
        if problem.level != "node":
            raise ValueError("the GNN forecaster predicts node membership only (problem.level 'node')")
        super().__init__(problem, seed)
        self.hparams = {
            "hidden": hidden,
            "n_layers": n_layers,
            "heads": heads,
            "epochs": epochs,
            "lr": lr,
            "weight_decay": weight_decay,
        }
        self.edge_scores = False
        self.mean = self.std = np.zeros(len(FEATURES))
        self.net: _Net | None = None

    @property
    def levels_needed(self) -> tuple[str, ...]:
        """Nodes, and edges when trained with edge scores."""
        return ("node", "edge") if self.edge_scores else ("node",)

    @property
    def needs_lookahead(self) -> bool:
        return True

    def _graph(
        self, obs: Observation, f: pd.DataFrame, y: np.ndarray | None = None, standardise: bool = True
    ) -> Data:
        """The PyG graph of `obs` with node features `f` (`features`) and labels `y`."""
        x = f.to_numpy()
        if standardise:
            x = np.nan_to_num((x - self.mean) / self.std)
        ei, ea = _edges(obs, list(f.index), self.graph, self.edge_scores)
        data = Data(
            x=torch.tensor(x, dtype=torch.float32),
            edge_index=torch.from_numpy(np.ascontiguousarray(ei)),
            edge_attr=torch.from_numpy(ea),
        )
        if y is not None:
            data.y = torch.tensor(y, dtype=torch.float32)
        data.components = list(f.index)
        return data

    def _build_net(self) -> _Net:
        h = self.hparams
        edge_dim = 4 if self.edge_scores else 2
        return _Net(len(FEATURES), edge_dim, h["hidden"], h["n_layers"], h["heads"])

    def _fit(self, runs: Sequence[Trajectory]) -> None:
        self.edge_scores = all((r.rows["level"] == "edge").any() for r in runs)
        graphs = []
        for run in runs:
            for k in valid_prefixes(run, self.problem, training_prefixes(self.problem)):
                obs = observe(run, self.problem, k)
                nodes = level_scores(obs.history, "node").columns
                true = circuit(target_scores(run, self.problem, k), self.problem.circuit_size)
                f = sample_features(run, self.problem, k, self.priors)
                graphs.append(self._graph(obs, f, nodes.isin(list(true)).astype(float), standardise=False))
        if not graphs:
            raise ValueError("gnn: no training run has a target checkpoint for the prefixes")
        x = torch.cat([g.x for g in graphs]).numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features (no probe, no grad_norm)
            mean, std = np.nan_to_num(np.nanmean(x, axis=0)), np.nan_to_num(np.nanstd(x, axis=0))
        self.mean, self.std = mean, np.where(std > 1e-8, std, 1.0)
        for g in graphs:
            g.x = torch.nan_to_num(
                (g.x - torch.tensor(self.mean, dtype=torch.float32))
                / torch.tensor(self.std, dtype=torch.float32)
            )
        batch = Batch.from_data_list(graphs)
        torch.manual_seed(self.seed)
        self.net = self._build_net()
        pos = batch.y.sum().clamp(min=1.0)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=(len(batch.y) - pos) / pos)
        opt = torch.optim.Adam(
            self.net.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        self.net.train()
        for _ in range(self.hparams["epochs"]):
            opt.zero_grad()
            loss = loss_fn(self.net(batch.x, batch.edge_index, batch.edge_attr), batch.y)
            loss.backward()
            opt.step()
        self.net.eval()

    def _predict(self, obs: Observation) -> pd.Series:
        if self.net is None:
            raise RuntimeError("gnn: predict before fit")
        g = self._graph(obs, self.features(obs))
        with torch.no_grad():
            p = torch.sigmoid(self.net(g.x, g.edge_index, g.edge_attr)).numpy()
        return pd.Series(p.astype(np.float64), index=g.components)

    def state(self) -> dict[str, Any]:
        return {
            "hparams": self.hparams,
            "edge_scores": self.edge_scores,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "feature_names": list(FEATURES),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.hparams, self.edge_scores = state["hparams"], state["edge_scores"]
        self.mean, self.std = np.array(state["mean"]), np.array(state["std"])

    def save_model(self, directory: Path) -> None:
        torch.save(self.net.state_dict(), directory / MODEL_FILE)

    def load_model(self, directory: Path) -> None:
        self.net = self._build_net()
        file = directory / MODEL_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{file}: missing (the forecaster's network weights)")
        try:
            state = torch.load(file, weights_only=True)
            self.net.load_state_dict(state)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
            raise ValueError(
                f"{file}: unreadable network weights ({' '.join(str(e).split())[:200]})"
            ) from None
        self.net.eval()
