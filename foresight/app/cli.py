"""The `foresight` command line.

Every error a user can cause (bad input, unknown names, unreadable files)
is reported as one line on stderr with exit code 2; set FORESIGHT_DEBUG=1 to
see the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.markup import escape

from foresight import size_bounds
from foresight.app import validation as check
from foresight.app.options import config_options, option
from foresight.config import DEVICE_HELP, DTYPE_HELP, ConfigError, SFTConfig, help_of
from foresight.output_dirs import claim_output
from foresight.updater.config import FinetuneConfig
from predictors.settings import ForecastProblem
from trackers.settings import TrackerSettings

app = typer.Typer(
    help="Track, forecast and steer the circuits of LLMs during fine-tuning.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

USER_ERRORS = (ValueError, OSError, KeyError)
INTERRUPTED = 130  # the exit code of a command stopped by Ctrl-C (SIGINT)
# unless the environment sets them: retries and timeout (s) of MLflow's HTTP client, and
# MLflow's log level (its INFO lines, e.g. on creating a store, are not for the terminal)
MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}

# fields of the settings records that are no command-line options (yet)
SFT_HIDDEN = ("weight_decay", "warmup_steps", "examples_per_task", "lora_targets")
SFT_ONLY_FULL = ("mode", "lora_rank")  # `foresight sft` trains every weight
TRACKER_HIDDEN = ("steps", "levels", "n_eval", "ig_steps", "seed", "lookahead", "evaluate")
FINETUNE_HIDDEN = ("rank", "n_pairs", "n_eval", "save_model")

Dtype = Annotated[str, typer.Option(help=DTYPE_HELP)]
Device = Annotated[str, typer.Option(help=DEVICE_HELP)]


@app.command("tasks")
def tasks_command() -> None:
    """List the built-in tasks."""
    import pandas as pd

    from foresight.tables import frame_table
    from foresight.tasks import get_task, task_names

    rows = []
    for name in task_names():
        task = get_task(name)
        example = task.eval_examples(1)[0]
        rows.append((name, task.description, example.prompt, example.answer))
    console.print(
        frame_table(pd.DataFrame(rows, columns=["task", "description", "example prompt", "answer"]))
    )


@app.command("evaluate")
def evaluate_command(
    model: str = typer.Option("default", help="'default', 'default-gpt2' or a model directory"),
    task: list[str] = typer.Option(None, help="task names or .jsonl files (default: all built-in)"),
    n: int = typer.Option(500, help="held-out examples per task"),
    seed: int = typer.Option(0),
    dtype: Dtype = "float32",
    device: Device = "auto",
) -> None:
    """Top-1 and two-way accuracy of a model on held-out task examples."""
    import pandas as pd

    from foresight.evaluation import accuracy, choice_accuracy
    from foresight.models import load_model
    from foresight.tables import frame_table
    from foresight.tasks import task_names

    check.check_positive(n=n)
    check.check_seed(seed)
    check.check_placement(dtype, device)
    check.checked_graph(model, attribution=False)
    names = task or task_names()
    specs = check.check_tasks(names, model)
    size_bounds.check_eval_n(n, model, specs)
    lm, tokenizer = load_model(model, dtype, device)
    rows = []
    for name, spec in zip(names, specs, strict=True):
        top1 = accuracy(lm, tokenizer, spec.eval_examples(n, seed))
        two_way = choice_accuracy(lm, tokenizer, spec.attribution_pairs(n, seed))
        rows.append((name, top1, two_way))
    console.print(frame_table(pd.DataFrame(rows, columns=["task", "top-1 accuracy", "two-way accuracy"])))


@app.command("sft")
@config_options(SFTConfig, skip=(*SFT_HIDDEN, *SFT_ONLY_FULL))
def sft_command(
    task: list[str] = typer.Option(..., help="task names or .jsonl files"),
    model: str = typer.Option("default"),
    out: Path = typer.Option(..., help="directory for the fine-tuned model"),
    settings: dict | None = None,
) -> None:
    """Plain SFT (no tracking) of a model on tasks; saves the fine-tuned model."""
    from foresight import distributed
    from foresight.models import load_model
    from foresight.sft import make_trainer

    config = SFTConfig(**settings)
    check.check_placement(config.dtype, config.device, mode="full")
    check.checked_graph(model, attribution=False)
    check.check_out_dir("--out", out)
    tasks = check.check_tasks(task, model)
    shape = size_bounds.task_batch_shape(model, tasks, config.examples_per_task)
    size_bounds.check_batch_size(config.batch_size, model, *shape)
    distributed.start(config.device)
    lm, tokenizer = load_model(model, config.dtype, config.device)
    trainer = make_trainer(lm, tokenizer, tasks, config, out / "trainer")
    trainer.train()
    trainer.save_model(str(out))  # from rank 0 only under torchrun
    if distributed.is_main():
        tokenizer.save_pretrained(out)
        console.print(f"fine-tuned model saved to {out}")


@app.command("track")
@config_options(SFTConfig, skip=SFT_HIDDEN, into="sft_settings")
@config_options(TrackerSettings, skip=TRACKER_HIDDEN, into="tracker_settings")
def track_command(
    task: list[str] = typer.Option(
        ..., help="tasks to track (names or .jsonl files), and to train on unless --train-data"
    ),
    model: str = typer.Option("default", help="'default', 'default-gpt2' or a model directory"),
    out: Path = typer.Option(Path("runs"), help="parent directory of the run directory"),
    name: str = typer.Option(None, help="run directory name (default: TASKS-sSEED)"),
    resume: bool = typer.Option(False, help="continue an interrupted run in the same directory"),
    tracking_copy: str = typer.Option(
        "auto", help="on: checkpoints on a model copy while training goes on; off; auto: on if it fits"
    ),
    train_data: Path = typer.Option(
        None,
        help="train on this instead of the tasks' examples: JSONL (prompt/completion, messages or "
        "text) or a datasets save_to_disk directory",
    ),
    max_length: int = typer.Option(None, help="cut every training row to its first N tokens"),
    lora_targets: str = typer.Option(None, help=help_of(SFTConfig, "lora_targets")),
    save_model: bool = typer.Option(False, help="save the fine-tuned model (safetensors) to RUN_DIR/model"),
    sft_settings: dict | None = None,
    tracker_settings: dict | None = None,
) -> None:
    """SFT with circuit tracking: trajectories on disk, metrics and figures in MLflow."""
    from foresight.mlflow_ui import ui_url
    from foresight.model_files import context_length
    from foresight.models import load_tokenizer
    from foresight.sft import check_lora
    from foresight.sft_data import load_sft_data
    from trackers.run import TRACKING_COPY, track

    targets = None if lora_targets is None else tuple(t.strip() for t in lora_targets.split(",") if t.strip())
    sft = SFTConfig(**sft_settings, lora_targets=targets)
    settings = TrackerSettings(**tracker_settings, seed=sft.seed)
    check.check_positive(max_length=max_length)
    check.check_every(settings.every, sft.steps)
    check.check_placement(sft.dtype, sft.device, mode=sft.mode)
    check.check_choice("--tracking-copy", tracking_copy, TRACKING_COPY)
    check.check_run_name(name)
    check.check_k("--circuit-size", settings.circuit_size, model, check.checked_graph(model))
    check.check_out_dir("--out", out)
    tasks = check.check_tasks(task, model)
    size_bounds.check_n_pairs(settings.n_pairs, model, tasks)
    data = None
    if train_data is None:
        shape = size_bounds.task_batch_shape(model, tasks, sft.examples_per_task)
    else:
        data = load_sft_data(train_data, load_tokenizer(model), max_length, context=context_length(model))
        shape = (data.rows, data.longest)
    size_bounds.check_batch_size(sft.batch_size, model, *shape)
    prefix = "" if data is None else f"{data.path.stem}-"
    run_dir = out / (name or f"{prefix}{'+'.join(Path(t).stem for t in task)}-s{sft.seed}")
    claim_output("--out", run_dir, "track", resume, " (pass --resume to continue it)")
    check_lora(model, sft)
    result = track(
        task, run_dir, model, sft, settings, resume=resume, tracking_copy=tracking_copy, train_data=data,
        save_model=save_model,
    )  # fmt: skip
    if result.tracker is None:  # a rank other than 0 of a distributed run: rank 0 reports
        return
    lines = [
        f"trajectories: {run_dir / 'trajectories'}",
        f"MLflow run {result.run_id} in {result.tracking_uri}",
        f"open the UI: mlflow ui --backend-store-uri {result.tracking_uri}",
        f"then: {ui_url(result.experiment_id, result.run_id)}",
    ]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    _tell_pending(run_dir)


@app.command("attribute")
def attribute_command(
    task: str = typer.Option(..., help="task name or .jsonl file"),
    model: str = typer.Option("default"),
    method: str = typer.Option("eap", help="eap, eap-ig or patching"),
    level: str = typer.Option("node", help="node or edge"),
    top: int = typer.Option(10, help="components to print"),
    n_pairs: int = typer.Option(64),
    seed: int = typer.Option(0),
    dtype: Dtype = "float32",
    device: Device = "auto",
    faithfulness: str = typer.Option("curve", help="curve (top-k circuits) or mib (MIB's CPR and CMD)"),
) -> None:
    """Attribute a task: the top components and the faithfulness curve."""
    from foresight.app.attribute import FAITHFULNESS
    from foresight.app.attribute import attribute_command as run

    check.check_choice("--faithfulness", faithfulness, FAITHFULNESS)
    check.check_positive(n_pairs=n_pairs)
    check.check_seed(seed)
    check.check_method(method, level)
    check.check_placement(dtype, device)
    check.check_k("--top", top, model, check.checked_graph(model), "edges" if level == "edge" else "nodes")
    size_bounds.check_n_pairs(n_pairs, model, check.check_tasks([task], model))
    run(model, task, method, level, top, n_pairs, seed, dtype, device, faithfulness)


@app.command("export")
def export_command(
    trajectory: Path = typer.Option(..., help="a trajectory directory (foresight track writes them)"),
    step: int = typer.Option(..., help="the checkpoint's training step"),
    fmt: str = typer.Option("eap-ig", "--format", help="eap-ig: the EAP-IG library's graph JSON (MIB)"),
    out: Path = typer.Option(None, help="output file (default: ./TRAJECTORY-stepS.eap-ig.json)"),
    k: int = typer.Option(None, help="circuit members (default: the tracker's circuit size)"),
    d_model: int = typer.Option(None, help="hidden size (default: read from the model's config)"),
) -> None:
    """Write a stored checkpoint's scores and circuit in another tool's format."""
    from trackers.export import export_to_file

    out = out or Path(f"{trajectory.name}-step{step}.{fmt}.json")
    console.print(f"wrote {export_to_file(trajectory, step, out, fmt, k, d_model)}")


forecast = typer.Typer(help="Train, evaluate and apply circuit forecasters.", no_args_is_help=True)
app.add_typer(forecast, name="forecast")


@forecast.command("train")
def forecast_train(
    trajectories: Path = typer.Option(..., help="root directory of trajectories"),
    prefix: int = option(ForecastProblem, "prefix"),
    horizon: str = option(ForecastProblem, "horizon"),
    model: str = typer.Option(
        "lightgbm", help="lightgbm (lgbm), lgbm-ranker, lgbm-no-lookahead (cheaper to serve) or gnn"
    ),
    circuit_size: int = option(ForecastProblem, "circuit_size"),
    out: Path = typer.Option(..., help="directory for the forecaster"),
    seed: int = typer.Option(0),
    hold_out: list[str] = typer.Option(None, help="a task left out with its family (to forecast it)"),
    overwrite: bool = typer.Option(False, help="replace the forecaster that --out holds"),
) -> None:
    """Train a forecaster on every trajectory under a root (but those of held-out tasks)."""
    from foresight.app.forecast import train_command
    from predictors.precheck import check_request

    check.check_seed(seed)
    claim_output("--out", out, "forecaster", overwrite, " (pass --overwrite to replace it)")
    check.check_out_dir("--out", out)
    check_request(trajectories, prefix, horizon, circuit_size, [model], hold_out or [])
    train_command(trajectories, prefix, horizon, model, circuit_size, out, seed, hold_out or None)


@forecast.command("eval")
def forecast_eval(
    trajectories: Path = typer.Option(...),
    prefix: int = option(ForecastProblem, "prefix"),
    horizon: str = option(ForecastProblem, "horizon"),
    circuit_size: int = option(ForecastProblem, "circuit_size"),
    model: list[str] = typer.Option(None, help="forecasters and baselines (default: all)"),
    seed: int = typer.Option(0),
    log_mlflow: bool = typer.Option(False, help="also log to MLflow (experiment foresight-forecasting)"),
) -> None:
    """Leave-one-family-out comparison of forecasters and baselines."""
    from foresight.app.forecast import EVALUATION_DIR, eval_command
    from predictors.precheck import check_request

    check_request(trajectories, prefix, horizon, circuit_size, model or [])
    eval_command(trajectories, prefix, horizon, circuit_size, model or None, seed, log_mlflow)
    if log_mlflow:
        _tell_pending(EVALUATION_DIR)


@forecast.command("predict")
def forecast_predict(forecaster: Path = typer.Option(...), trajectory: Path = typer.Option(...)) -> None:
    """The circuit a forecaster predicts for a (partial) trajectory."""
    from foresight.app.forecast import predict_command

    predict_command(forecaster, trajectory)


@app.command("finetune")
@config_options(FinetuneConfig, skip=FINETUNE_HIDDEN)
def finetune_command(
    task: str = typer.Option(...),
    strategy: str = typer.Option(..., help=help_of(FinetuneConfig, "strategy")),
    out: Path = typer.Option(Path("runs/finetune")),
    settings: dict | None = None,
) -> None:
    """Fine-tune only the components a strategy selects."""
    from foresight.app.update import finetune_command as run

    config = FinetuneConfig(strategy=strategy, **settings)
    run(task, check.check_update(task, [strategy], config, out), out)


@app.command("compare")
@config_options(FinetuneConfig, skip=(*FINETUNE_HIDDEN, "strategy", "seed"))
def compare_command(
    task: str = typer.Option(...),
    strategies: str = typer.Option("free,static,random"),
    seeds: int = typer.Option(3),
    out: Path = typer.Option(Path("runs/compare")),
    settings: dict | None = None,
) -> None:
    """Compare strategies over seeds: MLflow parent and child runs and a printed table."""
    from foresight.app.update import compare_command as run

    names = [s.strip() for s in strategies.split(",") if s.strip()]
    if not names:
        raise ValueError(f"--strategies {strategies!r}: no strategy named")
    config = FinetuneConfig(**settings)
    check.check_seeds(seeds)
    config = check.check_update(task, names, config, out)
    claim_output("--out", out, "compare", hint=" (choose another --out)")
    check.check_empty_out("--out", out, "comparison")
    run(task, names, list(range(seeds)), config, out)
    _tell_pending(out)


@app.command("sweep")
def sweep_command(
    config: Path = typer.Argument(..., help="the sweep: a .toml or .json file (see the README)"),
    workers: int = typer.Option(None, help="CPUs of the local Ray, trials at once (default: all)"),
    address: str = typer.Option(None, help="run on this Ray cluster instead (e.g. auto, HOST:6379)"),
) -> None:
    """Run (or resume) a sweep of tasks x strategies x seeds as Ray tasks, logged to MLflow."""
    from foresight.mlflow_ui import ui_url
    from foresight.sweep import run_sweep

    check.check_ray()
    check.check_positive(workers=workers)
    if workers is not None and address is not None:
        raise ValueError("--workers sets the CPUs of a local Ray: a cluster (--address) has its own")
    sweep = check.check_sweep(config)
    result = run_sweep(sweep, workers, address)
    console.print(
        f"{len(result.ran)} trials run, {len(result.skipped)} finished before, {len(result.failed)} failed; "
        f"MLflow experiment {sweep.experiment!r}, results under {sweep.out}",
        soft_wrap=True, highlight=False, markup=False,
    )  # fmt: skip
    for task, run_id in result.parents.items():
        console.print(f"{task}: {ui_url(result.experiment_id, run_id)}", soft_wrap=True, highlight=False)
    _tell_pending(sweep.out)
    if result.failed:
        for key, error in result.failed.items():
            _error(f"trial {key} failed {sweep.retries + 1} times: {error}")
        raise typer.Exit(1)


def _tell_pending(directory: Path) -> None:
    """If MLflow calls wait in queues under `directory`, say how many and how to upload them."""
    from foresight.mlflow_log import pending_files

    files = pending_files(directory)
    if files:
        n = sum(len(f.read_text().splitlines()) for f in files)
        err_console.print(
            f"[yellow]{n} MLflow calls wait in {len(files)} queue(s) under {escape(str(directory))}: "
            f"upload them with `foresight sync {escape(str(directory))}`",
            highlight=False,
            soft_wrap=True,
        )


@app.command("sync")
def sync_command(
    run_dir: Path = typer.Argument(..., help="the directory of a foresight track, compare or sweep"),
) -> None:
    """Upload MLflow calls that were queued while the tracking server was away.

    Every queue under RUN_DIR goes to MLFLOW_TRACKING_URI if set, else where it was meant to go."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from foresight.mlflow_log import PENDING_FILE, check_store, pending_files, queued_tracking_uri, sync
    from foresight.output_dirs import marker
    from foresight.tracking_uri import check_tracking_uri
    from trackers.run import RunRecord

    if not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir}: no such run directory")
    if marker(run_dir) is None and not pending_files(run_dir):
        raise FileNotFoundError(
            f"{run_dir}: not a run directory of foresight track, compare or sweep "
            f"(no run.json, comparison.md, sweep record or {PENDING_FILE})"
        )
    uri = os.environ.get("MLFLOW_TRACKING_URI") or queued_tracking_uri(run_dir)
    if uri is None and (run_dir / "run.json").is_file():
        uri = RunRecord.read(run_dir).tracking_uri
    if uri is None:
        console.print("uploaded 0 queued entries (none wait)")
        return
    check_tracking_uri(uri)
    check_store(uri)
    try:
        uploaded = sync(run_dir, MlflowClient(uri))
    except MlflowException as e:
        raise ValueError(
            f"{run_dir}: sync to {uri} failed, what was not uploaded stays in {PENDING_FILE} ({e.message})"
        ) from e
    console.print(f"uploaded {uploaded} queued entries to {uri}")


