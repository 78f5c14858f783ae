"""CircuitTracker end to end: a real Trainer run, the trajectory on disk, the
metrics in MLflow, and resume after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from foresight.architectures import graph_of
from foresight.attribution import attribute, faithfulness
from foresight.encoding import encode_pairs
from foresight.models import load_model
from foresight.sft import SFTConfig, make_trainer
from foresight.tasks import get_task
from trackers.run import track
from trackers.store import checkpoint_file, load_trajectories, load_trajectory, read_checkpoint
from trackers.tracker import CircuitTracker, TrackerSettings

SETTINGS = TrackerSettings(every=2, n_pairs=8, n_eval=16, circuit_size=3)


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root, ./mlruns, lands in the temp dir
    return uri


def test_tracked_trainer_run_writes_trajectories_and_mlflow_metrics(
    tmp_path: Path, tiny_model_dir: Path, mlflow_store: str
) -> None:
    sft = SFTConfig(steps=4, batch_size=8, examples_per_task=64, lr=1e-2)
    result = track(["ioi", "gender"], tmp_path / "run", str(tiny_model_dir), sft, SETTINGS)
    table = load_trajectories(tmp_path / "run" / "trajectories")
    assert sorted(table.task.unique()) == ["gender", "ioi"]
    assert sorted(table.step.unique()) == [0, 2, 4]
    assert set(table.level) == {"node", "edge"} and table.score.notna().all()
    client = MlflowClient(mlflow_store)
    for key in (
        "ioi/accuracy",
        "gender/circuit_distance/to_start/all",
        "ioi/circuit_stability/to_start",
        "ioi/circuit_conflict/with_gender",
        "gender/circuit_conflict/with_ioi",
    ):
        assert [m.step for m in client.get_metric_history(result.run_id, key)] == [0, 2, 4], key
    start = client.get_metric_history(result.run_id, "ioi/circuit_distance/to_start/all")[0].value
    assert start == 0.0  # the step-0 circuit against itself
    run = client.get_run(result.run_id)
    assert run.data.params["tasks"] == "ioi,gender" and run.data.params["every"] == "2"
    assert run.info.status == "FINISHED"
    assert "`TASK/circuit_distance/to_start/heads`" in run.data.tags["mlflow.note.content"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"trajectories", "figures"} <= artifacts


def test_step0_node_scores_equal_a_direct_node_attribution(
    tmp_path: Path, tiny_model_dir: Path, mlflow_store: str
) -> None:
    """The tracker derives node scores from one edge pass; an independent node-level
    attribution of the untouched model must give the same numbers."""
    sft = SFTConfig(steps=1, batch_size=8, examples_per_task=16)
    track(["ioi"], tmp_path / "run", str(tiny_model_dir), sft, SETTINGS)
    table = load_trajectories(tmp_path / "run" / "trajectories")
    stored = table[(table.step == 0) & (table.level == "node")].set_index("component").score
    model, tokenizer = load_model(tiny_model_dir)
    pairs = encode_pairs(tokenizer, get_task("ioi").attribution_pairs(SETTINGS.n_pairs, seed=SETTINGS.seed))
    direct = attribute(model, pairs, level="node").as_dict()
    np.testing.assert_allclose([stored[c] for c in direct], list(direct.values()), rtol=1e-4, atol=1e-6)


def test_step0_faithfulness_equals_a_direct_faithfulness_of_the_stored_circuit(
    tmp_path: Path, tiny_model_dir: Path, mlflow_store: str
) -> None:
    """The tracker measures faithfulness on the runs its attribution pass made; running
    the pairs afresh on the untouched model must give the same number."""
    sft = SFTConfig(steps=1, batch_size=8, examples_per_task=16)
    track(["ioi"], tmp_path / "run", str(tiny_model_dir), sft, SETTINGS)
    trajectory = tmp_path / "run" / "trajectories" / "ioi"
    table, scalars = read_checkpoint(checkpoint_file(trajectory, 0))
    nodes = table[(table.level == "node") & table.kind.isin(["head", "mlp"])].set_index("component").score
    stored = sorted(nodes.abs().sort_values(ascending=False).index[: SETTINGS.circuit_size])
    model, tokenizer = load_model(tiny_model_dir)
    pairs = get_task("ioi").attribution_pairs(SETTINGS.n_pairs, seed=SETTINGS.seed)
    direct = faithfulness(model, pairs, stored, tokenizer=tokenizer)
    assert np.isfinite(direct) and scalars["faithfulness"] == pytest.approx(direct, rel=1e-5, abs=1e-7)


def test_background_checkpoints_equal_checkpoints_taken_in_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A background checkpoint is taken on a copy of the model at its step, while training
    goes on: the trajectory must equal the one of the same run tracked in line."""
    sft = SFTConfig(steps=6, batch_size=8, examples_per_task=64, lr=1e-2)
    tables = []
    for background in (False, True):
        model, tokenizer = load_model(tiny_model_dir)
        task = get_task("ioi")
        manifest = {"run_id": f"run-{background}", "model": "tiny", "seed": 0}
        out = tmp_path / str(background)
        tracker = CircuitTracker(
            [task], tokenizer, graph_of(model), out, manifest, SETTINGS, background=background
        )
        torch.manual_seed(sft.seed)
        make_trainer(model, tokenizer, [task], sft, tmp_path / f"trainer-{background}", [tracker]).train()
        tables.append(load_trajectory(out / "ioi").sort_values(["step", "component"], ignore_index=True))
    in_line, background = tables
    assert in_line.step.unique().tolist() == [0, 2, 4, 6]
    np.testing.assert_allclose(background.score, in_line.score, rtol=1e-5, atol=1e-8)
    assert (background.component == in_line.component).all()


