"""Sweeps on Ray: the grid task x strategy x seed of `finetune` runs, one Ray task per trial.

A sweep (`SweepConfig`) logs to MLflow experiment `experiment` as `compare` does, so that
`foresight report --experiment NAME` reads it: one parent run per task (named `compare-{task}`,
params: task and the shared `FinetuneConfig` settings) and one child run per trial, logged by
`foresight.updater.compare.log_trial` (the same tags, params and metrics). Each sweep run carries a
deterministic key, tag `sweep_key`: `{task}` on a parent, `{task}/{strategy}/s{seed}` on a trial.

Exactly once: the driver looks every trial's key up under its parent before the first trial runs.
A FINISHED run means the trial is done (nothing runs, nothing is logged); any other run with that
key (RUNNING, left by a worker that died, or FAILED) is deleted, with the trial's directory. Ray
retries a trial whose worker dies or which raises, `retries` times (its `max_retries`,
`retry_exceptions`); a retry deletes the run its failed attempt recorded in `run_id`.

One MLflow path: after those lookups every write (child runs, their metrics, the comparisons, the
parents' ends) goes through `foresight.mlflow_log.SafeLogger`, so a tracking server that goes away
mid-sweep loses nothing: the calls wait in `pending_mlflow.jsonl` files under `out` for
`foresight sync OUT`.

Resume: the driver submits only the trials without a FINISHED run, so running a finished sweep
again logs nothing. A task whose trials are all FINISHED gets its comparison
(`foresight.updater.compare.log_summary`, `{out}/{task}/comparison.md`) on its parent, which then
ends FINISHED; a parent with a trial that failed every try ends FAILED, and running the sweep again
resumes it. A parent's params are checked against the logged ones before any trial runs: resuming
with other settings is refused. Trial directories: `{out}/{task}/{strategy}-s{seed}`.

Ray is an optional dependency (`pip install .[ray]`), imported only when trials run.
"""

from __future__ import annotations

import json
import logging
import shutil
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from tqdm import tqdm

from foresight.config import MAX_SEED, ConfigError, check_settings, setting
from foresight.mlflow_log import (
    PARENT_TAG,
    PLACEHOLDER,
    SafeLogger,
    check_params,
    get_or_create_experiment,
    open_run,
    resolve_tracking_uri,
)
from foresight.output_dirs import record_sweep
from foresight.report import strategy_frame
from foresight.tracking_uri import check_tracking_uri, probe_tcp
from foresight.updater.compare import RUN_ID_FILE, log_summary, log_trial, shared_params
from foresight.updater.config import FinetuneConfig
from foresight.updater.strategies import Strategy, checked_strategy, register_strategy, strategy_class

SWEEP_KEY = "sweep_key"
SWEEP_KEYS = ("experiment", "tasks", "strategies", "seeds", "finetune", "out", "forecasters", "retries")


