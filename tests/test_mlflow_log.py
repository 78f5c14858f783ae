"""MLflow logging helpers against a temporary SQLite store."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from foresight.figures import head_score_matrix, log_figures, plot_metrics
from foresight.mlflow_log import (
    PENDING_FILE,
    PLACEHOLDER,
    SafeLogger,
    TrackingUnavailable,
    check_reachable,
    resolve_tracking_uri,
    start_run,
    sync,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One temporary SQLite tracking store for the module (creating one takes seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    previous = tracking_utils._tracking_uri  # the explicit URI (None: unset), not its default
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    mlflow.create_experiment("foresight-test", artifact_location=str(root / "artifacts"))
    yield root
    mlflow.set_tracking_uri(previous)


def history(run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient().get_metric_history(run_id, key))


def new_run(name: str) -> str:
    with start_run("foresight-test", name, params={"task": "ioi"}) as run:
        return run.info.run_id


def test_resolve_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert resolve_tracking_uri() == "http://mlflow.example:5000"


def _serve(health: int, api: int = 200) -> http.server.HTTPServer:
    """A local HTTP server answering /health with status `health`, the REST API with `api`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            status = health if self.path == "/health" else api if self.path.startswith("/api/") else 404
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("health", "api", "error"),
    [
        (200, 200, None),
        (503, 200, r"answered http://127\.0\.0\.1:\d+/health with HTTP 503"),
        (200, 503, r"answered http://127\.0\.0\.1:\d+/api/2\.0/mlflow/experiments/search.* with HTTP 503"),
    ],
)
def test_check_reachable_probes_health_and_the_api(health: int, api: int, error: str | None) -> None:
    server = _serve(health, api)
    try:
        if error is None:
            check_reachable(f"http://127.0.0.1:{server.server_port}/")
        else:
            with pytest.raises(TrackingUnavailable, match=error):
                check_reachable(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()


def test_check_reachable_passes_local_stores_and_names_a_dead_port() -> None:
    check_reachable("sqlite:///nowhere/mlflow.db")  # local stores are not probed
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingUnavailable, match=rf"127\.0\.0\.1:{port} is not reachable"):
        check_reachable(f"http://127.0.0.1:{port}", timeout=1)


def test_params_metrics_and_artifacts_round_trip(store: Path, tmp_path: Path) -> None:
    params = {"task": "ioi", "lora": {"rank": 8, "alpha": 16.0}}
    with start_run("foresight-test", "roundtrip", params=params, tags={"strategy": "static"}) as run:
        for step, value in [(0, 0.5), (10, 0.25), (20, 0.125)]:
            mlflow.log_metrics({"cd_vs_start_all": value, "accuracy": 1 - value}, step=step)
        table = pd.DataFrame({"step": [0, 10, 20], "cd_vs_start_all": [0.0, 2 / 3, 1.0]})
        heads = pd.DataFrame([[1.0, -2.0], [0.5, 0.0]], index=["a0.h0", "a0.h1"], columns=[0, 10])
        paths = log_figures(SafeLogger(run.info.run_id, tmp_path), table, tmp_path / "figs", heads)
    run_id = run.info.run_id
    data = MlflowClient().get_run(run_id).data
    assert data.params == {"task": "ioi", "lora.rank": "8", "lora.alpha": "16.0"}
    assert data.tags["strategy"] == "static"
    assert history(run_id, "cd_vs_start_all") == [(0, 0.5), (10, 0.25), (20, 0.125)]
    assert history(run_id, "accuracy") == [(0, 0.5), (10, 0.75), (20, 0.875)]
    assert [p.name for p in paths] == ["circuit_distance.png", "head_scores.png"]
    logged = {Path(a.path).name for a in MlflowClient().list_artifacts(run_id, "figures")}
    assert logged == {"circuit_distance.png", "head_scores.png"}
    assert (store / "artifacts").is_dir()


def test_resume_by_run_id_does_not_duplicate_steps(store: Path, tmp_path: Path) -> None:
    run_id = new_run("resume")
    logger = SafeLogger(run_id, tmp_path)
    for step in range(3):
        logger.log_metrics({"loss": 10.0 - step}, step)
    # the run is resumed from a checkpoint at step 1: steps 1..4 are replayed
    with start_run("foresight-test", params={"task": "ioi"}, run_id=run_id) as resumed:
        assert resumed.info.run_id == run_id
        logger = SafeLogger(run_id, tmp_path)
        for step in range(1, 5):
            logger.log_metrics({"loss": 100.0 + step}, step)
    assert history(run_id, "loss") == [(0, 10.0), (1, 9.0), (2, 8.0), (3, 103.0), (4, 104.0)]
    assert not (tmp_path / PENDING_FILE).exists()
    with pytest.raises(ValueError, match="params differ"):
        start_run("foresight-test", params={"task": "gt"}, run_id=run_id)