def test_resume_after_sigkill_completes_the_trajectory_once(
    tmp_path: Path, tiny_model_dir: Path, mlflow_store: str
) -> None:
    command = [
        sys.executable, "-m", "foresight.app.cli", "track", "--task", "ioi", "--model", str(tiny_model_dir),
        "--steps", "8", "--every", "2", "--batch-size", "8", "--n-pairs", "8", "--circuit-size", "3",
        "--out", str(tmp_path), "--name", "run",
    ]  # fmt: skip
    checkpoints = tmp_path / "run" / "trajectories" / "ioi" / "checkpoints"
    process = subprocess.Popen(
        command, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while not (checkpoints / "step-00000004.parquet").exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint 4 in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (checkpoints / "step-00000008.parquet").exists(), "the run finished before it was killed"
    resumed = subprocess.run([*command, "--resume"], env=os.environ.copy(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    table = load_trajectories(tmp_path / "run" / "trajectories")
    per_step = table[table.level == "node"].groupby("step").component.count()
    assert per_step.index.tolist() == [0, 2, 4, 6, 8] and per_step.nunique() == 1
    run_id = json.loads((tmp_path / "run" / "run.json").read_text())["run_id"]
    client = MlflowClient(mlflow_store)
    # the resumed process continued the same MLflow run: it says so, and no other run exists
    assert f"MLflow run {run_id} in" in resumed.stdout
    experiment = client.get_run(run_id).info.experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment])] == [run_id]
    history = client.get_metric_history(run_id, "ioi/accuracy")
    assert sorted(m.step for m in history) == [0, 2, 4, 6, 8]
    # no metric has a step twice, though the steps between the last Trainer checkpoint and
    # the kill were trained and logged twice
    keys = client.get_run(run_id).data.metrics
    assert {
        "train/loss",
        "ioi/accuracy",
        "ioi/circuit_distance/to_start/all",
        "ioi/circuit_stability/to_previous",
    } <= set(keys)
    for key in keys:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), (key, sorted(steps))
    assert max(m.step for m in client.get_metric_history(run_id, "train/loss")) == 8
