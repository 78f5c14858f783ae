"""MLflow logging for Foresight runs: thin helpers over mlflow.

- `resolve_tracking_uri` / `check_reachable`: where runs go, and a quick check that a
  tracking server answers before a long run starts.
- `open_run` / `start_run`: a run with its (flattened) params and tags, resumable by run id.
- `SafeLogger`: logging that survives the tracking server going away: after the first
  failure it warns once and appends every further call to `pending_mlflow.jsonl` in the
  run directory; `sync(root)` uploads the files under a directory later. Every write of a
  Foresight job (tracked runs, comparisons and their child runs, sweeps, forecaster
  evaluations: params, metrics, tags, tables, figures, files, new runs) goes through it;
  only opening a job's first run needs the server.

A failing call to a tracking *server* can take minutes before it fails (mlflow retries;
see MLFLOW_HTTP_REQUEST_MAX_RETRIES and MLFLOW_HTTP_REQUEST_TIMEOUT), which is why
SafeLogger stops calling it after the first failure.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import mlflow
import pandas as pd
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run, RunTag
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
R = TypeVar("R")

PENDING_FILE = "pending_mlflow.jsonl"
# the id of a run created while the server was away, until `sync` creates it
PLACEHOLDER = "pending-"
PARENT_TAG, RUN_NAME_TAG = "mlflow.parentRunId", "mlflow.runName"
# the experiment tag by which the MLflow UI (3.x) tells model training from GenAI experiments
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# log_batch limits of the MLflow REST API
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100


class TrackingUnavailable(ConnectionError):
    """The MLflow tracking server does not answer (an OSError, so the CLI reports it as a user error)."""


def resolve_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite file `mlflow.db` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """For an http(s) URI, a GET of `{uri}/health` and of one experiment search (the REST API
    behind it): TrackingUnavailable if either fails, answers an HTTP error (a 503 of an
    overloaded server or proxy) or times out after `timeout` seconds. Other URIs (sqlite,
    file) are local and pass."""
    if not uri.startswith(("http://", "https://")):
        return
    for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        url = uri.rstrip("/") + path
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as e:
            raise TrackingUnavailable(
                f"MLflow tracking server {uri} answered {url} with HTTP {e.code}"
            ) from e
        except (urllib.error.URLError, OSError) as e:
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            raise TrackingUnavailable(f"MLflow tracking server {uri} is not reachable: {reason}") from e
        if status != 200:
            raise TrackingUnavailable(f"MLflow tracking server {uri} answered {url} with HTTP {status}")


def check_store(uri: str) -> None:
    """FileNotFoundError for a SQLite URI whose file does not exist (reading it would create
    an empty store)."""
    store = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and not Path(store).is_file():
        raise FileNotFoundError(f"{store}: no MLflow store (set MLFLOW_TRACKING_URI to where the run logged)")


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts as dotted keys, values as strings: {"a": {"b": 1}} -> {"a.b": "1"}."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def get_or_create_experiment(name: str, artifact_location: str | None = None) -> str:
    """The id of experiment `name`, created (with `artifact_location`, if given) when missing.
    It is tagged as a model-training experiment (EXPERIMENT_KIND), so that the MLflow UI
    opens it on its runs, not on the GenAI traces view."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_KIND)
    if EXPERIMENT_KIND.items() - experiment.tags.items():
        for key, value in EXPERIMENT_KIND.items():
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def check_params(run: Run, params: Mapping[str, Any]) -> None:
    """ValueError if a param of `params` (flattened) is logged on `run` with another value."""
    logged = run.data.params
    changed = {k: (logged[k], v) for k, v in flatten_params(params).items() if logged.get(k, v) != v}
    if changed:
        message = f"run {run.info.run_id}: params differ from the logged ones (logged, new): {changed}"
        raise ValueError(message)


def open_run(
    experiment: str,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
    artifact_location: str | None = None,
) -> str:
    """Create (or, given `run_id`, reopen as RUNNING) an MLflow run in `experiment` and log its
    params (flattened) and tags; returns its id. The run stays RUNNING until it is ended
    (`SafeLogger.end_run`, `mlflow.end_run`). On resume, params already logged with the same
    value are skipped, and a param whose value changed raises ValueError."""
    client = MlflowClient()
    experiment_id = get_or_create_experiment(experiment, artifact_location)
    flat = flatten_params(params or {})
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    else:
        run = client.get_run(run_id)
        if run.info.experiment_id != experiment_id:
            raise ValueError(
                f"run {run_id} belongs to experiment {run.info.experiment_id}, not {experiment!r}"
            )
        check_params(run, flat)
        flat = {k: v for k, v in flat.items() if k not in run.data.params}
        client.update_run(run_id, status="RUNNING")
    _log_batch(client, run_id, params=flat, tags=dict(tags or {}))
    return run_id


