"""MIB's CPR and CMD per tracked checkpoint (`TrackerSettings(mib=True)`).

For every tracked level (node, and edge when edges are tracked) the checkpoint's scores get
`foresight.attribution.mib.mib_frame` on the checkpoint's own pairs. The table is written to
`{trajectory}/mib/step-{step:08d}.json` in MLflow's table format (pandas "split" JSON, what
`mlflow.log_table` writes; `pandas.read_json(f, orient="split")` reads it) and logged as artifact
`mib/{task}/step-{step:08d}.json`. It is not listed in the run's `mlflow.loggedArtifacts` tag,
whose value MLflow caps at 8000 characters: a long run would outgrow it. CPR and CMD are
returned as step metrics `{task}/mib_cpr_{level}_{selection}` and `.../mib_cmd_...`.
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


class MibLog:
    """Computes, writes and logs the MIB table of each checkpoint of one tracked run."""

    def checkpoint(
        self,
        logger: SafeLogger | None,
        model: nn.Module,
        runs: PatchedRuns,
        levels: dict[str, pd.Series],
        method: str,
        trajectory: Path,
        task: str,
        step: int,
    ) -> dict[str, float]:
        """The table of one checkpoint (`levels`: level -> scores in graph order), written and
        logged through `logger` (if any); returns its CPR and CMD as step metrics."""
        with eval_mode(model):
            evaluator = CircuitEvaluator(runs)
            frames = [
                mib_frame(evaluator, self._scores(runs, level, scores, method))
                for level, scores in levels.items()
                if len(scores)
            ]
        table = pd.concat(frames, ignore_index=True)
        name = f"step-{step:08d}.json"
        file = trajectory / "mib" / name
        file.parent.mkdir(parents=True, exist_ok=True)
        table.to_json(file, orient="split", index=False)
        if logger is not None:
            logger.log_artifact(file, f"mib/{task}")
        metrics = {}
        for (level, selection), rows in table.groupby(["level", "selection"], sort=False):
            metrics[f"{task}/mib_cpr_{level}_{selection}"] = float(rows.cpr.iloc[0])
            metrics[f"{task}/mib_cmd_{level}_{selection}"] = float(rows.cmd.iloc[0])
        return metrics

    @staticmethod
    def _scores(runs: PatchedRuns, level: str, scores: pd.Series, method: str) -> Scores:
        """Tracked scores (names -> score, graph order) as attribution `Scores` of the runs."""
        graph, values = runs.runner.graph, scores.to_numpy()
        return Scores(graph, level, method, "logit_diff", list(scores.index), values, runs.clean_value,
                      runs.corrupted_value)  # fmt: skip
