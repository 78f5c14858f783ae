"""The `foresight` command line.

Every error a user can cause (bad input, unknown names, unreadable files)
is reported as one line on stderr with exit code 2; set FORESIGHT_DEBUG=1 to
see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Track, forecast and steer the circuits of LLMs during fine-tuning.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

USER_ERRORS = (ValueError, OSError, KeyError)


@app.command("tasks")
def tasks_command() -> None:
    """List the built-in tasks."""
    from foresight.tasks import get_task, task_names

    table = Table("task", "description", "example prompt", "answer")
    for name in task_names():
        task = get_task(name)
        example = task.eval_examples(1)[0]
        table.add_row(name, task.description, example.prompt, example.answer)
    console.print(table)


@app.command("evaluate")
def evaluate_command(
    model: str = typer.Option("default", help="'default', 'default-gpt2' or a model directory"),
    task: list[str] = typer.Option(None, help="task names or .jsonl files (default: all built-in)"),
    n: int = typer.Option(500, help="held-out examples per task"),
    seed: int = typer.Option(0),
) -> None:
    """Top-1 and two-way accuracy of a model on held-out task examples."""
    from foresight.evaluation import accuracy, choice_accuracy
    from foresight.models import load_model
    from foresight.tasks import get_task, task_names

    lm, tokenizer = load_model(model)
    table = Table("task", "top-1 accuracy", "two-way accuracy")
    for name in task or task_names():
        spec = get_task(name)
        top1 = accuracy(lm, tokenizer, spec.eval_examples(n, seed))
        two_way = choice_accuracy(lm, tokenizer, spec.attribution_pairs(n, seed))
        table.add_row(name, f"{top1:.3f}", f"{two_way:.3f}")
    console.print(table)


@app.command("sft")
def sft_command(
    task: list[str] = typer.Option(..., help="task names or .jsonl files"),
    model: str = typer.Option("default"),
    out: Path = typer.Option(..., help="directory for the fine-tuned model"),
    steps: int = typer.Option(200),
    lr: float = typer.Option(1e-3),
    batch_size: int = typer.Option(32),
    seed: int = typer.Option(0),
) -> None:
    """Plain SFT (no tracking) of a model on tasks; saves the fine-tuned model."""
    from foresight.models import load_model
    from foresight.sft import SFTConfig, make_trainer
    from foresight.tasks import get_task

    lm, tokenizer = load_model(model)
    config = SFTConfig(steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    trainer = make_trainer(lm, tokenizer, [get_task(t) for t in task], config, out / "trainer")
    trainer.train()
    lm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    console.print(f"fine-tuned model saved to {out}")


@app.command("track")
def track_command(
    task: list[str] = typer.Option(..., help="tasks to train on and track (names or .jsonl files)"),
    model: str = typer.Option("default", help="'default', 'default-gpt2' or a model directory"),
    steps: int = typer.Option(200, help="SFT steps"),
    every: int = typer.Option(10, help="take a checkpoint every K steps (and at step 0)"),
    out: Path = typer.Option(Path("runs"), help="parent directory of the run directory"),
    name: str = typer.Option(None, help="run directory name (default: TASKS-sSEED)"),
    method: str = typer.Option("eap", help="eap, eap-ig or patching"),
    circuit_size: int = typer.Option(10, help="k: the circuit is the top-k heads and MLPs"),
    n_pairs: int = typer.Option(64, help="attribution pairs (fixed for the whole run)"),
    lr: float = typer.Option(1e-3),
    batch_size: int = typer.Option(32),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(False, help="continue an interrupted run in the same directory"),
) -> None:
    """SFT with circuit tracking: trajectories on disk, metrics and figures in MLflow."""
    from foresight.sft import SFTConfig
    from trackers.run import track
    from trackers.tracker import TrackerSettings

    if steps < 1 or every < 1:
        raise ValueError(f"--steps and --every must be at least 1 (got {steps}, {every})")
    run_dir = out / (name or f"{'+'.join(Path(t).stem for t in task)}-s{seed}")
    sft = SFTConfig(steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    settings = TrackerSettings(
        every=every, method=method, circuit_size=circuit_size, n_pairs=n_pairs, seed=seed
    )
    result = track(task, run_dir, model, sft, settings, resume=resume)
    console.print(f"trajectories: {run_dir / 'trajectories'}")
    console.print(f"MLflow run {result.run_id} in {result.tracking_uri}")
    console.print(f"open the UI: mlflow ui --backend-store-uri {result.tracking_uri}")


@app.command("attribute")
def attribute_command(
    task: str = typer.Option(..., help="task name or .jsonl file"),
    model: str = typer.Option("default"),
    method: str = typer.Option("eap", help="eap, eap-ig or patching"),
    level: str = typer.Option("node", help="node or edge"),
    top: int = typer.Option(10, help="components to print"),
    n_pairs: int = typer.Option(64),
    seed: int = typer.Option(0),
) -> None:
    """Attribute a task: the top components and the faithfulness curve."""
    from foresight.attribution.cli import attribute_command as run

    run(model, task, method, level, top, n_pairs, seed)


forecast = typer.Typer(help="Train, evaluate and apply circuit forecasters.", no_args_is_help=True)
app.add_typer(forecast, name="forecast")


@forecast.command("train")
def forecast_train(
    trajectories: Path = typer.Option(..., help="root directory of trajectories"),
    prefix: int = typer.Option(3, help="k: the forecaster sees checkpoints 0..k"),
    horizon: str = typer.Option("final", help="checkpoints ahead, or 'final'"),
    model: str = typer.Option("lightgbm", help="lightgbm (lgbm), lgbm-ranker or gnn"),
    circuit_size: int = typer.Option(10),
    out: Path = typer.Option(..., help="directory for the forecaster"),
    seed: int = typer.Option(0),
) -> None:
    """Train a forecaster on every trajectory under a root."""
    from predictors.cli import train_command

    train_command(
        trajectories, prefix, horizon, "lgbm" if model == "lightgbm" else model, circuit_size, out, seed
    )


@forecast.command("eval")
def forecast_eval(
    trajectories: Path = typer.Option(...),
    prefix: int = typer.Option(3),
    horizon: str = typer.Option("final"),
    circuit_size: int = typer.Option(10),
    model: list[str] = typer.Option(None, help="forecasters and baselines (default: all)"),
    seed: int = typer.Option(0),
) -> None:
    """Leave-one-task-out comparison of forecasters and baselines."""
    from predictors.cli import eval_command

    eval_command(trajectories, prefix, horizon, circuit_size, model or None, seed)


@forecast.command("predict")
def forecast_predict(forecaster: Path = typer.Option(...), trajectory: Path = typer.Option(...)) -> None:
    """The circuit a forecaster predicts for a (partial) trajectory."""
    from predictors.cli import predict_command

    predict_command(forecaster, trajectory)


@app.command("finetune")
def finetune_command(
    task: str = typer.Option(...),
    strategy: str = typer.Option(
        ..., help="free, static, random, predictive, oracle, dynamic, predictive-dynamic"
    ),
    model: str = typer.Option("default"),
    components: int = typer.Option(8, help="K: heads and MLPs to update (not free)"),
    mode: str = typer.Option("lora", help="lora or full"),
    steps: int = typer.Option(100),
    forecaster: Path = typer.Option(None),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/finetune")),
) -> None:
    """Fine-tune only the components a strategy selects."""
    from foresight.updater.cli import finetune_command as run

    run(task, strategy, model, components, mode, steps, seed=seed, forecaster=forecaster, out_dir=out)


@app.command("compare")
def compare_command(
    task: str = typer.Option(...),
    strategies: str = typer.Option("free,static,random"),
    seeds: int = typer.Option(3),
    model: str = typer.Option("default"),
    components: int = typer.Option(8),
    steps: int = typer.Option(100),
    forecaster: Path = typer.Option(None),
    out: Path = typer.Option(Path("runs/compare")),
) -> None:
    """Compare strategies over seeds: MLflow parent and child runs and a printed table."""
    from foresight.updater.cli import compare_command as run

    names = [s.strip() for s in strategies.split(",") if s.strip()]
    run(task, names, list(range(seeds)), model, components, steps=steps, forecaster=forecaster, out_dir=out)


@app.command("sync")
def sync_command(run_dir: Path = typer.Argument(..., help="a run directory of foresight track")) -> None:
    """Upload MLflow calls that were queued while the tracking server was away."""
    from foresight.tracking_log import sync

    console.print(f"uploaded {sync(run_dir)} queued entries")


def main() -> None:
    """Entry point: runs the app, turning user errors into one line and exit 2."""
    if os.environ.get("FORESIGHT_DEBUG"):
        app()
        return
    try:
        app(standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except USER_ERRORS as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
