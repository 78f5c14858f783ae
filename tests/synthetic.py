"""Synthetic trajectories with a learnable drift, for tests and demos.

Graph: embed, heads a{L}.h{H}, MLPs m{L}, logits (layer n_layers); optional edges of the
graph (`Graph.edge_labels`). In every run, components get random roles:
`stable` (|score| about 1.0-1.5 throughout), `rising` (linear from 0.1 at checkpoint 0 to 2.0 at
the last), `falling` (1.6 down to 0.1) and background (about 0.2). |score| carries multiplicative
noise; each component keeps one sign. grad_norm is larger for drifting components. The probe
scores are s0 + (s_last - s0) / K_TRUE + noise, so `anticipate` with K = K_TRUE sees the end.
The circuit at the end is stable + rising; at step 0 it is falling + stable: `static` misses the
risers, a trend-aware forecaster catches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from foresight import components
from foresight.graph import Graph
from predictors.problem import Trajectory, split_runs
from trackers.store import graph_column

K_TRUE = 20.0


def synthetic_trajectories(
    tasks: Sequence[str] = ("t0", "t1", "t2", "t3"),
    seeds: Sequence[int] = (0, 1, 2),
    n_layers: int = 4,
    n_heads: int = 4,
    n_checkpoints: int = 8,
    step_size: int = 25,
    roles: tuple[int, int, int] = (3, 3, 2),
    noise: float = 0.1,
    edges: bool = False,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """(trajectories in the columns of trackers.store.load_trajectories, run -> probe rows).

    `roles` = (#stable, #rising, #falling) components per run.
    """
    graph = Graph(n_layers, n_heads)
    names = graph.node_names()
    edge_pairs = graph.edge_labels() if edges else []
    t = np.arange(n_checkpoints) / (n_checkpoints - 1)
    frames, probes = [], {}
    for ti, task in enumerate(tasks):
        for s in seeds:
            rng = np.random.default_rng([seed, ti, s])
            run = f"{task}-s{s}"
            role = rng.permutation(len(names))
            n_stable, n_rising, n_falling = roles
            level = np.full((len(names), n_checkpoints), 0.2) * rng.lognormal(0, 0.3, (len(names), 1))
            stable, rising = role[:n_stable], role[n_stable : n_stable + n_rising]
            falling = role[n_stable + n_rising : n_stable + n_rising + n_falling]
            level[stable] = rng.uniform(1.0, 1.5, (n_stable, 1))
            level[rising] = 0.1 + 1.9 * t
            level[falling] = 1.6 - 1.5 * t
            magnitude = level * rng.lognormal(0, noise, level.shape)
            sign = rng.choice([-1.0, 1.0], (len(names), 1))
            node = sign * magnitude
            grad = np.abs(np.gradient(level, axis=1)) * 5 + rng.uniform(0.05, 0.15, level.shape)
            tables = [(names, node, grad, "node")]
            if edges:
                edge = np.stack([_edge_score(e, names, node, n_heads, rng, noise) for e in edge_pairs])
                tables.append((edge_pairs, edge, np.full(edge.shape, np.nan), "edge"))
            for c in range(n_checkpoints):
                frames.append(_table(run, task, s, c * step_size, tables, c, graph))
            probe_node = (
                node[:, :1] + (node[:, -1:] - node[:, :1]) / K_TRUE + rng.normal(0, 0.005, (len(names), 1))
            )
            probe_tables = [(names, probe_node, np.full(probe_node.shape, np.nan), "node")]
            probes[run] = _table(run, task, s, 0, probe_tables, 0, graph)
    return pd.concat(frames, ignore_index=True), probes


def _edge_score(
    edge: str, names: list[str], node: np.ndarray, n_heads: int, rng: np.random.Generator, noise: float
) -> np.ndarray:
    """|score| of an edge: geometric mean of its end points' |score| (a{L}: mean over the layer's heads)."""

    def value(name: str) -> np.ndarray:
        if name in names:
            return np.abs(node[names.index(name)])
        return np.mean([np.abs(node[names.index(f"{name}.h{h}")]) for h in range(n_heads)], axis=0)

    sender, receiver = components.edge_ends(edge)
    return np.sqrt(value(sender) * value(receiver)) * rng.lognormal(0, noise, node.shape[1])


def _table(run: str, task: str, seed: int, step: int, tables: list, c: int, graph: Graph) -> pd.DataFrame:
    rows = []
    for names, scores, grads, level in tables:
        for i, name in enumerate(names):
            layer, head = components.position(name, graph.n_layers)
            rows.append((level, name, components.kind(name), layer, head, scores[i, c], grads[i, c]))
    df = pd.DataFrame(rows, columns=["level", "component", "kind", "layer", "head", "score", "grad_norm"])
    df.insert(0, "step", step)
    for col, value in (
        ("strategy", "free"),
        ("model", "synthetic"),
        ("seed", seed),
        ("task", task),
        ("run", run),
    ):
        df.insert(0, col, value)
    df["method"] = "synthetic"
    df["lookahead"] = np.nan
    df["graph"] = graph_column(graph)
    df[["regime_mode", "regime_strategy", "regime_lr"]] = ("full", "free", 1e-3)
    df[["accuracy", "metric", "loss"]] = (c / 10, c / 10, 1.0 - c / 20)
    return df.astype({"step": "int64", "layer": "int64", "head": "int64"})


def synthetic_runs(**kwargs: object) -> list[Trajectory]:
    """`synthetic_trajectories(**kwargs)` as runs with their probes."""
    return split_runs(*synthetic_trajectories(**kwargs))


def write_corpus(
    trajectories: pd.DataFrame,
    probes: dict[str, pd.DataFrame],
    root: str | Path,
    n_layers: int = 4,
    n_heads: int = 4,
) -> Path:
    """Write the trajectories (and probes) as trackers.store trajectory directories under `root`."""
    from trackers.store import TrajectoryWriter

    root = Path(root)
    columns = ["level", "component", "kind", "layer", "head", "score", "grad_norm", "method"]
    for run, rows in trajectories.groupby("run"):
        first = rows.iloc[0]
        manifest = {
            "run_id": run,
            "graph": Graph(n_layers, n_heads).to_dict(),
            "model": first["model"],
            "task": first["task"],
            "seed": int(first["seed"]),
            "strategy": first["strategy"],
            "regime": {
                "mode": first["regime_mode"],
                "strategy": first["regime_strategy"],
                "lr": first["regime_lr"],
            },
        }
        writer = TrajectoryWriter(root / str(run), manifest)
        for step, table in rows.groupby("step"):
            scalars = table[["accuracy", "metric", "loss"]].iloc[0].to_dict()
            writer.write_checkpoint(int(step), table[columns], scalars)
        if run in probes:
            writer.write_probe(probes[run][columns], {})
    return root
