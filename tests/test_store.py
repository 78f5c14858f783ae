"""The trajectory store: round trip, atomicity, resume and the errors it reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from trackers.store import (
    CHECKPOINT_COLUMNS,
    OPTIONAL_COLUMNS,
    TrajectoryError,
    TrajectoryWriter,
    checkpoint_file,
    load_probe,
    load_trajectories,
    load_trajectory,
    read_checkpoint,
    read_manifest,
    scores_table,
)

GRAPH = {"n_layers": 2, "n_heads": 2, "parallel": False, "granularity": "block"}


def manifest(run_id: str = "run-a", **extra: object) -> dict:
    return {
        "run_id": run_id,
        "graph": GRAPH,
        "model": {"name": "default", "n_params": 1000},
        "task": "ioi",
        "seed": 3,
        "strategy": "free",
        "config": {"lr": 1e-4, "steps": 30},
        **extra,
    }


def table(offset: float = 0.0) -> pd.DataFrame:
    scores = {"embed": 1.0, "a0.h0": 0.5, "a1.h1": -2.0, "m0": 0.25, "logits": 0.0, "a0.h0->m1": 0.125}
    return scores_table({k: v + offset for k, v in scores.items()}, 2, "eap", grad_norms={"m0": 3.0})


def write_run(path: Path, run_id: str = "run-a", steps: tuple[int, ...] = (0, 10)) -> TrajectoryWriter:
    writer = TrajectoryWriter(path, manifest(run_id))
    for i, step in enumerate(steps):
        writer.write_checkpoint(
            step, table(offset=step), {"accuracy": 0.5 + i / 10, "loss": 2.0, "cadence": i}
        )
    return writer


def test_scores_table_derives_positions() -> None:
    t = table()
    assert list(t.columns) == [*(c for c in CHECKPOINT_COLUMNS if c != "step"), *OPTIONAL_COLUMNS]
    row = t.set_index("component")
    assert row.loc["a1.h1", ["kind", "layer", "head"]].tolist() == ["head", 1, 1]
    assert row.loc["logits", ["kind", "layer", "head"]].tolist() == ["logits", 2, -1]
    assert row.loc["a0.h0->m1", ["level", "kind", "layer", "head"]].tolist() == ["edge", "edge", 0, 0]
    assert row.loc["m0", "grad_norm"] == 3.0 and math.isnan(row.loc["embed", "grad_norm"])


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run-a"
    writer = write_run(path)
    assert writer.steps() == [0, 10] and writer.has(10) and not writer.has(5)
    assert checkpoint_file(path, 10).name == "step-00000010.parquet"

    m = read_manifest(path)
    assert m["schema_version"] == 1 and m["run_id"] == "run-a" and m["graph"] == GRAPH
    assert m["config"] == {"lr": 1e-4, "steps": 30} and "created" in m and len(m["graph_fingerprint"]) == 64

    df = load_trajectory(path)
    run_columns = [
        "run",
        "task",
        "seed",
        "model",
        "strategy",
        "graph",
        *(f"regime_{k}" for k in ("mode", "strategy", "lr")),
    ]
    assert list(df.columns) == [
        *run_columns,
        *CHECKPOINT_COLUMNS,
        *OPTIONAL_COLUMNS,
        "accuracy",
        "loss",
        "cadence",
    ]
    assert set(df["regime_mode"]) == {"full"} and set(df["regime_lr"]) == {
        1e-4
    }  # read as trackers.run wrote it
    assert df["lookahead"].isna().all()
    assert len(df) == 12 and df["step"].tolist() == [0] * 6 + [10] * 6
    assert set(df["run"]) == {"run-a"} and set(df["model"]) == {"default"} and set(df["task"]) == {"ioi"}
    assert set(df["seed"]) == {3} and set(df["strategy"]) == {"free"}
    for column, dtype in CHECKPOINT_COLUMNS.items():
        assert df[column].dtype == dtype, column
    at10 = df[df["step"] == 10].set_index("component")
    assert at10.loc["a1.h1", "score"] == pytest.approx(8.0)  # -2 + 10
    assert at10.loc["a1.h1", "accuracy"] == pytest.approx(0.6)
    assert (df.groupby("step")["cadence"].first() == [0, 1]).all()

    # scalars are in the Parquet key-value metadata as JSON too
    meta = pq.read_schema(checkpoint_file(path, 10)).metadata[b"foresight.scalars"]
    assert json.loads(meta) == {"accuracy": 0.6, "loss": 2.0, "cadence": 1}


def test_nan_scalar_is_stored_as_null_and_extra_columns_kept(tmp_path: Path) -> None:
    writer = TrajectoryWriter(tmp_path / "r", manifest())
    writer.write_checkpoint(0, table().assign(rank=np.arange(6)), {"loss": float("nan"), "wall_time": 1.5})
    df = load_trajectory(tmp_path / "r")
    assert df["rank"].tolist() == list(range(6))
    assert df["loss"].isna().all() and (df["wall_time"] == 1.5).all()
    with pytest.raises(ValueError, match="infinite"):
        writer.write_checkpoint(1, table(), {"loss": float("inf")})
    with pytest.raises(ValueError, match="shadow"):
        writer.write_checkpoint(1, table(), {"score": 1.0})


def test_probe_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r"
    writer = write_run(path, steps=(0,))
    assert load_probe(path) is None
    writer.write_probe(table(offset=1.0), {"probe_steps": 5, "probe_lr": 1e-5})
    probe = load_probe(path)
    assert probe is not None and (probe["step"] == 0).all()
    assert probe.set_index("component").loc["m0", "score"] == pytest.approx(1.25)
    assert (probe["probe_steps"] == 5).all() and (probe["run"] == "run-a").all()
    assert load_trajectory(path)["step"].tolist() == [0] * 6  # the probe is not a checkpoint


def test_writing_an_existing_step_raises(tmp_path: Path) -> None:
    writer = write_run(tmp_path / "r")
    with pytest.raises(ValueError, match="already written"):
        writer.write_checkpoint(10, table(), {})


def test_invalid_tables_are_refused(tmp_path: Path) -> None:
    writer = TrajectoryWriter(tmp_path / "r", manifest())
    with pytest.raises(TrajectoryError, match="lacks column.*method"):
        writer.write_checkpoint(0, table().drop(columns="method"), {})
    bad = table()
    bad.loc[bad["component"] == "m0", "score"] = np.nan
    with pytest.raises(TrajectoryError, match=r"step-00000000\.parquet.*'m0'"):
        writer.write_checkpoint(0, bad, {})
    with pytest.raises(TrajectoryError, match="appears twice"):
        writer.write_checkpoint(0, pd.concat([table(), table().iloc[:1]]), {})
    with pytest.raises(TrajectoryError, match="another step"):
        writer.write_checkpoint(0, table().assign(step=5), {})
    assert writer.steps() == []


def test_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajectoryError, match=f"{tmp_path / 'empty'}.*no manifest.json"):
        load_trajectory(tmp_path / "empty")


def test_wrong_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "r"
    write_run(path)
    m = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**m, "schema_version": 2}))
    with pytest.raises(TrajectoryError, match="manifest.json: schema_version 2"):
        load_trajectory(path)


def test_truncated_parquet_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r"
    write_run(path)
    file = checkpoint_file(path, 10)
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(TrajectoryError, match=r"step-00000010\.parquet: unreadable"):
        load_trajectory(path)


def test_non_finite_score_on_disk_names_file_and_component(tmp_path: Path) -> None:
    path = tmp_path / "r"
    write_run(path)
    file = checkpoint_file(path, 0)
    t = pq.read_table(file).to_pandas()
    t.loc[t["component"] == "a1.h1", "score"] = np.inf
    t.to_parquet(file)
    with pytest.raises(TrajectoryError, match=r"step-00000000\.parquet.*'a1.h1'"):
        read_checkpoint(file)
    t.drop(columns="kind").to_parquet(file)
    with pytest.raises(TrajectoryError, match=r"step-00000000\.parquet.*lacks column.*kind"):
        load_trajectory(path)


def test_crash_leftover_temp_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "r"
    write_run(path, steps=(0,))
    # a crash in the middle of writing step 10 leaves a partial temp file behind
    leftover = path / "checkpoints" / ".step-00000010.parquet.abc123.tmp"
    leftover.write_bytes(checkpoint_file(path, 0).read_bytes()[:100])
    assert load_trajectory(path)["step"].unique().tolist() == [0]
    writer = TrajectoryWriter(path, manifest(), resume=True)
    assert not leftover.exists()  # cleaned on open
    assert writer.steps() == [0] and not writer.has(10)


def test_resume_continues_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "r"
    write_run(path, steps=(0, 10))
    created = read_manifest(path)["created"]
    with pytest.raises(TrajectoryError, match="holds a trajectory already"):
        TrajectoryWriter(path, manifest())
    writer = TrajectoryWriter(path, manifest(), resume=True)
    for step in (0, 10, 20):  # what a resumed tracker does: skip what is there
        if not writer.has(step):
            writer.write_checkpoint(step, table(offset=step), {"accuracy": 0.9, "loss": 1.0, "cadence": 2})
    df = load_trajectory(path)
    assert df.groupby("step").size().to_dict() == {0: 6, 10: 6, 20: 6}
    assert not df.duplicated(["step", "level", "component"]).any()
    assert read_manifest(path)["created"] == created


@pytest.mark.parametrize(
    ("key", "value"), [("graph", {**GRAPH, "n_layers": 3}), ("config", {"lr": 1.0}), ("seed", 4)]
)
def test_resume_refuses_another_run(tmp_path: Path, key: str, value: object) -> None:
    path = tmp_path / "r"
    write_run(path)
    with pytest.raises(TrajectoryError, match=f"manifest {key} differs"):
        TrajectoryWriter(path, {**manifest(), key: value}, resume=True)


def test_resume_on_fresh_directory_creates_it(tmp_path: Path) -> None:
    writer = TrajectoryWriter(tmp_path / "new", manifest(), resume=True)
    assert writer.steps() == [] and read_manifest(tmp_path / "new")["run_id"] == "run-a"
    assert load_trajectory(tmp_path / "new").empty


def test_load_trajectories_unions_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "ioi" / "seed0", "run-a", steps=(0, 10))
    write_run(tmp_path / "gt" / "nested" / "seed1", "run-b", steps=(0, 5, 10))
    (tmp_path / "stray").mkdir()
    df = load_trajectories(tmp_path)
    assert len(df) == 6 * 5
    assert df.groupby("run")["step"].unique().map(list).to_dict() == {"run-a": [0, 10], "run-b": [0, 5, 10]}
    assert not df.duplicated(["run", "step", "level", "component"]).any()
    write_run(tmp_path / "copy", "run-a", steps=(0,))
    with pytest.raises(TrajectoryError, match="run id 'run-a' is also used"):
        load_trajectories(tmp_path)
    with pytest.raises(TrajectoryError, match="no such directory"):
        load_trajectories(tmp_path / "missing")
