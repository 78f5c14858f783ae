"""PNG figures of tracked runs: the circuit metrics over checkpoints and the head-score
heatmap, logged as MLflow artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from foresight.metric_names import legend_label
from foresight.mlflow_log import SafeLogger

METRIC_FAMILIES = {"cd": "Circuit Distance", "cs": "Circuit Stability", "cc": "Circuit Conflict"}
# what each family's values mean, under its title
EXPLAINED = {
    "cd": "1 - Jaccard of the circuits: 0 = the same components, 1 = none shared",
    "cs": "faithfulness of the older circuit over the current one's: 1 = as good,\n"
    "above 1 = the older circuit explains the model better than the current top-k",
    "cc": "share of shared components whose task gradients point opposite ways",
}


def plot_metrics(metrics: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """One line figure per metric family present in `metrics` (a table with a `step` column
    and columns named cd_*, cs_*, cc_*): `circuit_distance.png` etc. in `out_dir`. The title
    says what the values mean; the legend sits below the axes, where it covers no line."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = metrics.sort_values("step")
    paths = []
    for prefix, title in METRIC_FAMILIES.items():
        columns = [c for c in metrics.columns if c.startswith(f"{prefix}_")]
        if not columns:
            continue
        fig = Figure(figsize=(6.5, 4.8))
        ax = fig.add_subplot()
        for column in columns:
            ax.plot(metrics["step"], metrics[column], marker="o", label=legend_label(column))
        if prefix == "cs":
            ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
        ax.set(xlabel="step", ylabel=title)
        ax.set_title(f"{title}\n{EXPLAINED[prefix]}", fontsize=9)
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
        fig.tight_layout()
        path = out_dir / f"{title.lower().replace(' ', '_')}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def head_score_matrix(trajectory: pd.DataFrame) -> pd.DataFrame:
    """Head scores of a trajectory table (`trackers.store.load_trajectory` columns) as a
    matrix: rows = heads ordered by (layer, head), columns = steps ascending."""
    heads = trajectory[(trajectory["level"] == "node") & (trajectory["kind"] == "head")]
    matrix = heads.pivot(index="component", columns="step", values="score")
    order = heads.drop_duplicates("component").sort_values(["layer", "head"])["component"]
    return matrix.loc[order.tolist()].sort_index(axis=1)


def plot_head_heatmap(head_scores: pd.DataFrame, path: str | Path) -> Path:
    """A heatmap of head scores over checkpoints (rows = heads, columns = steps), colours
    symmetric around 0."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = head_scores.to_numpy(dtype="float64")
    limit = float(np.nanmax(np.abs(values))) if values.size and np.isfinite(values).any() else 1.0
    fig = Figure(figsize=(max(4, 0.4 * values.shape[1] + 2), max(3, 0.22 * values.shape[0] + 1)))
    ax = fig.add_subplot()
    image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xticks(range(values.shape[1]), [str(s) for s in head_scores.columns], rotation=90, fontsize=6)
    ax.set_yticks(range(values.shape[0]), [str(h) for h in head_scores.index], fontsize=6)
    ax.set(xlabel="step", ylabel="head", title="Head scores over checkpoints")
    fig.colorbar(image, ax=ax, label="score")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def log_figures(
    logger: SafeLogger,
    metrics: pd.DataFrame,
    out_dir: str | Path,
    head_scores: pd.DataFrame | None = None,
    artifact_path: str = "figures",
) -> list[Path]:
    """Save the metric line figures (and the head-score heatmap, if given) as PNGs in
    `out_dir` and log them through `logger` as artifacts under `artifact_path`. Returns the
    PNG paths."""
    paths = plot_metrics(metrics, out_dir)
    if head_scores is not None:
        paths.append(plot_head_heatmap(head_scores, Path(out_dir) / "head_scores.png"))
    for path in paths:
        logger.log_artifact(path, artifact_path)
    return paths
