"""The `foresight` command line.

Every error a user can cause (bad input, unknown names, unreadable files)
is reported as one line on stderr with exit code 2; set FORESIGHT_DEBUG=1 to
see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="Track, forecast and steer the circuits of LLMs during fine-tuning.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

if TYPE_CHECKING:
    from foresight.graph import Graph
    from foresight.tasks import Task

USER_ERRORS = (ValueError, OSError, KeyError)


def _model_graph(model: str, attribution: bool = True) -> Graph:
    """The graph of `model`, read from its config.json before any weights are loaded.

    ModelLoadError if the directory, its config or its weights are missing, or its
    model_type is no causal LM that transformers knows (or, with `attribution`, one
    without an attribution adapter)."""
    import json

    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from foresight.adapters import BUILDERS
    from foresight.graph import Graph
    from foresight.models import ModelLoadError, resolve_model_path

    path = resolve_model_path(model)
    file = path / "config.json"
    try:
        model_type = json.loads(file.read_text()).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise ModelLoadError(f"{file}: unreadable model config ({e})") from None
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if architecture is None:
        raise ModelLoadError(f"{file}: model_type {model_type!r} is not a causal LM that transformers knows")
    if attribution and architecture not in BUILDERS:
        raise ModelLoadError(
            f"{file}: architecture {architecture} has no attribution adapter "
            f"(supported: {', '.join(BUILDERS)})"
        )
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    parallel = model_type == "gpt_neox" and bool(getattr(config, "use_parallel_residual", False))
    return Graph(config.num_hidden_layers, config.num_attention_heads, parallel)


def _check_k(option: str, k: int, model: str, graph: Graph, what: str = "heads and MLPs") -> None:
    """ValueError unless 1 <= k <= the number of heads and MLPs (or "nodes", "edges") of the graph."""
    counts = {"nodes": len(graph.node_names()), "edges": len(graph.edge_labels())}
    n = counts.get(what, graph.n_layers * (graph.n_heads + 1))
    if not 1 <= k <= n:
        raise ValueError(f"{option} {k}: must be in 1..{n} (the {what} of model {model!r})")


def _check_positive(**options: int | None) -> None:
    """Each option given (not None) is at least 1."""
    for name, value in options.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


def _check_mode(mode: str) -> None:
    from foresight.updater.finetune import DEFAULT_LR

    if mode not in DEFAULT_LR:
        raise ValueError(f"--mode {mode!r}: choose from {', '.join(DEFAULT_LR)}")


def _check_out_dir(option: str, path: Path) -> None:
    """Fail before any work if directory `path` can be neither created nor written."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{option} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path}: {existing} is not writable")


def _tasks(names: list[str], model: str) -> list[Task]:
    """The tasks by name or .jsonl path; JSONL tasks are checked against the model's
    tokenizer (token lengths, single-token answers; errors name file:line)."""
    from foresight.models import load_tokenizer
    from foresight.tasks import JsonlTask, get_task

    tasks = [get_task(name) for name in names]
    if any(isinstance(task, JsonlTask) for task in tasks):
        tokenizer = load_tokenizer(model)
        for task in tasks:
            if isinstance(task, JsonlTask):
                task.validate(tokenizer)
    return tasks


