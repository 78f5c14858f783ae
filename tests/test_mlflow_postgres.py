"""Foresight against an `mlflow server` whose backend store is a real PostgreSQL (tests/postgres.py):
a tracked run, a strategy comparison and `foresight report`, checked through the server's REST
API and, independently, by SQL on the database itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from postgres import Postgres
from test_mlflow_server import TRACK, Server, local_accuracy, run_cli

pytestmark = pytest.mark.server


def test_track_compare_and_report_on_a_postgres_backed_server(
    postgres_mlflow: Server, postgres: Postgres, tmp_path: Path
) -> None:
    server = postgres_mlflow
    done = run_cli([*TRACK, "--steps", "4", "--out", tmp_path, "--name", "run"], server)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads((tmp_path / "run" / "run.json").read_text())["run_id"]
    expected = local_accuracy(tmp_path / "run" / "trajectories" / "ioi")
    assert [s for s, _ in expected] == [0, 2, 4]
    assert server.history(run_id, "ioi/accuracy") == expected
    rows = postgres.query(
        "SELECT step, value FROM metrics WHERE run_uuid = %s AND key = 'ioi/accuracy' ORDER BY step", run_id
    )
    assert [(int(s), float(v)) for s, v in rows] == expected
    assert postgres.query("SELECT status FROM runs WHERE run_uuid = %s", run_id) == [("FINISHED",)]

    compare = ["compare", "--task", "ioi", "--strategies", "static,random", "--seeds", "2"]
    compare += ["--steps", "2", "--every", "2", "--out", tmp_path / "compare"]
    done = run_cli(compare, server)
    assert done.returncode == 0, done.stderr[-3000:]
    children = postgres.query(
        "SELECT r.run_uuid, s.value, d.value, m.value FROM runs r"
        " JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = 'strategy'"
        " JOIN tags d ON d.run_uuid = r.run_uuid AND d.key = 'seed'"
        " JOIN latest_metrics m ON m.run_uuid = r.run_uuid AND m.key = 'accuracy_after'"
        " WHERE r.status = 'FINISHED'"
    )
    assert sorted((s, int(d)) for _, s, d, _ in children) == [
        ("random", 0),
        ("random", 1),
        ("static", 0),
        ("static", 1),
    ]
    parents = {
        value for (value,) in postgres.query("SELECT value FROM tags WHERE key = 'mlflow.parentRunId'")
    }
    assert len(parents) == 1 and server.api("runs/get", run_id=parents.pop())["run"]["info"]["status"] == (
        "FINISHED"
    )

    report = run_cli(["report", "--experiment", "foresight-compare", "--out", tmp_path / "t.md"], server)
    assert report.returncode == 0, report.stderr[-3000:]
    table = (tmp_path / "t.md").read_text()
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| strategy ") and "n" in cells(line))
    columns = cells(lines[header])
    for line in lines[header + 2 : header + 4]:
        row = dict(zip(columns, cells(line), strict=True))
        accuracies = [float(v) for _, s, _, v in children if s == row["strategy"]]
        assert row["n"] == "2" and float(row["accuracy"]) == pytest.approx(sum(accuracies) / 2, abs=5e-4)
    assert sorted(cells(line)[0] for line in lines[header + 2 : header + 4]) == ["random", "static"]
    assert lines[header] in report.stdout


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]
