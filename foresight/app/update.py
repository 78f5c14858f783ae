"""Command functions for `foresight finetune` and `foresight compare` (wired into typer in
foresight/app/cli.py); they run the updater, with every strategy registered (the forecasting
ones of `predictors.strategies` too), and print the results with rich."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich.console import Console

from foresight import distributed
from foresight.mlflow_ui import ui_url
from foresight.report import TERMINAL_TEST_COLUMNS
from foresight.tables import frame_table as _table
from foresight.updater.compare import compare
from foresight.updater.config import FinetuneConfig
from foresight.updater.finetune import finetune
from predictors.strategies import Predictive  # noqa: F401  (registers the forecasting strategies)

console = Console()


def finetune_command(task: str, config: FinetuneConfig, out_dir: Path) -> None:
    """Fine-tune with one strategy; print the step metrics and the summary (rank 0 of a
    distributed run alone prints)."""
    result = finetune(task, config, out_dir)
    if not distributed.is_main():
        return
    console.print(_table(result.metrics, f"{task} / {config.strategy}: step metrics"))
    summary = {k: v for k, v in result.summary().items() if k != "components"}
    console.print(_table(pd.DataFrame([summary]), "summary"))
    console.print(f"components: {', '.join(result.components)}")
    console.print(f"merged model saved to {out_dir / 'model'}")


def compare_command(
    task: str, strategies: Sequence[str], seeds: Sequence[int], config: FinetuneConfig, out_dir: Path
) -> None:
    """Compare strategies over seeds (MLflow experiment foresight-compare); print the tables."""
    result = compare(task, strategies, seeds, config, out_dir)
    console.print(
        _table(result.table, f"{task}: held-out accuracy (95% t-interval over seeds, within [0, 1])")
    )
    if len(result.tests):
        tests = result.tests[TERMINAL_TEST_COLUMNS]
        console.print(_table(tests, "paired tests over seeds (accuracy a - b; exact sign-flip p, Holm)"))
        if result.tests["n"].min() < 5:
            console.print(
                f"[yellow]n = {result.tests['n'].min()} seeds is small: the tests have little power"
            )
    console.print(f"MLflow parent run {result.run_id}; report {out_dir / 'comparison.md'}", soft_wrap=True)
    link = ui_url(result.experiment_id, result.run_id)
    console.print(f"in the MLflow UI: {link}", soft_wrap=True, highlight=False)