def _check_forecaster(forecaster: Path | None, strategies: list[str], model: str, graph: Graph) -> None:
    """A strategy that forecasts needs a forecaster of the model's graph: checked before training."""
    from foresight.updater.finetune import FORECASTING, STRATEGIES

    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    if forecaster is None:
        if any(s in FORECASTING for s in strategies):
            raise ValueError(f"strategies {', '.join(FORECASTING)} need --forecaster")
        return
    from predictors.persist import load_forecaster
    from predictors.problem import ForecasterMismatch

    trained_on = load_forecaster(forecaster).graph
    if set(trained_on.nodes) != set(graph.node_names()):
        raise ForecasterMismatch(
            f"--forecaster {forecaster}: trained on a graph of {trained_on.n_layers} layers x "
            f"{trained_on.n_heads} heads, model {model!r} has {graph.n_layers} x {graph.n_heads}"
        )


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
    from foresight.tasks import task_names

    _check_positive(n=n)
    _model_graph(model, attribution=False)
    names = task or task_names()
    specs = _tasks(names, model)
    lm, tokenizer = load_model(model)
    table = Table("task", "top-1 accuracy", "two-way accuracy")
    for name, spec in zip(names, specs, strict=True):
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

    _check_positive(steps=steps, batch_size=batch_size)
    _model_graph(model, attribution=False)
    _check_out_dir("--out", out)
    tasks = _tasks(task, model)
    lm, tokenizer = load_model(model)
    config = SFTConfig(steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    trainer = make_trainer(lm, tokenizer, tasks, config, out / "trainer")
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
    from foresight.mlflow_log import PENDING_FILE
    from foresight.sft import SFTConfig
    from trackers.run import track
    from trackers.tracker import TrackerSettings

    _check_positive(steps=steps, every=every, n_pairs=n_pairs, batch_size=batch_size)
    _check_k("--circuit-size", circuit_size, model, _model_graph(model))
    _check_out_dir("--out", out)
    _tasks(task, model)
    run_dir = out / (name or f"{'+'.join(Path(t).stem for t in task)}-s{seed}")
    sft = SFTConfig(steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    settings = TrackerSettings(
        every=every, method=method, circuit_size=circuit_size, n_pairs=n_pairs, seed=seed
    )
    result = track(task, run_dir, model, sft, settings, resume=resume)
    console.print(f"trajectories: {run_dir / 'trajectories'}")
    console.print(f"MLflow run {result.run_id} in {result.tracking_uri}")
    console.print(f"open the UI: mlflow ui --backend-store-uri {result.tracking_uri}")
    pending = run_dir / PENDING_FILE
    if pending.is_file():
        n = len(pending.read_text().splitlines())
        err_console.print(
            f"[yellow]{n} MLflow calls wait in {escape(str(pending))}: upload them with "
            f"`foresight sync {escape(str(run_dir))}`",
            highlight=False,
            soft_wrap=True,
        )


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

    _check_positive(n_pairs=n_pairs)
    _check_k("--top", top, model, _model_graph(model), "edges" if level == "edge" else "nodes")
    _tasks([task], model)
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
    hold_out: list[str] = typer.Option(None, help="a task whose runs are left out (to forecast it)"),
) -> None:
    """Train a forecaster on every trajectory under a root (but those of held-out tasks)."""
    from predictors.cli import train_command

    _check_out_dir("--out", out)
    name = "lgbm" if model == "lightgbm" else model
    train_command(trajectories, prefix, horizon, name, circuit_size, out, seed, hold_out or None)


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


def _check_update(
    task: str,
    strategies: list[str],
    model: str,
    components: int,
    mode: str,
    forecaster: Path | None,
    out: Path,
) -> None:
    """The checks `finetune` and `compare` share, in the order they fail: mode, model, K, the
    forecaster against the model's graph, the output directory, the task."""
    _check_mode(mode)
    graph = _model_graph(model)
    _check_k("--components", components, model, graph)
    _check_forecaster(forecaster, strategies, model, graph)
    _check_out_dir("--out", out)
    _tasks([task], model)


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
    lr: float = typer.Option(None, help="default: 5e-3 for lora, 1e-3 for full"),
    every: int = typer.Option(10, help="steps between re-selections and predictive checkpoints"),
    log_every: int = typer.Option(None, help="steps between logged metrics (default: --every)"),
    forecaster: Path = typer.Option(None),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/finetune")),
) -> None:
    """Fine-tune only the components a strategy selects."""
    from foresight.updater.cli import finetune_command as run

    _check_positive(steps=steps, every=every, log_every=log_every)
    _check_update(task, [strategy], model, components, mode, forecaster, out)
    run(
        task, strategy, out, model=model, components=components, mode=mode, steps=steps, lr=lr,
        seed=seed, forecaster=forecaster, every=every, log_every=log_every,
    )  # fmt: skip


