"""Command functions for `foresight finetune` and `foresight compare` (wired into typer in
foresight/cli.py); they run the updater and print the results with rich."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from foresight.updater.compare import compare
from foresight.updater.finetune import finetune

console = Console()


def _table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(*map(str, frame.columns), title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    return table


def finetune_command(
    task: str,
    strategy: str,
    model: str = "default",
    components: int = 8,
    mode: str = "lora",
    steps: int = 100,
    lr: float | None = None,
    batch_size: int = 32,
    rank: int = 8,
    seed: int = 0,
    forecaster: Path | None = None,
    warmup_checkpoints: int | None = None,
    every: int = 10,
    log_every: int | None = None,
    out_dir: Path = Path("runs/finetune"),
) -> None:
    """Fine-tune with one strategy; print the step metrics and the summary."""
    result = finetune(
        task, strategy, model=model, components=components, mode=mode, steps=steps, lr=lr,  # type: ignore[arg-type]
        batch_size=batch_size, rank=rank, seed=seed, forecaster=forecaster,
        warmup_checkpoints=warmup_checkpoints, every=every, log_every=log_every, out_dir=out_dir,
    )  # fmt: skip
    console.print(_table(result.metrics, f"{task} / {strategy}: step metrics"))
    summary = {k: v for k, v in result.summary().items() if k != "components"}
    console.print(_table(pd.DataFrame([summary]), "summary"))
    console.print(f"components: {', '.join(result.components)}")
    console.print(f"merged model saved to {Path(out_dir) / 'model'}")


def compare_command(
    task: str,
    strategies: Sequence[str],
    seeds: Sequence[int],
    model: str = "default",
    components: int = 8,
    mode: str = "lora",
    steps: int = 100,
    lr: float | None = None,
    batch_size: int = 32,
    rank: int = 8,
    forecaster: Path | None = None,
    warmup_checkpoints: int | None = None,
    every: int = 10,
    log_every: int | None = None,
    out_dir: Path = Path("runs/compare"),
) -> None:
    """Compare strategies over seeds (MLflow experiment foresight-compare); print the tables."""
    result = compare(
        task, strategies, seeds, out_dir, model=model, components=components, mode=mode, steps=steps, lr=lr,
        batch_size=batch_size, rank=rank, forecaster=forecaster, warmup_checkpoints=warmup_checkpoints,
        every=every, log_every=log_every,
    )  # fmt: skip
    console.print(_table(result.table, f"{task}: held-out accuracy (95% t-interval over seeds)"))
    if len(result.tests):
        console.print(_table(result.tests, "paired t-tests over seeds (accuracy a - b)"))
        if result.tests["n"].min() < 5:
            console.print(
                f"[yellow]n = {result.tests['n'].min()} seeds is small: the tests have little power"
            )
    console.print(f"MLflow parent run {result.run_id}; report {Path(out_dir) / 'comparison.md'}")