@dataclass(frozen=True)
class Trial:
    """One cell of the grid."""

    task: str
    strategy: str
    seed: int

    @property
    def key(self) -> str:
        """The trial's `sweep_key`: `{task}/{strategy}/s{seed}`."""
        return f"{self.task}/{self.strategy}/s{self.seed}"

    def directory(self, out: Path) -> Path:
        """The trial's files: `{out}/{task}/{strategy}-s{seed}`."""
        return out / self.task / f"{self.strategy}-s{self.seed}"


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: every (task, strategy, seed) of `tasks` x `strategies` x `seeds`, fine-tuned with
    `finetune`'s settings (its strategy and seed are the trial's), with the forecaster of
    `forecasters[task]` where given; logged to MLflow experiment `experiment`, files under `out`.
    A trial that fails or whose worker dies is tried again up to `retries` times."""

    experiment: str = setting(MISSING, "the MLflow experiment")
    tasks: tuple[str, ...] = setting(MISSING, "task names or .jsonl files")
    strategies: tuple[str, ...] = setting(MISSING, "strategy names")
    seeds: tuple[int, ...] = setting(MISSING, "seeds, each a trial")
    finetune: FinetuneConfig = setting(FinetuneConfig(), "the settings every trial shares")
    out: Path = setting(Path("runs/sweep"), "the trials' directories")
    forecasters: Mapping[str, str] = field(default_factory=dict, metadata={"help": "task -> forecaster"})
    retries: int = setting(2, "tries after a trial's first failure", at_least=0)

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_file(cls, path: Path) -> SweepConfig:
        """The sweep a `.toml` or `.json` file describes: its keys (SWEEP_KEYS; experiment, tasks,
        strategies and seeds required), their types, and the FinetuneConfig settings of its
        `finetune` table. ValueError (FileNotFoundError) naming `path` and the key at fault."""
        data = _read_table(path)
        experiment = data["experiment"]
        if not (isinstance(experiment, str) and experiment.strip()):
            raise ValueError(f"{path}: experiment must be a non-empty name, not {experiment!r}")
        tasks = _names(path, "tasks", data["tasks"])
        strategies = _names(path, "strategies", data["strategies"])
        seeds = _seeds(path, data["seeds"])
        retries = data.get("retries", 2)
        if type(retries) is not int or retries < 0:
            raise ValueError(f"{path}: retries must be an integer of at least 0, not {retries!r}")
        out = data.get("out", f"runs/sweep-{experiment}")
        if not (isinstance(out, str) and out):
            raise ValueError(f"{path}: out must be a directory path, not {out!r}")
        forecasters = data.get("forecasters", {})
        if not (isinstance(forecasters, dict) and all(isinstance(v, str) for v in forecasters.values())):
            raise ValueError(f"{path}: forecasters must be a table of task = forecaster directory")
        stray = [t for t in forecasters if t not in tasks]
        if stray:
            raise ValueError(f"{path}: forecasters.{stray[0]}: not one of the tasks")
        try:
            settings = FinetuneConfig(**_finetune_settings(path, data.get("finetune", {})))
        except ConfigError as e:
            raise ValueError(f"{path}: finetune.{e}") from None
        try:
            for strategy in strategies:
                checked_strategy(strategy, settings.every, settings.steps)
        except ConfigError as e:
            raise ValueError(f"{path}: finetune.{e}") from None
        except ValueError as e:
            raise ValueError(f"{path}: strategies: {e}") from None
        return cls(
            experiment,
            tuple(tasks),
            tuple(strategies),
            tuple(seeds),
            settings,
            Path(out),
            forecasters,
            retries,
        )

    def settings(self, task: str) -> FinetuneConfig:
        """The settings that `task`'s trials share."""
        forecaster = self.forecasters.get(task)
        return self.finetune if forecaster is None else replace(self.finetune, forecaster=forecaster)

    def trials(self) -> list[Trial]:
        """The grid, task by task, then strategy, then seed."""
        return [Trial(t, s, seed) for t in self.tasks for s in self.strategies for seed in self.seeds]


@dataclass
class SweepResult:
    """`parents`: task -> parent run id (of experiment `experiment_id`); `ran`: the keys of the
    trials this call ran; `skipped`: those FINISHED before it; `failed`: key -> the error of a
    trial that failed every try."""

    experiment_id: str
    parents: dict[str, str]
    ran: list[str]
    skipped: list[str]
    failed: dict[str, str]


def _read_table(path: Path) -> dict[str, object]:
    """The table of a sweep file, with SWEEP_KEYS only and the required ones present."""
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"{path}: a sweep config is a .toml or .json file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid {path.suffix[1:].upper()} ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a table of settings, not {type(data).__name__}")
    unknown = [k for k in data if k not in SWEEP_KEYS]
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; choose from {', '.join(SWEEP_KEYS)}")
    missing = [k for k in SWEEP_KEYS[:4] if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key {missing[0]!r}")
    return data


def _names(path: Path, key: str, value: object) -> list[str]:
    """A non-empty list of distinct non-empty strings."""
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        raise ValueError(f"{path}: {key} must be a non-empty list of names, not {value!r}")
    if len(set(value)) < len(value):
        raise ValueError(f"{path}: {key} lists a name twice: {value!r}")
    return value


def _seeds(path: Path, seeds: object) -> list[int]:
    """A non-empty list of distinct seeds in 0..MAX_SEED."""
    if not (isinstance(seeds, list) and seeds and all(type(s) is int for s in seeds)):
        raise ValueError(f"{path}: seeds must be a non-empty list of integers, not {seeds!r}")
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"{path}: seeds: {seed}: must be in 0..{MAX_SEED}")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"{path}: seeds lists a seed twice: {seeds!r}")
    return seeds


def _finetune_settings(path: Path, table: object) -> dict[str, object]:
    """The `finetune` table: FinetuneConfig fields (not strategy or seed) of the right types."""
    if not isinstance(table, dict):
        raise ValueError(f"{path}: finetune must be a table of FinetuneConfig settings, not {table!r}")
    hints = typing.get_type_hints(FinetuneConfig)
    kinds = {f.name: f.type for f in fields(FinetuneConfig) if f.name not in ("strategy", "seed")}
    for key, value in table.items():
        if key not in kinds:
            raise ValueError(f"{path}: finetune.{key}: unknown setting; choose from {', '.join(kinds)}")
        if not _of_type(value, hints[key]):
            raise ValueError(f"{path}: finetune.{key} {value!r}: must be of type {kinds[key]}")
    return table