def test_safe_logger_goes_offline_and_sync_uploads(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = new_run("offline")
    client = MlflowClient()
    logger = SafeLogger(run_id, tmp_path, client)
    logger.log_metrics({"accuracy": 0.5}, 0)
    calls = []

    def server_gone(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise ConnectionError("server went away")

    monkeypatch.setattr(client, "log_batch", server_gone)
    with caplog.at_level(logging.WARNING, logger="foresight.mlflow_log"):
        logger.log_metrics({"accuracy": 0.75, "loss": 2.0}, 10)
        logger.log_params({"probe": {"lr": 1e-5}})
        logger.log_metrics({"accuracy": 0.875}, 20)
    assert logger.offline
    assert len(calls) == 1  # no further calls to a server that is gone
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "server went away" in warnings[0].getMessage()

    lines = [json.loads(line) for line in (tmp_path / PENDING_FILE).read_text().splitlines()]
    assert len(lines) == 3 and {e["run_id"] for e in lines} == {run_id}
    assert history(run_id, "accuracy") == [(0, 0.5)]

    monkeypatch.undo()
    assert sync(tmp_path) == 3
    assert not (tmp_path / PENDING_FILE).exists()
    assert history(run_id, "accuracy") == [(0, 0.5), (10, 0.75), (20, 0.875)]
    assert history(run_id, "loss") == [(10, 2.0)]
    assert MlflowClient().get_run(run_id).data.params["probe.lr"] == "1e-05"
    assert sync(tmp_path) == 0


def test_sync_failure_keeps_what_is_left_and_retry_does_not_duplicate(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run("partial")
    entries = [{"run_id": run_id, "metrics": [["cc", 0.1 * s, 1000 + s, s]]} for s in range(4)]
    text = "".join(json.dumps(e) + "\n" for e in entries) + '{"run_id": "cut short'
    (tmp_path / PENDING_FILE).write_text(text)
    client = MlflowClient()
    real_log_batch = client.log_batch
    calls = 0

    def flaky(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionError("server went away")
        real_log_batch(*args, **kwargs)

    monkeypatch.setattr(client, "log_batch", flaky)
    with pytest.raises(ConnectionError):
        sync(tmp_path, client)
    left = (tmp_path / PENDING_FILE).read_text().splitlines()
    assert [json.loads(line)["metrics"][0][3] for line in left] == [2, 3]
    assert sync(tmp_path, client) == 2
    assert history(run_id, "cc") == [(s, pytest.approx(0.1 * s)) for s in range(4)]


def test_plot_metrics_and_head_matrix(tmp_path: Path) -> None:
    metrics = pd.DataFrame({"step": [10, 0], "cd_vs_start_all": [0.5, 0.0], "cs_ratio": [0.8, 1.0]})
    paths = plot_metrics(metrics, tmp_path)
    assert [p.name for p in paths] == ["circuit_distance.png", "circuit_stability.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)

    rows = [
        (step, "node", name, kind, layer, head, score)
        for step, offset in [(5, 0.0), (0, 1.0)]
        for name, kind, layer, head, score in [
            ("a1.h0", "head", 1, 0, 1.0),
            ("m0", "mlp", 0, -1, 9.0),
            ("a0.h1", "head", 0, 1, 2.0),
            ("a0.h0", "head", 0, 0, 3.0),
        ]
        for score in [score + offset]
    ]
    trajectory = pd.DataFrame(rows, columns=["step", "level", "component", "kind", "layer", "head", "score"])
    matrix = head_score_matrix(trajectory)
    assert matrix.index.tolist() == ["a0.h0", "a0.h1", "a1.h0"]
    assert matrix.columns.tolist() == [0, 5]
    assert matrix.to_numpy().tolist() == [[4.0, 3.0], [3.0, 2.0], [2.0, 1.0]]


def test_a_child_run_created_offline_is_created_by_sync_once_even_if_sync_fails_half_way(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent_id = new_run("parent")
    client = MlflowClient()
    experiment_id = client.get_run(parent_id).info.experiment_id
    parent = SafeLogger(parent_id, tmp_path, client, experiment_id)

    def server_gone(*args: object, **kwargs: object) -> None:
        raise ConnectionError("server went away")

    monkeypatch.setattr(client, "create_run", server_gone)
    child = parent.new_run("static-s0", {"strategy": "static"}, tmp_path / "child")
    assert child.run_id.startswith(PLACEHOLDER) and parent.offline and child.offline
    child.log_metrics({"accuracy_after": 0.75}, 0)
    child.log_table(pd.DataFrame({"strategy": ["static"], "accuracy": [0.75]}), "comparison/summary.json")
    dataset = Dataset("train.jsonl", "d1g35t", "local", '{"uri": "/data/train.jsonl"}')
    child.log_inputs([DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])
    child.end_run("FINISHED")
    monkeypatch.undo()

    set_terminated, calls = client.set_terminated, []

    def fails_once(*args: object, **kwargs: object) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionError("server went away again")
        set_terminated(*args, **kwargs)

    monkeypatch.setattr(client, "set_terminated", fails_once)
    with pytest.raises(ConnectionError, match="again"):
        sync(tmp_path, client)
    left = [json.loads(line) for line in (tmp_path / "child" / PENDING_FILE).read_text().splitlines()]
    assert [e.get("status") for e in left] == ["FINISHED"]  # the status is left, under the new id
    assert not left[0]["run_id"].startswith(PLACEHOLDER)
    assert sync(tmp_path, client) == 1
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 1 and children[0].info.run_id == left[0]["run_id"]
    run = children[0]
    assert (run.info.run_name, run.info.status, run.data.tags["strategy"]) == (
        "static-s0",
        "FINISHED",
        "static",
    )
    assert run.data.metrics == {"accuracy_after": 0.75}
    (logged,) = run.inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest, logged.tags[0].value) == (
        "train.jsonl",
        "d1g35t",
        "training",
    )
    table = client.load_table(experiment_id, "comparison/summary.json", run_ids=[run.info.run_id])
    assert table[["strategy", "accuracy"]].to_dict("list") == {"strategy": ["static"], "accuracy": [0.75]}
    assert not list(tmp_path.rglob(PENDING_FILE))