@app.command("report")
def report_command(
    experiment: str = typer.Option(None, help="MLflow experiment, e.g. study-illusion or foresight-compare"),
    per_run: Path = typer.Option(None, help="or a per-run results CSV (experiments/results/*_per_run.csv)"),
    out: Path = typer.Option(None, help="also write the markdown table here"),
) -> None:
    """Rebuild a results table and its tests from MLflow runs (MLFLOW_TRACKING_URI, else
    ./mlflow.db) or from a per-run CSV."""
    if (experiment is None) == (per_run is None):
        raise typer.BadParameter("give one of --experiment and --per-run")
    if per_run is not None:
        from predictors.report import rebuild

        if not per_run.is_file():
            raise typer.BadParameter(f"{per_run}: no such file", param_hint="--per-run")
        text = rebuild(per_run)
    else:
        import mlflow

        from foresight.mlflow_log import check_store, resolve_tracking_uri
        from foresight.report import report
        from foresight.tracking_uri import check_tracking_uri

        uri = resolve_tracking_uri()
        check_tracking_uri(uri)
        check_store(uri)
        mlflow.set_tracking_uri(uri)
        text = report(experiment)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: runs the app, turning user errors into one line and exit 2 (Ctrl-C: exit 130).

    MLflow's HTTP retries are bounded (a tracking server that answers with errors fails in
    seconds, not minutes), its INFO lines (and alembic's) and the FutureWarnings of
    transformers, peft and torch are silenced."""
    for name, value in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    for name in ("mlflow", "alembic"):  # mlflow reads the level when imported; it may be already
        logging.getLogger(name).setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    # deprecation notices of the libraries underneath are for their callers' developers, not users
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)\b")
    if os.environ.get("FORESIGHT_DEBUG"):
        app()
        return
    try:
        code = app(standalone_mode=False)  # typer returns 130 for Ctrl-C
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
    except ConfigError as err:  # a setting out of its range: named as its option
        _error(f"--{err.field.replace('_', '-')}: {err.message}")
        sys.exit(2)
    except USER_ERRORS as err:
        _error(f"missing key {err.args[0]!r}" if isinstance(err, KeyError) and err.args else str(err))
        sys.exit(2)
    if code == INTERRUPTED:
        _error("interrupted")
    if isinstance(code, int) and code:
        sys.exit(code)


def _error(message: str) -> None:
    """`message` as one `error:` line on stderr (line breaks inside it become spaces; brackets
    in it are text, not rich markup)."""
    text = escape(" ".join(message.split()) or "unknown error")
    err_console.print(f"[red]error:[/red] {text}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
