"""MIB's CPR and CMD per tracked checkpoint (`TrackerSettings(mib=True)`).

For every tracked level (node, and edge when edges are tracked) the checkpoint's scores get
`foresight.attribution.mib.mib_frame` on the checkpoint's own pairs. The table is written to
`{trajectory}/mib/step-{step:08d}.json` in MLflow's table format (pandas "split" JSON, what
`mlflow.log_table` writes; `pandas.read_json(f, orient="split")` reads it) and logged as artifact
`mib/{task}/step-{step:08d}.json`. It is not listed in the run's `mlflow.loggedArtifacts` tag,
whose value MLflow caps at 8000 characters: a long run would outgrow it. CPR and CMD are
returned as step metrics `{task}/mib_cpr_{level}_{selection}` and `.../mib_cmd_...`. The table
is computed where the checkpoint is taken (`mib_table`) and written on the tracker's writer
thread (`write_mib_table`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from torch import nn

from foresight.attribution.faithfulness import CircuitEvaluator
from foresight.attribution.mib import mib_frame
from foresight.attribution.patching import PatchedRuns
from foresight.attribution.runner import eval_mode
from foresight.attribution.scores import Scores
from foresight.mlflow_log import SafeLogger


def mib_table(model: nn.Module, runs: PatchedRuns, levels: dict[str, pd.Series], method: str) -> pd.DataFrame:
    """The MIB table of one checkpoint (`levels`: level -> scores in graph order): CPR and CMD
    per level and selection (`foresight.attribution.mib.mib_frame`), on the checkpoint's runs."""
    graph = runs.runner.graph
    with eval_mode(model):
        evaluator = CircuitEvaluator(runs)
        frames = [
            mib_frame(evaluator, Scores(graph, level, method, "logit_diff", list(scores.index),
                                        scores.to_numpy(), runs.clean_value, runs.corrupted_value))
            for level, scores in levels.items()
            if len(scores)
        ]  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def mib_metrics(table: pd.DataFrame, task: str) -> dict[str, float]:
    """CPR and CMD of `table` as step metrics `{task}/mib_{cpr,cmd}_{level}_{selection}` (keys
    of `foresight.metric_names`)."""
    metrics = {}
    for (level, selection), rows in table.groupby(["level", "selection"], sort=False):
        metrics[f"{task}/mib_cpr_{level}_{selection}"] = float(rows.cpr.iloc[0])
        metrics[f"{task}/mib_cmd_{level}_{selection}"] = float(rows.cmd.iloc[0])
    return metrics


def write_mib_table(
    logger: SafeLogger | None, table: pd.DataFrame, trajectory: Path, task: str, step: int
) -> None:
    """Write `table` to `{trajectory}/mib/step-{step:08d}.json` and log it through `logger`."""
    name = f"step-{step:08d}.json"
    file = trajectory / "mib" / name
    file.parent.mkdir(parents=True, exist_ok=True)
    table.to_json(file, orient="split", index=False)
    if logger is not None:
        logger.log_artifact(file, f"mib/{task}")
