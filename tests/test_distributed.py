"""DDP on 2 CPU processes (gloo): `foresight track` under torchrun and `foresight finetune`
under torchrun and accelerate launch give what one process gives with the same global batch
(per-process batch halved), write one MLflow run, and a run whose rank 1 is SIGKILLed
resumes with every checkpoint once.

Tolerance: DDP averages the two halves' gradients instead of taking one mean over the
batch, so float32 sums run in another order. Each column of the trajectory and each weight
tensor agrees to 1e-3 of its own scale (max |a - b| <= 1e-3 max |b|; measured: under 1e-4),
while six steps of training move the scores by about half their scale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from trackers.store import load_trajectory

pytestmark = pytest.mark.server  # starts subprocesses for a minute or two
SCALE_TOLERANCE = 1e-3
TRACK = ["--task", "ioi", "--steps", "6", "--every", "2", "--n-pairs", "8", "--circuit-size", "3"]
TRACK += ["--save-model"]  # the tests compare the saved weights
COLUMNS = ["score", "grad_norm", "accuracy", "metric", "faithfulness"]


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # MLflow's ./mlruns artifacts land in the temp dir
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "OMP_NUM_THREADS": "1"}


def torchrun(n: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]


def foresight(launcher: list[str], *args: object, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*launcher, "-m", "foresight.app.cli", *map(str, args), "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(directory: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in load_file(directory / "model.safetensors").items()}


def assert_close(actual: np.ndarray, desired: np.ndarray, what: str) -> None:
    """max |actual - desired| <= SCALE_TOLERANCE x max |desired| (NaN where desired is NaN)."""
    actual, desired = np.asarray(actual, dtype=float), np.asarray(desired, dtype=float)
    assert (np.isnan(actual) == np.isnan(desired)).all(), what
    scale = np.nanmax(np.abs(desired))
    assert np.nanmax(np.abs(actual - desired)) <= SCALE_TOLERANCE * scale, what


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert_close(wa[key], wb[key], key)


def test_ddp_track_equals_one_process_with_the_same_global_batch(
    tmp_path: Path, tiny_model_dir: Path, env: dict[str, str]
) -> None:
    one = [sys.executable]
    common = [*TRACK, "--model", tiny_model_dir, "--out", tmp_path]
    foresight(one, "track", *common, "--batch-size", 8, "--name", "single", env=env)
    done = foresight(torchrun(2), "track", *common, "--batch-size", 4, "--name", "ddp", env=env)
    assert done.stdout.count("MLflow run") == 1  # rank 0 alone reports
    single = load_trajectory(tmp_path / "single" / "trajectories" / "ioi")
    ddp = load_trajectory(tmp_path / "ddp" / "trajectories" / "ioi")
    assert ddp.step.unique().tolist() == [0, 2, 4, 6]
    pd.testing.assert_frame_equal(ddp[["step", "component"]], single[["step", "component"]])
    for column in COLUMNS:
        assert_close(ddp[column], single[column], column)
    trained = weights(tmp_path / "ddp" / "model")
    initial = weights(tiny_model_dir)
    assert any(np.abs(trained[k] - initial[k]).max() > 1e-3 for k in initial)  # it did train
    assert_same_weights(tmp_path / "ddp" / "model", tmp_path / "single" / "model")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (experiment,) = client.search_experiments(filter_string="name = 'foresight-track'")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["ddp", "single"]
    assert {r.info.run_name: r.data.params["processes"] for r in runs} == {"ddp": "2", "single": "1"}


def rank_pid(agent: int, rank: int) -> int | None:
    """The pid of the worker of `rank` that the torchrun agent `agent` started, if running."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == agent and f"RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    return None


def test_ddp_track_resumes_after_a_rank_is_killed(
    tmp_path: Path, tiny_model_dir: Path, env: dict[str, str]
) -> None:
    args = ["track", "--task", "ioi", "--model", tiny_model_dir, "--steps", "10", "--every", "2"]
    args += ["--n-pairs", "8", "--circuit-size", "3", "--batch-size", "4", "--out", tmp_path, "--name", "run"]
    command = [*torchrun(2), "-m", "foresight.app.cli", *map(str, args), "--device", "cpu"]
    checkpoints = tmp_path / "run" / "trajectories" / "ioi" / "checkpoints"
    agent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (checkpoints / "step-00000004.parquet").exists():
        assert agent.poll() is None, agent.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint 4 in time"
        time.sleep(0.05)
    victim = rank_pid(agent.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    assert agent.wait(timeout=120) != 0  # torchrun ends the run when a rank dies
    assert not (checkpoints / "step-00000010.parquet").exists(), "the run finished before the kill"
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    table = load_trajectory(tmp_path / "run" / "trajectories" / "ioi")
    per_step = table[table.level == "node"].groupby("step").component.count()
    assert per_step.index.tolist() == [0, 2, 4, 6, 8, 10] and per_step.nunique() == 1
    run_id = json.loads((tmp_path / "run" / "run.json").read_text())["run_id"]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_run(run_id).info.experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment])] == [run_id]
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in client.get_run(run_id).data.metrics:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), (key, sorted(steps))


@pytest.mark.parametrize(
    ("strategy", "launcher"),
    [
        ("dynamic", "accelerate"),  # re-selects: rank 0's set reaches rank 1
        ("oracle", "torchrun"),  # trains its free reference under DDP first
    ],
)
def test_ddp_finetune_equals_one_process(
    tmp_path: Path, tiny_model_dir: Path, env: dict[str, str], strategy: str, launcher: str
) -> None:
    ddp_launcher = torchrun(2)
    if launcher == "accelerate":  # on a machine without GPUs the processes form a gloo group
        ddp_launcher = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes=2",
        ]
        ddp_launcher += ["--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no"]
    args = ["finetune", "--task", "ioi", "--strategy", strategy, "--model", tiny_model_dir, "--steps", "6"]
    args += ["--every", "2", "--components", "3", "--lr", "1e-2"]
    single = foresight([sys.executable], *args, "--batch-size", 8, "--out", tmp_path / "single", env=env)
    ddp = foresight(ddp_launcher, *args, "--batch-size", 4, "--out", tmp_path / "ddp", env=env)
    assert ddp.stdout.count("components:") == 1
    chosen = [line for line in single.stdout.splitlines() if line.startswith("components:")]
    assert chosen == [line for line in ddp.stdout.splitlines() if line.startswith("components:")]
    assert_same_weights(tmp_path / "ddp" / "model", tmp_path / "single" / "model")