def start_run(
    experiment: str,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
    artifact_location: str | None = None,
) -> mlflow.ActiveRun:
    """`open_run`, made the active run of mlflow's fluent API; use as a context manager (the
    run ends FINISHED, or FAILED on an exception)."""
    run_id = open_run(experiment, run_name, params, tags, run_id, artifact_location)
    return mlflow.start_run(run_id=run_id)


def logged_steps(client: MlflowClient, run_id: str) -> dict[str, int]:
    """The last step logged for every metric of a run."""
    keys = client.get_run(run_id).data.metrics
    return {key: max(m.step for m in client.get_metric_history(run_id, key)) for key in keys}


def _log_batch(
    client: MlflowClient,
    run_id: str,
    metrics: Sequence[Metric] = (),
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """client.log_batch in chunks within the API's limits (metrics, then params, then tags)."""
    params_ = [Param(k, str(v)) for k, v in (params or {}).items()]
    tags_ = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, len(metrics), MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS], synchronous=True)
    for i in range(0, len(params_), MAX_PARAMS):
        client.log_batch(run_id, params=params_[i : i + MAX_PARAMS], synchronous=True)
    for i in range(0, len(tags_), MAX_TAGS):
        client.log_batch(run_id, tags=tags_[i : i + MAX_TAGS], synchronous=True)


@dataclass
class _Link:
    """What the loggers of one job share: whether the tracking server has failed them."""

    offline: bool = False