@app.command("compare")
def compare_command(
    task: str = typer.Option(...),
    strategies: str = typer.Option("free,static,random"),
    seeds: int = typer.Option(3),
    model: str = typer.Option("default"),
    components: int = typer.Option(8),
    mode: str = typer.Option("lora", help="lora or full"),
    steps: int = typer.Option(100),
    lr: float = typer.Option(None, help="default: 5e-3 for lora, 1e-3 for full"),
    every: int = typer.Option(10, help="steps between re-selections and predictive checkpoints"),
    log_every: int = typer.Option(None, help="steps between logged metrics (default: --every)"),
    forecaster: Path = typer.Option(None),
    out: Path = typer.Option(Path("runs/compare")),
) -> None:
    """Compare strategies over seeds: MLflow parent and child runs and a printed table."""
    from foresight.updater.cli import compare_command as run

    names = [s.strip() for s in strategies.split(",") if s.strip()]
    if not names:
        raise ValueError(f"--strategies {strategies!r}: no strategy named")
    _check_positive(seeds=seeds, steps=steps, every=every, log_every=log_every)
    _check_update(task, names, model, components, mode, forecaster, out)
    run(
        task, names, list(range(seeds)), out, model=model, components=components, mode=mode,
        steps=steps, lr=lr, forecaster=forecaster, every=every, log_every=log_every,
    )  # fmt: skip


@app.command("sync")
def sync_command(run_dir: Path = typer.Argument(..., help="a run directory of foresight track")) -> None:
    """Upload MLflow calls that were queued while the tracking server was away.

    They go to MLFLOW_TRACKING_URI if set, else to the tracking URI the run recorded."""
    import json

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from foresight.mlflow_log import PENDING_FILE, check_reachable, resolve_tracking_uri, sync

    if not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir}: no such run directory")
    record_file, uri = run_dir / "run.json", os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and record_file.is_file():
        try:
            uri = json.loads(record_file.read_text()).get("tracking_uri")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"{record_file}: unreadable run record ({e})") from None
    uri = uri or resolve_tracking_uri()
    check_reachable(uri)
    store = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and not Path(store).is_file():
        raise FileNotFoundError(f"{store}: no MLflow store (set MLFLOW_TRACKING_URI to where the run logged)")
    try:
        uploaded = sync(run_dir, MlflowClient(uri))
    except MlflowException as e:
        raise ValueError(
            f"{run_dir}: sync to {uri} failed, what was not uploaded stays in {PENDING_FILE} ({e.message})"
        ) from e
    console.print(f"uploaded {uploaded} queued entries to {uri}")


@app.command("report")
def report_command(
    experiment: str = typer.Option(..., help="MLflow experiment, e.g. study-illusion or foresight-compare"),
    out: Path = typer.Option(None, help="also write the markdown table here"),
) -> None:
    """Rebuild a study's results table from its MLflow runs (MLFLOW_TRACKING_URI, else ./mlflow.db)."""
    import mlflow

    from foresight.mlflow_log import check_reachable, resolve_tracking_uri
    from foresight.report import report

    uri = resolve_tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    text = report(experiment)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    console.print(text, markup=False, highlight=False, soft_wrap=True)


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
    except (click.ClickException, typer.TyperException) as err:  # usage errors: bad options
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        ctx = getattr(err, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _error(f"{message}{hint}")
        sys.exit(getattr(err, "exit_code", 2))
    except USER_ERRORS as err:
        _error(f"missing key {err.args[0]!r}" if isinstance(err, KeyError) and err.args else str(err))
        sys.exit(2)


def _error(message: str) -> None:
    """`message` as one `error:` line on stderr (line breaks inside it become spaces; brackets
    in it are text, not rich markup)."""
    text = escape(" ".join(message.split()) or "unknown error")
    err_console.print(f"[red]error:[/red] {text}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