def _of_type(value: object, hint: object) -> bool:
    """Whether a TOML/JSON value is of the field type `hint` (bool is no int; int is a float; a
    Literal's values are strings, checked by the config)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_of_type(value, arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is typing.Literal:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if hint is float:
        return type(value) in (int, float)
    return type(value) is hint


def _key_filter(key: str) -> str:
    return f"tags.{SWEEP_KEY} = '{key}'"


def run_trial(
    uri: str,
    experiment_id: str,
    parent_id: str,
    trial: Trial,
    settings: FinetuneConfig,
    out: Path,
    strategy: type[Strategy],
) -> dict[str, object]:
    """One attempt at `trial` (in a Ray worker), logged as a child run of `parent_id`; returns
    its summary row (`FinetuneResult.summary`). An attempt that finds the directory of an
    earlier one (whose worker died, or which failed) deletes that attempt's run and files
    first. `strategy`, the class the driver registered as `trial.strategy`, is registered in
    the worker too (its module is imported as it arrives)."""
    register_strategy(strategy)
    mlflow.set_tracking_uri(uri)
    out_dir = trial.directory(out)
    parent = SafeLogger(parent_id, out_dir, experiment_id=experiment_id)
    earlier = out_dir / RUN_ID_FILE
    if earlier.is_file():
        run_id = earlier.read_text()
        shutil.rmtree(out_dir)
        if not run_id.startswith(PLACEHOLDER):  # a placeholder's run was only in the removed queue
            parent.logger_of(run_id, out_dir).delete_run()
    config = settings.with_run(trial.strategy, trial.seed)
    return log_trial(trial.task, config, parent, out_dir, {SWEEP_KEY: trial.key}).summary()


def _parent_params(config: SweepConfig, task: str) -> dict[str, object]:
    """The params of `task`'s parent run: task and the settings its trials share."""
    return {"task": task, **shared_params(config.settings(task))}


def _logged_parent(client: MlflowClient, config: SweepConfig, experiment_id: str, task: str) -> str | None:
    """The id of `task`'s parent run logged before (its params checked against `config`'s), if any."""
    runs = client.search_runs([experiment_id], _key_filter(task), order_by=["attributes.start_time ASC"])
    if not runs:
        return None
    check_params(runs[0], _parent_params(config, task))
    return runs[0].info.run_id


def _finished(experiment_id: str, parents: Mapping[str, str]) -> pd.DataFrame:
    """The FINISHED trial runs under `parents`, as `foresight.report.strategy_frame` rows."""
    runs = mlflow.search_runs([experiment_id], "attributes.status = 'FINISHED'", max_results=50_000)
    if f"tags.{SWEEP_KEY}" not in runs:
        return strategy_frame(runs.iloc[:0])
    mine = runs[f"tags.{SWEEP_KEY}"].notna() & runs[f"tags.{PARENT_TAG}"].isin(list(parents.values()))
    return strategy_frame(runs[mine].iloc[::-1])


def _clear(
    client: MlflowClient, experiment_id: str, parents: Mapping[str, str], trials: list[Trial], out: Path
) -> None:
    """Delete what earlier attempts at `trials` left: their runs (RUNNING, left by a worker that
    died, or FAILED) and their directories."""
    keys, ids = {t.key for t in trials}, set(parents.values())
    for run in client.search_runs([experiment_id], "attributes.status != 'FINISHED'", max_results=50_000):
        if run.data.tags.get(SWEEP_KEY) in keys and run.data.tags.get(PARENT_TAG) in ids:
            client.delete_run(run.info.run_id)
    for trial in trials:
        shutil.rmtree(trial.directory(out), ignore_errors=True)


def _keys(frame: pd.DataFrame) -> set[str]:
    """The trial keys of the rows of a strategy frame."""
    columns = (frame["task"], frame["strategy"], frame["seed"])
    return {Trial(t, s, int(seed)).key for t, s, seed in zip(*columns, strict=True)}


def _error(error: Exception) -> str:
    """The one-line cause of a Ray task's failure."""
    cause = getattr(error, "cause", None)
    text = repr(cause) if cause is not None else str(error)
    return " ".join(text.split())[:300]