class SafeLogger:
    """Logs to one MLflow run and never lets a tracking failure stop training.

    The first failing call is reported once (logging.warning); that call and every later
    one are appended to `{run_dir}/pending_mlflow.jsonl` (one JSON object per line, with
    the run id and the tracking URI) instead, for `sync(run_dir)` to upload. Loggers made
    from one another (`new_run`) share that state: once one has failed, none calls the
    server again. Metrics at a step not after the last step already logged for that key
    are dropped, so a resumed run that replays steps does not duplicate them.
    """

    def __init__(
        self,
        run_id: str,
        run_dir: str | Path,
        client: MlflowClient | None = None,
        experiment_id: str | None = None,
        link: _Link | None = None,
    ) -> None:
        """`experiment_id`: the run's experiment, where `new_run` creates runs (needed by it only)."""
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.pending = self.run_dir / PENDING_FILE
        self.client = client or MlflowClient()
        self.experiment_id = experiment_id
        self._link = link or _Link()
        self._last_step: dict[str, int] | None = {} if run_id.startswith(PLACEHOLDER) else None

    @property
    def offline(self) -> bool:
        """Whether a call of this logger (or of one it shares its state with) has failed."""
        return self._link.offline

    def new_run(self, run_name: str, tags: Mapping[str, str], run_dir: str | Path) -> SafeLogger:
        """A logger of a new child run of this one, `run_name` with `tags`, in this logger's
        experiment, queuing to `{run_dir}/pending_mlflow.jsonl`. Offline, the child gets a
        placeholder id (PLACEHOLDER...) and its creation is queued first: `sync` creates it."""
        if self.experiment_id is None:
            raise ValueError(f"run {self.run_id}: a logger that creates runs needs its experiment id")
        tags = {**tags, RUN_NAME_TAG: run_name, PARENT_TAG: self.run_id}
        created = self._call(lambda: self.client.create_run(self.experiment_id, tags=tags), None)
        if created is not None:
            return self.logger_of(created.info.run_id, run_dir)
        child = self.logger_of(PLACEHOLDER + uuid.uuid4().hex, run_dir)
        child._queue({"create": {"experiment_id": self.experiment_id, "tags": tags}})
        return child

    def logger_of(self, run_id: str, run_dir: str | Path) -> SafeLogger:
        """A logger of another run of this logger's experiment that shares its client and its
        state: once either has failed, neither calls the server again."""
        return SafeLogger(run_id, run_dir, self.client, self.experiment_id, self._link)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log `metrics` (name -> value) at `step`."""
        if self._last_step is None:  # the steps a resumed run logged before
            self._last_step = self._call(lambda: logged_steps(self.client, self.run_id), None) or {}
        timestamp = int(time.time() * 1000)
        fresh = {k: float(v) for k, v in metrics.items() if step > self._last_step.get(k, step - 1)}
        if not fresh:
            return
        for key in fresh:
            self._last_step[key] = step
        entry = {"metrics": [[k, v, timestamp, step] for k, v in fresh.items()]}
        self._call(lambda: _log_batch(self.client, self.run_id, metrics=_metrics(entry)), entry)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (nested dicts flattened to dotted keys)."""
        entry = {"params": flatten_params(params)}
        self._call(lambda: _log_batch(self.client, self.run_id, params=entry["params"]), entry)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values as strings; queued when offline)."""
        entry = {"tags": {k: str(v) for k, v in tags.items()}}
        self._call(lambda: _log_batch(self.client, self.run_id, tags=entry["tags"]), entry)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file, or the contents of a directory, under `artifact_path` (queued by path
        when offline: keep the files until `sync`)."""
        entry = {"artifact": str(Path(local_path).resolve()), "artifact_path": artifact_path}
        self._call(lambda: _log_artifact(self.client, self.run_id, str(local_path), artifact_path), entry)

    def log_inputs(self, inputs: Sequence[DatasetInput]) -> None:
        """Log dataset inputs (MLflow's dataset API; queued as their fields when offline)."""
        entry = {"inputs": [_input_fields(i) for i in inputs]}
        self._call(lambda: self.client.log_inputs(self.run_id, list(inputs)), entry)

    def log_figure(self, figure: Figure, artifact_file: str) -> Path:
        """Save `figure` as `{run_dir}/{artifact_file}` and log it there; returns the file."""
        path = self.run_dir / artifact_file
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        self.log_artifact(path, str(PurePosixPath(artifact_file).parent))
        return path

    def log_table(self, table: pd.DataFrame, artifact_file: str) -> Path:
        """Save `table` as `{run_dir}/{artifact_file}` (JSON, orient "split") and log it as an
        MLflow table (`MlflowClient.log_table`, which the UI's evaluation view reads)."""
        path = self.run_dir / artifact_file
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_json(path, orient="split", index=False)
        entry = {"table": str(path.resolve()), "artifact_file": artifact_file}
        self._call(lambda: _log_table(self.client, self.run_id, entry["table"], artifact_file), entry)
        return path

    def end_run(self, status: str) -> None:
        """End the run as FINISHED, FAILED or KILLED (queued for `sync` when offline)."""
        entry = {"status": status}
        self._call(lambda: self.client.set_terminated(self.run_id, status), entry)

    def delete_run(self) -> None:
        """Delete the run (an attempt that did not finish; queued for `sync` when offline)."""
        self._call(lambda: self.client.delete_run(self.run_id), {"delete": True})

    def _call(self, action: Callable[[], R], entry: dict[str, Any] | None) -> R | None:
        """`action()`'s result while the server answers; from its first failure on, None, and
        `entry` goes to the queue."""
        if not self.offline:
            try:
                return action()
            except Exception as e:  # any failure of the tracking backend: go offline
                self._link.offline = True
                message = "MLflow logging failed (%s: %s); run %s goes on, logging to %s for a later sync"
                log.warning(message, type(e).__name__, e, self.run_id, self.pending)
        if entry is not None:
            self._queue(entry)
        return None

    def _queue(self, entry: dict[str, Any]) -> None:
        """Append `entry` (with the run id and tracking URI) to the pending file, synced to disk."""
        self.pending.parent.mkdir(parents=True, exist_ok=True)
        with self.pending.open("a") as f:
            f.write(json.dumps({"run_id": self.run_id, "uri": self.client.tracking_uri, **entry}) + "\n")
            f.flush()
            os.fsync(f.fileno())


@contextmanager
def ended(logger: SafeLogger) -> Iterator[SafeLogger]:
    """Ends `logger`'s run when the block exits: FINISHED, KILLED on Ctrl-C, FAILED on any
    other exception (which goes on)."""
    try:
        yield logger
    except KeyboardInterrupt:
        logger.end_run("KILLED")
        raise
    except BaseException:
        logger.end_run("FAILED")
        raise
    logger.end_run("FINISHED")


