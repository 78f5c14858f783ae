"""The trajectory store: one run (model, task, seed, strategy) tracked over checkpoints.

Layout of a trajectory directory::

    manifest.json                      schema_version, run_id, graph, model, task, seed,
                                       strategy, config, regime (mode, strategy, lr of
                                       the training observed), created (UTC, ISO 8601)
    checkpoints/step-{step:08d}.parquet  one tidy table per checkpoint
    probe.parquet                      optional: scores after a short probe fine-tune

A checkpoint table has one row per component (level "node") or edge (level "edge")
with the columns of `CHECKPOINT_COLUMNS` and `OPTIONAL_COLUMNS` (the look-ahead derivative
of the score, `trackers.tracker`). Checkpoint-level scalars (task metric,
accuracy, loss, wall time, cadence index, ...) are stored as JSON in the Parquet
key-value metadata under `foresight.scalars` and read back as columns. Every file
is written to a temporary file in the same directory, fsynced and renamed into
place, so a crash loses at most the file being written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foresight import components
from foresight.components import KINDS
from foresight.graph import Graph
from foresight.jsonfile import read_json_object

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
CHECKPOINT_DIR = "checkpoints"
PROBE = "probe.parquet"
SCALARS_KEY = b"foresight.scalars"
TMP_SUFFIX = ".tmp"

CHECKPOINT_COLUMNS: dict[str, str] = {
    "step": "int64",
    "level": "str",
    "component": "str",
    "kind": "str",
    "layer": "int64",
    "head": "int64",
    "score": "float64",
    "grad_norm": "float64",
    "method": "str",
}
# optional: filled with NaN where a table lacks it (tables written before it existed)
OPTIONAL_COLUMNS: dict[str, str] = {"lookahead": "float64"}
LEVELS = ("node", "edge")
RUN_COLUMNS = (
    "run",
    "task",
    "seed",
    "model",
    "strategy",
    "graph",
    "regime_mode",
    "regime_strategy",
    "regime_lr",
)
# identity of a run: a resumed writer must see the same values
IDENTITY_KEYS = ("run_id", "graph", "model", "task", "seed", "strategy", "config")

_STEP_FILE = re.compile(r"step-(\d{8})\.parquet")


class TrajectoryError(ValueError):
    """A trajectory (or one of its files) that is missing, malformed or inconsistent."""


def checkpoint_file(path: str | Path, step: int) -> Path:
    """The file of checkpoint `step` in trajectory directory `path`."""
    return Path(path) / CHECKPOINT_DIR / f"step-{step:08d}.parquet"


def graph_column(graph: Graph) -> str:
    """The value of the `graph` column of a trajectory's rows: the graph's canonical JSON."""
    return json.dumps(graph.to_dict(), sort_keys=True)


def _atomic_write(path: Path, write: Any) -> None:
    """Call `write(fileobj)` on a temp file beside `path`, fsync it, rename it to `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _remove_temp_files(directory: Path) -> None:
    for tmp in directory.glob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


def _normalise(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _label(value: Any) -> str:
    """A one-string label of a model or task description (a string, or a dict with a name)."""
    if isinstance(value, Mapping):
        return str(value.get("name", json.dumps(value, sort_keys=True)))
    return str(value)


def _check_manifest(manifest: Mapping[str, Any], where: Path) -> None:
    missing = [k for k in ("run_id", "graph", "model", "task", "seed") if k not in manifest]
    if missing:
        raise TrajectoryError(f"{where}: manifest lacks {', '.join(missing)}")
    if not isinstance(manifest["graph"], Mapping):
        raise TrajectoryError(f"{where}: manifest graph must be a dict")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of trajectory directory `path` (TrajectoryError if missing, unreadable
    or of another schema version)."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise TrajectoryError(f"{path}: no {MANIFEST} (not a trajectory directory)")
    manifest = read_json_object(file, "manifest", TrajectoryError)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise TrajectoryError(
            f"{file}: schema_version {version!r}, this version of Foresight reads {SCHEMA_VERSION}"
        )
    _check_manifest(manifest, file)
    return manifest


def _clean_scalars(scalars: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Scalars as JSON: numbers, strings, bools or None; NaN becomes None (not measured)."""
    out: dict[str, Any] = {}
    for key, value in scalars.items():
        if key in CHECKPOINT_COLUMNS or key in RUN_COLUMNS:
            raise ValueError(f"{where}: scalar {key!r} would shadow a column")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(value, float) and math.isinf(value):
            raise ValueError(f"{where}: scalar {key!r} is infinite")
        elif value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"{where}: scalar {key!r} must be a number, string, bool or None")
        out[str(key)] = value
    return out


def _validate_table(table: pd.DataFrame, where: str) -> None:
    """Raise TrajectoryError for missing columns, unknown levels or kinds, duplicates or non-finite scores."""
    missing = [c for c in CHECKPOINT_COLUMNS if c not in table.columns]
    if missing:
        raise TrajectoryError(f"{where}: checkpoint table lacks column(s) {', '.join(missing)}")
    bad_level = ~table["level"].isin(LEVELS)
    if bad_level.any():
        raise TrajectoryError(f"{where}: level {table['level'][bad_level].iloc[0]!r} is not one of {LEVELS}")
    bad_kind = ~table["kind"].isin(KINDS)
    if bad_kind.any():
        raise TrajectoryError(f"{where}: kind {table['kind'][bad_kind].iloc[0]!r} is not one of {KINDS}")
    for column in ("score", "grad_norm"):
        try:
            values = table[column].to_numpy(dtype="float64")
        except (TypeError, ValueError) as e:
            raise TrajectoryError(f"{where}: column {column} is not numeric ({e})") from e
        bad = np.isinf(values) if column == "grad_norm" else ~np.isfinite(values)
        if bad.any():
            component = table["component"].iloc[int(np.flatnonzero(bad)[0])]
            raise TrajectoryError(
                f"{where}: non-finite {column} {values[bad][0]} for component {component!r}"
            )
    duplicated = table.duplicated(["level", "component"])
    if duplicated.any():
        raise TrajectoryError(f"{where}: component {table['component'][duplicated].iloc[0]!r} appears twice")


def _prepare(table: pd.DataFrame, step: int, where: str) -> pd.DataFrame:
    """The table with step and grad_norm filled in, required columns first, dtypes fixed."""
    table = table.copy()
    if "step" in table.columns and not (table["step"] == step).all():
        raise TrajectoryError(f"{where}: table has rows of another step than {step}")
    table["step"] = step
    for column in ("grad_norm", *OPTIONAL_COLUMNS):
        if column not in table.columns:
            table[column] = np.nan
    _validate_table(table, where)
    columns = {**CHECKPOINT_COLUMNS, **OPTIONAL_COLUMNS}
    extra = [c for c in table.columns if c not in columns]
    try:
        table = table[list(columns) + extra].astype(columns)
    except (TypeError, ValueError) as e:
        raise TrajectoryError(f"{where}: checkpoint columns of the wrong type ({e})") from e
    return table.reset_index(drop=True)


def _write_parquet(path: Path, table: pd.DataFrame, scalars: dict[str, Any]) -> None:
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    # the scalars and no pandas metadata (read_checkpoint sets the dtypes): a node-level checkpoint
    # takes 4.0 kB instead of 6.7
    arrow = arrow.replace_schema_metadata({SCALARS_KEY: json.dumps(scalars, allow_nan=False).encode()})
    _atomic_write(path, lambda f: pq.write_table(arrow, f))


def read_checkpoint(file: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One checkpoint (or probe) file: its table and its scalars. TrajectoryError names
    the file if it is unreadable, truncated, lacks columns, holds columns of the wrong
    type, non-finite scores or non-finite scalars."""
    file = Path(file)
    try:
        arrow = pq.read_table(file)
    except (OSError, pa.ArrowException) as e:
        raise TrajectoryError(f"{file}: unreadable Parquet file ({e})") from e
    try:
        text = (arrow.schema.metadata or {}).get(SCALARS_KEY, b"{}")
        scalars = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise TrajectoryError(f"{file}: unreadable checkpoint scalars ({e})") from e
    if not isinstance(scalars, dict):
        raise TrajectoryError(f"{file}: checkpoint scalars are not a JSON object")
    table = arrow.to_pandas()
    _validate_table(table, str(file))
    for column in OPTIONAL_COLUMNS:
        if column not in table.columns:
            table[column] = np.nan
    try:
        return table.astype({**CHECKPOINT_COLUMNS, **OPTIONAL_COLUMNS}), scalars
    except (TypeError, ValueError) as e:
        raise TrajectoryError(f"{file}: checkpoint columns of the wrong type ({e})") from e


def _reject_constant(name: str) -> float:
    """json.loads hook for NaN and +-Infinity: scalars are stored finite (NaN as null)."""
    raise ValueError(f"non-finite scalar {name}")


class TrajectoryWriter:
    """Writes one trajectory directory: the manifest once, then one file per checkpoint.

    `manifest` needs run_id, graph (a JSON-serialisable dict), model, task and seed;
    strategy (default None), config (default {}) and any other JSON-serialisable keys
    are kept. A directory that already holds a manifest or checkpoints is refused
    unless `resume` is true; then its manifest must have the same identity
    (`IDENTITY_KEYS`, graph compared by fingerprint) and writing continues after the
    checkpoints already there. Temp files left by a crash are deleted on open.
    """

    def __init__(self, path: str | Path, manifest: Mapping[str, Any], resume: bool = False) -> None:
        self.path = Path(path)
        self.checkpoint_dir = self.path / CHECKPOINT_DIR
        manifest = {"strategy": None, "config": {}, **manifest}
        _check_manifest(manifest, self.path)
        try:
            manifest = _normalise(manifest)
        except (TypeError, ValueError) as e:
            raise TrajectoryError(f"{self.path}: manifest is not JSON-serialisable ({e})") from e
        manifest["graph_fingerprint"] = Graph.from_dict(manifest["graph"]).fingerprint()
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(exist_ok=True)
        _remove_temp_files(self.path)
        _remove_temp_files(self.checkpoint_dir)
        existing = (self.path / MANIFEST).exists() or any(self.checkpoint_dir.iterdir())
        if existing and not resume:
            raise TrajectoryError(
                f"{self.path}: holds a trajectory already (pass resume=True to continue it)"
            )
        if (self.path / MANIFEST).exists():
            self.manifest = read_manifest(self.path)
            self._check_same_run(manifest)
        else:
            self.manifest = {
                "schema_version": SCHEMA_VERSION,
                **manifest,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            text = json.dumps(self.manifest, indent=2, sort_keys=True).encode()
            _atomic_write(self.path / MANIFEST, lambda f: f.write(text))

    def _check_same_run(self, manifest: Mapping[str, Any]) -> None:
        for key in IDENTITY_KEYS:
            old, new = self.manifest.get(key), manifest.get(key)
            if key == "graph":
                old, new = Graph.from_dict(old).fingerprint(), Graph.from_dict(new).fingerprint()
            if old != new:
                raise TrajectoryError(
                    f"{self.path}: cannot resume, manifest {key} differs ({old!r} != {new!r})"
                )

    def steps(self) -> list[int]:
        """Steps whose checkpoint is written, ascending."""
        return written_steps(self.path)

    def has(self, step: int) -> bool:
        """Whether checkpoint `step` is written."""
        return checkpoint_file(self.path, step).is_file()

    def write_checkpoint(self, step: int, table: pd.DataFrame, scalars: Mapping[str, Any]) -> Path:
        """Write checkpoint `step` atomically; ValueError if it is already written.

        `table` has the columns of `CHECKPOINT_COLUMNS` (step and grad_norm may be left
        out: step is filled in, grad_norm becomes NaN); extra columns are kept.
        """
        file = checkpoint_file(self.path, step)
        if step < 0:
            raise ValueError(f"{file}: step must be >= 0, not {step}")
        if file.exists():
            raise ValueError(f"{file}: checkpoint {step} is already written")
        _write_parquet(file, _prepare(table, step, str(file)), _clean_scalars(scalars, str(file)))
        return file

    def write_probe(self, table: pd.DataFrame, scalars: Mapping[str, Any], step: int = 0) -> Path:
        """Write (or replace) `probe.parquet`: scores after a short probe fine-tune started
        from checkpoint `step`, in the same columns as a checkpoint table."""
        file = self.path / PROBE
        _write_parquet(file, _prepare(table, step, str(file)), _clean_scalars(scalars, str(file)))
        return file


def scores_table(
    scores: Mapping[str, float],
    n_layers: int,
    method: str,
    grad_norms: Mapping[str, float] | None = None,
    lookahead: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """A checkpoint table (without step) from component or edge name -> score: level,
    kind, layer and head are derived from the names (`foresight.circuit_metrics` naming rules);
    grad_norm and lookahead are NaN for names missing from `grad_norms` and `lookahead`."""
    grad_norms, lookahead = grad_norms or {}, lookahead or {}
    rows = []
    for name, score in scores.items():
        kind = components.kind(name)
        layer, head = components.position(name, n_layers)
        level = "edge" if kind == "edge" else "node"
        grad_norm, ahead = grad_norms.get(name, np.nan), lookahead.get(name, np.nan)
        rows.append((level, name, kind, layer, head, score, grad_norm, method, ahead))
    types = {c: t for c, t in {**CHECKPOINT_COLUMNS, **OPTIONAL_COLUMNS}.items() if c != "step"}
    return pd.DataFrame(rows, columns=list(types)).astype(types)


def written_steps(path: Path) -> list[int]:
    """Steps whose checkpoint file is in trajectory directory `path`, ascending."""
    directory = path / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for f in directory.iterdir() if (m := _STEP_FILE.fullmatch(f.name)))


def regime_of(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The training regime a trajectory observed: {mode, strategy, lr} from the manifest's
    `regime`; a manifest without one (written before regimes were recorded) is read as
    `trackers.run.track` wrote it: free full SFT at its config's lr; else all None."""
    if "regime" in manifest:
        return dict(manifest["regime"])
    config = manifest.get("config") or {}
    if manifest.get("strategy") == "free" and "lr" in config:
        return {"mode": "full", "strategy": "free", "lr": config["lr"]}
    return {"mode": None, "strategy": None, "lr": None}


def _with_run_columns(
    table: pd.DataFrame, manifest: Mapping[str, Any], scalars: Mapping[str, Any]
) -> pd.DataFrame:
    regime = regime_of(manifest)
    run = {
        "run": str(manifest["run_id"]),
        "task": _label(manifest["task"]),
        "seed": manifest["seed"],
        "model": _label(manifest["model"]),
        "strategy": manifest.get("strategy"),
        "graph": graph_column(Graph.from_dict(manifest["graph"])),
        "regime_mode": regime["mode"],
        "regime_strategy": regime["strategy"],
        "regime_lr": np.nan if regime["lr"] is None else float(regime["lr"]),
    }
    front = pd.DataFrame(run, index=table.index)
    back = pd.DataFrame(dict(scalars), index=table.index)
    return pd.concat([front, table, back], axis=1)


def _check_no_gap(path: Path, manifest: Mapping[str, Any], steps: Sequence[int]) -> None:
    """TrajectoryError if a checkpoint that the tracker's cadence (manifest `tracker`: every,
    or its list of steps) puts before the last written one has no file: a lost file would
    otherwise shift every later checkpoint's index."""
    tracker = manifest.get("tracker")
    if not steps or not isinstance(tracker, Mapping):
        return
    if tracker.get("steps") is not None:
        expected = sorted({0, *tracker["steps"]})
    elif isinstance(tracker.get("every"), int) and tracker["every"] > 0:
        expected = list(range(0, steps[-1] + 1, tracker["every"]))
    else:
        return
    missing = [step for step in expected if step <= steps[-1] and step not in steps]
    if missing:
        raise TrajectoryError(
            f"{checkpoint_file(path, missing[0])}: missing (the run has checkpoints after it)"
        )


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=[*RUN_COLUMNS, *CHECKPOINT_COLUMNS, *OPTIONAL_COLUMNS])


def load_trajectory(path: str | Path) -> pd.DataFrame:
    """Every checkpoint of one trajectory as one table: columns run, task, seed, model,
    strategy, graph (`graph_column`), the checkpoint columns (step, level, component, ...),
    then one column per checkpoint scalar (NaN where a checkpoint lacks it). Rows are ordered by step."""
    path = Path(path)
    manifest = read_manifest(path)
    steps = written_steps(path)
    _check_no_gap(path, manifest, steps)
    frames = [_load_step(path, manifest, step) for step in steps]
    if not frames:
        return _empty()
    return pd.concat(frames, ignore_index=True)


def load_checkpoint(path: str | Path, step: int) -> pd.DataFrame:
    """Checkpoint `step` of one trajectory in the columns of `load_trajectory` (what a reader
    that follows a trajectory as it grows appends, instead of reading it all again)."""
    path = Path(path)
    return _load_step(path, read_manifest(path), step)


def _load_step(path: Path, manifest: Mapping[str, Any], step: int) -> pd.DataFrame:
    file = checkpoint_file(path, step)
    table, scalars = read_checkpoint(file)
    if not (table["step"] == step).all():
        raise TrajectoryError(f"{file}: holds rows of another step than {step}")
    return _with_run_columns(table, manifest, scalars)


def load_probe(path: str | Path) -> pd.DataFrame | None:
    """The probe table of a trajectory (same columns as `load_trajectory`), or None if it has none."""
    path = Path(path)
    manifest = read_manifest(path)
    if not (path / PROBE).is_file():
        return None
    table, scalars = read_checkpoint(path / PROBE)
    return _with_run_columns(table, manifest, scalars)


def find_trajectories(root: str | Path) -> list[Path]:
    """Every trajectory directory (one holding a manifest.json) under `root`, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise TrajectoryError(f"{root}: no such directory")
    return sorted(m.parent for m in root.rglob(MANIFEST))


def load_trajectories(root: str | Path) -> pd.DataFrame:
    """Every trajectory under `root` (found recursively) as one table, in the columns of
    `load_trajectory`. TrajectoryError if two directories hold the same run id."""
    frames, seen = [], {}
    for path in find_trajectories(root):
        run = str(read_manifest(path)["run_id"])
        if run in seen:
            raise TrajectoryError(f"{path}: run id {run!r} is also used by {seen[run]}")
        seen[run] = path
        frames.append(load_trajectory(path))
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty()
    return pd.concat(frames, ignore_index=True)