def _run_on_ray(
    trials: list[Trial],
    config: SweepConfig,
    uri: str,
    experiment_id: str,
    parents: Mapping[str, str],
    workers: int | None,
    address: str | None,
    progress: bool,
) -> tuple[list[dict[str, object]], dict[str, str]]:
    """Run `trials` as Ray tasks (one CPU each) on a local Ray of `workers` CPUs, or on the
    cluster at `address`; returns the summary rows of the trials that ran, and key -> error
    of those that failed every try."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(
            address=address,
            num_cpus=workers if address is None else None,
            include_dashboard=False,
            log_to_driver=False,  # the workers' Trainer and library output stays in Ray's log files
            logging_level=logging.ERROR,  # its INFO lines and the token-auth notice
        )
    try:
        remote = ray.remote(num_cpus=1, max_retries=config.retries, retry_exceptions=True)(run_trial)
        futures = {
            remote.remote(
                uri,
                experiment_id,
                parents[t.task],
                t,
                config.settings(t.task),
                config.out,
                strategy_class(t.strategy),
            ): t
            for t in trials
        }
        rows: list[dict[str, object]] = []
        failed: dict[str, str] = {}
        remaining = list(futures)
        with tqdm(total=len(trials), desc="sweep", unit="trial", disable=not progress) as bar:
            while remaining:
                ready, remaining = ray.wait(remaining, num_returns=1)
                trial = futures[ready[0]]
                try:
                    rows.append(ray.get(ready[0]))
                except ray.exceptions.RayError as e:
                    failed[trial.key] = _error(e)
                bar.set_postfix_str(trial.key, refresh=False)
                bar.update()
        return rows, failed
    finally:
        if started:
            ray.shutdown()


def _close_parent(config: SweepConfig, parent: SafeLogger, task: str, frame: pd.DataFrame) -> None:
    """Log `task`'s comparison of `frame` (the strategy frame of its finished trials) on its
    parent and end it FINISHED if its trials all finished, else end it FAILED."""
    frame = frame[frame["task"] == task]
    keys = {t.key for t in config.trials() if t.task == task}
    if not keys <= _keys(frame):
        parent.end_run("FAILED")
        return
    order = {s: i for i, s in enumerate(config.strategies)}
    frame = frame.sort_values(["strategy", "seed"], key=lambda c: c.map(order) if c.name == "strategy" else c)
    log_summary(task, frame.reset_index(drop=True), config.out / task, parent)
    parent.end_run("FINISHED")


def check_ray_address(address: str | None) -> None:
    """ValueError unless a cluster address given as HOST:PORT (or ray://HOST:PORT) accepts a
    connection within a few seconds (`foresight.tracking_uri.probe_tcp`); None, `auto` and
    `local` are Ray's to resolve."""
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--address {address}: not HOST:PORT (or auto)")
    why = probe_tcp(host, int(port))
    if why is not None:
        raise ValueError(f"--address {address}: no Ray cluster answers at {host}:{port} ({why})")


def run_sweep(
    config: SweepConfig, workers: int | None = None, address: str | None = None, progress: bool = True
) -> SweepResult:
    """Run (or resume) the sweep on Ray (see the module docstring), logging to MLflow
    (MLFLOW_TRACKING_URI, else ./mlflow.db); `progress`: a progress bar of trials on stderr.
    What the sweep reads from MLflow it reads before the first trial, so that a server that
    goes away later only delays its writes (`foresight sync` the sweep's `out`)."""
    uri = resolve_tracking_uri()
    check_tracking_uri(uri)
    check_ray_address(address)  # before any run is created or file written
    record_sweep(config.out, config.experiment)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    experiment_id = get_or_create_experiment(config.experiment)
    logged = {task: _logged_parent(client, config, experiment_id, task) for task in config.tasks}
    parents: dict[str, str] = {}
    for task, run_id in logged.items():  # all checked before the first is created
        tags = {"task": task, SWEEP_KEY: task}
        params = _parent_params(config, task)
        parents[task] = run_id or open_run(config.experiment, f"compare-{task}", params, tags)
    closed = {task for task, run_id in parents.items() if client.get_run(run_id).info.status == "FINISHED"}
    before = _finished(experiment_id, parents)
    skipped = _keys(before)
    pending = [t for t in config.trials() if t.key not in skipped]
    _clear(client, experiment_id, parents, pending, config.out)
    for task in {t.task for t in pending}:
        client.update_run(parents[task], status="RUNNING")
    rows, failed = (
        _run_on_ray(pending, config, uri, experiment_id, parents, workers, address, progress)
        if pending
        else ([], {})
    )
    frame = pd.concat([before, pd.DataFrame(rows, columns=before.columns)], ignore_index=True)
    driver = SafeLogger(parents[config.tasks[0]], config.out, experiment_id=experiment_id)
    for task, run_id in parents.items():
        if task not in closed or any(t.task == task for t in pending):
            _close_parent(config, driver.logger_of(run_id, config.out / task), task, frame)
    ran = [t.key for t in pending if t.key not in failed]
    return SweepResult(
        experiment_id, parents, ran, [t.key for t in config.trials() if t.key in skipped], failed
    )