def _input_fields(dataset_input: DatasetInput) -> dict[str, Any]:
    """A dataset input as JSON-ready fields (`_inputs` rebuilds it)."""
    d = dataset_input.dataset
    fields = {"name": d.name, "digest": d.digest, "source_type": d.source_type, "source": d.source}
    fields |= {"schema": d.schema, "profile": d.profile}
    return {"dataset": fields, "tags": {t.key: t.value for t in dataset_input.tags}}


def _inputs(entry: Mapping[str, Any]) -> list[DatasetInput]:
    return [
        DatasetInput(Dataset(**i["dataset"]), [InputTag(k, v) for k, v in i["tags"].items()])
        for i in entry.get("inputs", [])
    ]


def _log_table(client: MlflowClient, run_id: str, local_path: str, artifact_file: str) -> None:
    client.log_table(run_id, pd.read_json(local_path, orient="split"), artifact_file)


def _log_artifact(client: MlflowClient, run_id: str, local_path: str, artifact_path: str | None) -> None:
    """A file as `artifact_path/name`; a directory's contents under `artifact_path` (not under
    `artifact_path/name`, where client.log_artifact would put them)."""
    if os.path.isdir(local_path):
        client.log_artifacts(run_id, local_path, artifact_path)
    else:
        client.log_artifact(run_id, local_path, artifact_path)


def _metrics(entry: Mapping[str, Any]) -> list[Metric]:
    return [Metric(key, value, timestamp, step) for key, value, timestamp, step in entry.get("metrics", [])]


def _read_pending(file: Path) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(file.read_text().splitlines(), 1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a crash while appending
            log.warning("%s:%d: skipping an unreadable line", file, number)
    return entries


def pending_files(root: str | Path) -> list[Path]:
    """The pending files under `root` (its own and its run directories'), in path order."""
    root = Path(root)
    return sorted(root.rglob(PENDING_FILE)) if root.is_dir() else []


def queued_tracking_uri(root: str | Path) -> str | None:
    """The tracking URI that the first queued call under `root` was meant for, if any."""
    for file in pending_files(root):
        for entry in _read_pending(file):
            if entry.get("uri"):
                return entry["uri"]
    return None


def sync(root: str | Path, client: MlflowClient | None = None) -> int:
    """Upload every pending file under `root` (`pending_files`) and remove it; returns the
    number of entries uploaded. Runs queued with a placeholder id are created first (their
    later entries go to the new id), metric (key, step) pairs the run already holds are
    skipped, so syncing twice does not duplicate. If an upload fails, the entries not yet
    uploaded are written back (placeholders of created runs replaced) and the error is raised."""
    client = client or MlflowClient()
    return sum(_sync_file(file, client) for file in pending_files(root))


def _sync_file(file: Path, client: MlflowClient) -> int:
    entries = _read_pending(file)
    created: dict[str, str] = {}  # placeholder -> the id of the run created for it
    histories: dict[tuple[str, str], set[int]] = {}
    for done, entry in enumerate(entries):
        try:
            if "create" in entry:
                create = entry["create"]
                run = client.create_run(create["experiment_id"], tags=create["tags"])
                created[entry["run_id"]] = run.info.run_id
                continue
            run_id = created.get(entry["run_id"], entry["run_id"])
            metrics = []
            for metric in _metrics(entry):
                if (run_id, metric.key) not in histories:
                    history = client.get_metric_history(run_id, metric.key)
                    histories[run_id, metric.key] = {m.step for m in history}
                if metric.step not in histories[run_id, metric.key]:
                    metrics.append(metric)
                    histories[run_id, metric.key].add(metric.step)
            _log_batch(client, run_id, metrics, entry.get("params"), entry.get("tags"))
            if "artifact" in entry:
                _log_artifact(client, run_id, entry["artifact"], entry.get("artifact_path"))
            if "table" in entry:
                _log_table(client, run_id, entry["table"], entry["artifact_file"])
            if "inputs" in entry:
                client.log_inputs(run_id, _inputs(entry))
            if "status" in entry:
                client.set_terminated(run_id, entry["status"])
            if entry.get("delete"):
                client.delete_run(run_id)
        except Exception:
            remaining = [{**e, "run_id": created.get(e["run_id"], e["run_id"])} for e in entries[done:]]
            tmp = file.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(e) + "\n" for e in remaining))
            os.replace(tmp, file)
            raise
    file.unlink()
    return len(entries)
