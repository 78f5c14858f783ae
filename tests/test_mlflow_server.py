"""`foresight track` against a real `mlflow server` (SQLite backend, proxied artifacts on
127.0.0.1), checked through the server's REST API; then the server is killed in the middle
of a run, of a `compare` and of a `sweep`, and `foresight sync` uploads what they missed to
the restarted server: child runs, parents, summaries and figures.

Starting a server takes about 10 s; the module shares one (about 1-2 min in all)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from foresight.mlflow_log import PENDING_FILE
from trackers.store import load_trajectory

pytestmark = pytest.mark.server

CLI = [sys.executable, "-m", "foresight.app.cli"]
TRACK = ["track", "--task", "ioi", "--every", "2", "--n-pairs", "8", "--batch-size", "8"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """An `mlflow server` in its own process group, restartable on the same port and backend."""

    def __init__(self, root: Path, backend: str | None = None) -> None:
        """`backend`: the backend store URI (default: SQLite in `root`); artifacts go to `root`."""
        self.root = root
        self.backend = backend or f"sqlite:///{root}/mlflow.db"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> None:
        port = self.url.rsplit(":", 1)[1]
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", port, "--workers", "1",
            "--backend-store-uri", self.backend,
            "--artifacts-destination", str(self.root / "artifacts"),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job workers
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = (self.root / "server.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not come up at {self.url}:\n{tail}")
            time.sleep(0.25)

    def kill(self) -> None:
        """SIGKILL the server's process group (the server and its uvicorn worker)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def api(self, endpoint: str, **params: str) -> dict:
        """GET /api/2.0/mlflow/{endpoint} with query `params`, as JSON."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/2.0/mlflow/{endpoint}?{query}", timeout=30) as r:
            return json.loads(r.read())

    def artifact(self, run_id: str, path: str) -> bytes:
        query = urllib.parse.urlencode({"path": path, "run_uuid": run_id})
        with urllib.request.urlopen(f"{self.url}/get-artifact?{query}", timeout=30) as r:
            return r.read()

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        metrics = self.api("metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])
        return sorted((int(m["step"]), float(m["value"])) for m in metrics)

    def files(self, run_id: str, path: str) -> list[str]:
        listing = self.api("artifacts/list", run_id=run_id, path=path).get("files", [])
        return sorted(f["path"] for f in listing)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.kill()


def run_cli(args: list[object], server: Server, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MLFLOW_TRACKING_URI": server.url, **env}
    return subprocess.run(
        [*CLI, *map(str, args)], env=environment, capture_output=True, text=True, timeout=400
    )


def local_accuracy(trajectory: Path) -> list[tuple[int, float]]:
    table = load_trajectory(trajectory)
    per_step = table.groupby("step")["accuracy"].first()
    return [(int(step), float(value)) for step, value in per_step.items()]


def test_track_logs_params_metrics_and_the_trajectory_to_the_server(server: Server, tmp_path: Path) -> None:
    done = run_cli([*TRACK, "--steps", "4", "--out", tmp_path, "--name", "run"], server)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "run"
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    assert f"MLflow run {run_id} in {server.url}" in done.stdout

    run = server.api("runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert {k: params[k] for k in ("model", "tasks", "steps", "every", "n_pairs", "batch_size")} == {
        "model": "default", "tasks": "ioi", "steps": "4", "every": "2", "n_pairs": "8", "batch_size": "8",
    }  # fmt: skip
    trajectory = run_dir / "trajectories" / "ioi"
    assert server.history(run_id, "ioi/accuracy") == local_accuracy(trajectory)
    assert [s for s, _ in server.history(run_id, "ioi/accuracy")] == [0, 2, 4]
    assert [s for s, _ in server.history(run_id, "ioi/circuit_distance/to_start/all")] == [0, 2, 4]
    losses = [s for s, _ in server.history(run_id, "train/loss")]
    assert losses and len(losses) == len(set(losses))

    assert "trajectories/ioi" in server.files(run_id, "trajectories")
    checkpoints = server.files(run_id, "trajectories/ioi/checkpoints")
    assert checkpoints == [f"trajectories/ioi/checkpoints/step-{s:08d}.parquet" for s in (0, 2, 4)]
    for name in ("manifest.json", "checkpoints/step-00000004.parquet"):
        assert server.artifact(run_id, f"trajectories/ioi/{name}") == (trajectory / name).read_bytes()
    assert "figures/ioi/head_scores.png" in server.files(run_id, "figures/ioi")
    assert not (run_dir / PENDING_FILE).exists()


OFFLINE_FAST = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # fail at once on a dead server, not after minutes
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
SMALL = ["--steps", "2", "--every", "2", "--batch-size", "8", "--components", "4"]


def kill_when(server: Server, started: Path, command: list[object], timeout: float = 400) -> str:
    """Run the CLI `command` against `server`, SIGKILL the server once `started` exists, wait
    for the command and restart the server (same port and backend); returns its stderr."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, **OFFLINE_FAST}
    process = subprocess.Popen(
        [*CLI, *map(str, command)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killed = False
    try:
        deadline = time.monotonic() + timeout
        while not started.exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, f"no {started} in time"
            time.sleep(0.05)
        server.kill()
        killed = True
        _, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
        if killed:  # else it still runs: a second one could not take its port
            server.start()
    assert process.returncode == 0, err[-3000:]
    return err


def test_server_lost_mid_run_then_sync_uploads_what_it_missed(server: Server, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "trajectories" / "ioi" / "checkpoints"
    # steps 0 and 2 are logged; the rest of the run goes on without a server
    err = kill_when(
        server,
        checkpoints / "step-00000002.parquet",
        [*TRACK, "--steps", "8", "--out", tmp_path, "--name", "run"],
    )
    assert err.count("MLflow logging failed") == 1, err[-3000:]
    assert f"foresight sync {run_dir}" in err
    trajectory = run_dir / "trajectories" / "ioi"
    expected = local_accuracy(trajectory)
    assert [s for s, _ in expected] == [0, 2, 4, 6, 8]  # the local trajectory is complete

    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    before = server.history(run_id, "ioi/accuracy")
    assert before == expected[: len(before)] and len(before) < len(expected)
    queued = [json.loads(line) for line in (run_dir / PENDING_FILE).read_text().splitlines()]
    assert {e["run_id"] for e in queued} == {run_id}
    assert any(e.get("artifact_path") == "trajectories" for e in queued)

    synced = run_cli(["sync", run_dir], server)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert f"uploaded {len(queued)} queued entries" in synced.stdout
    assert not (run_dir / PENDING_FILE).exists()
    assert server.history(run_id, "ioi/accuracy") == expected  # every step once, none doubled
    assert server.api("runs/get", run_id=run_id)["run"]["info"]["status"] == "FINISHED"  # queued, synced
    for key in ("train/loss", "ioi/circuit_distance/to_previous/all", "ioi/faithfulness"):
        steps = [s for s, _ in server.history(run_id, key)]
        assert len(steps) == len(set(steps)) and steps, key
    assert server.files(run_id, "trajectories/ioi/checkpoints") == [
        f"trajectories/ioi/checkpoints/step-{s:08d}.parquet" for s in (0, 2, 4, 6, 8)
    ]
    assert (
        server.artifact(run_id, "trajectories/ioi/checkpoints/step-00000008.parquet")
        == (trajectory / "checkpoints" / "step-00000008.parquet").read_bytes()
    )
    again = run_cli(["sync", run_dir], server)
    assert again.returncode == 0 and "uploaded 0 queued entries" in again.stdout
    assert len(server.history(run_id, "ioi/accuracy")) == len(expected)


def assert_synced_comparison(server: Server, out: Path, parent: dict, trials: set[tuple[str, str]]) -> None:
    """`parent` (a runs/search entry) ended FINISHED with its comparison (metrics, description,
    tables, figure and report equal to the local files) and one FINISHED child per trial."""
    client = MlflowClient(server.url)
    run_id, experiment_id = parent["info"]["run_id"], parent["info"]["experiment_id"]
    assert parent["info"]["status"] == "FINISHED"
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted((c.data.tags["strategy"], c.data.tags["seed"]) for c in children) == sorted(trials)
    for child in children:
        assert child.info.status == "FINISHED" and child.info.run_name == "{strategy}-s{seed}".format(
            **child.data.tags
        )
        assert {"accuracy_before", "accuracy_after", "wall_s"} <= child.data.metrics.keys()
    logged = client.get_run(run_id).data
    assert logged.tags["mlflow.note.content"] == (out / "comparison.md").read_text()
    assert {f"accuracy_after/{s}/mean" for s, _ in trials} <= logged.metrics.keys()
    for name in ("comparison.md", "comparison/accuracy.png"):
        assert server.artifact(run_id, name) == (out / name).read_bytes(), name
    summary = json.loads(server.artifact(run_id, "comparison/summary.json"))
    local = json.loads((out / "comparison" / "summary.json").read_text())
    assert summary["columns"] == local["columns"] and summary["data"] == local["data"]


def search(server: Server, experiment: str, filter_string: str) -> list[dict]:
    """runs/search of experiment `experiment` (by name) through the REST API."""
    experiment_id = server.api("experiments/get-by-name", experiment_name=experiment)["experiment"]
    body = json.dumps({"experiment_ids": [experiment_id["experiment_id"]], "filter": filter_string})
    request = urllib.request.Request(
        f"{server.url}/api/2.0/mlflow/runs/search", body.encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read()).get("runs", [])


def test_server_lost_mid_compare_then_sync_uploads_parent_children_and_summary(
    server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "compare"
    command = [
        "compare",
        "--task",
        "ioi",
        "--strategies",
        "free,static",
        "--seeds",
        "2",
        *SMALL,
        "--out",
        out,
    ]
    err = kill_when(server, out / "free-s1" / "run_id", command)  # free-s0 is logged, the rest is not
    assert err.count("MLflow logging failed") == 1, err[-3000:]
    assert f"foresight sync {out}" in " ".join(err.split())
    assert (out / "static-s1" / "run_id").read_text().startswith("pending-")  # created offline

    synced = run_cli(["sync", out], server)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert not list(out.rglob(PENDING_FILE))
    (parent,) = search(
        server, "foresight-compare", "tags.task = 'ioi' and attributes.run_name = 'compare-ioi'"
    )
    assert_synced_comparison(
        server, out, parent, {(s, str(seed)) for s in ("free", "static") for seed in (0, 1)}
    )


def test_server_lost_mid_sweep_then_sync_uploads_trials_parent_and_summary(
    server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    config = {
        "experiment": "sweep-offline",
        "tasks": ["ioi"],
        "strategies": ["free", "static"],
        "seeds": [0, 1],
    }
    config |= {
        "out": str(out),
        "finetune": {
            "steps": 2,
            "every": 2,
            "n_pairs": 8,
            "n_eval": 16,
            "batch_size": 8,
            "save_model": False,
        },
    }
    file = tmp_path / "sweep.json"
    file.write_text(json.dumps(config))
    err = kill_when(server, out / "ioi" / "free-s1" / "run_id", ["sweep", file, "--workers", "1"])
    assert f"foresight sync {out}" in " ".join(err.split()), err[-3000:]
    assert (out / "ioi" / "static-s1" / "run_id").read_text().startswith("pending-")  # created offline

    synced = run_cli(["sync", out], server)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert not list(out.rglob(PENDING_FILE))
    (parent,) = search(server, "sweep-offline", "tags.sweep_key = 'ioi'")
    assert_synced_comparison(
        server, out / "ioi", parent, {(s, str(seed)) for s in ("free", "static") for seed in (0, 1)}
    )
    again = run_cli(["sweep", file, "--workers", "1"], server)  # the synced sweep is complete
    assert again.returncode == 0 and "0 trials run, 4 finished before, 0 failed" in again.stdout, (
        again.stderr[-3000:]
    )
