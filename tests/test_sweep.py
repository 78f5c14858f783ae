"""Sweeps on Ray (`foresight.sweep`, `foresight sweep`): a 2 task x 2 strategy x 2 seed sweep of
the shipped default model on a local Ray of 2 workers, one of which is killed mid-trial (by the
test strategy `dying_strategy.DiesOnce`); the counts are MLflow's own (search_runs), not what the
sweep returns. Then bad sweep configs."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from dying_strategy import DiesOnce, ship_by_value
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from test_bad_input import Result, assert_one_error_line, cli, free_port  # noqa: F401 (cli: a fixture)

from foresight.report import report
from foresight.sweep import SWEEP_KEY, SweepConfig, Trial, _clear, run_sweep
from foresight.updater.config import FinetuneConfig

TASKS, STRATEGIES, SEEDS = ("ioi", "gender"), ("free", DiesOnce.name), (0, 1)
SMALL = {"steps": 2, "every": 1, "batch_size": 8, "n_pairs": 8, "n_eval": 16, "save_model": False}
CONFIG = {"experiment": "sweep-test", "tasks": list(TASKS), "strategies": list(STRATEGIES)}
CONFIG |= {"seeds": list(SEEDS), "out": "runs", "finetune": SMALL}
GRID = {(t, s, str(seed)) for t in TASKS for s in STRATEGIES for seed in SEEDS}


def all_runs(experiment_id: str) -> list:
    """Every run of the experiment, deleted ones too."""
    return MlflowClient().search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=1000)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The sweep, run once: the first dies-once trial to reach step 1 kills its worker."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "sweep.json").write_text(json.dumps(CONFIG))
    marker = root / "died"
    ship_by_value()
    with pytest.MonkeyPatch.context() as mp:
        uri = f"sqlite:///{root}/mlflow.db"
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setattr(DiesOnce, "marker", str(marker))
        mp.chdir(root)
        mlflow.set_tracking_uri(uri)
        experiment_id = mlflow.create_experiment(CONFIG["experiment"], artifact_location=str(root / "art"))
        config = SweepConfig(
            CONFIG["experiment"], TASKS, STRATEGIES, SEEDS, FinetuneConfig(**SMALL), root / "runs"
        )
        result = run_sweep(config, workers=2, progress=False)
    return SimpleNamespace(
        root=root, uri=uri, marker=marker, experiment_id=experiment_id, result=result,
        runs=all_runs(experiment_id),
    )  # fmt: skip


def test_every_trial_is_one_finished_child_run_under_its_task_parent(swept: SimpleNamespace) -> None:
    client = MlflowClient(swept.uri)
    parents = client.search_runs([swept.experiment_id], "tags.mlflow.parentRunId IS NULL")
    assert sorted(p.data.tags[SWEEP_KEY] for p in parents) == sorted(TASKS)
    cells = []
    for parent in parents:
        assert parent.info.status == "FINISHED"
        assert parent.data.params["task"] == parent.data.tags["task"]
        children = client.search_runs(
            [swept.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        assert len(children) == 4
        for run in children:
            tags = run.data.tags
            assert run.info.status == "FINISHED" and tags["task"] == parent.data.tags["task"]
            assert tags[SWEEP_KEY] == f"{tags['task']}/{tags['strategy']}/s{tags['seed']}"
            assert {"accuracy_before", "accuracy_after", "wall_s"} <= run.data.metrics.keys()
            assert run.data.params["steps"] == "2" and int(run.data.params["trainable_parameters"]) > 0
            cells.append((tags["task"], tags["strategy"], tags["seed"]))
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert "comparison.md" in artifacts
    assert len(cells) == 8 and set(cells) == GRID


def test_the_killed_trial_was_retried_and_logged_once(swept: SimpleNamespace) -> None:
    key = swept.marker.read_text()  # the trial whose worker died at step 1
    assert key.split("/")[0] in TASKS and key.split("/")[1] == DiesOnce.name
    mine = [r for r in swept.runs if r.data.tags.get(SWEEP_KEY) == key]
    # the dead worker's partial run (deleted by the retry) and the retry's finished one
    assert sorted((r.info.lifecycle_stage, r.info.status) for r in mine) == [
        ("active", "FINISHED"),
        ("deleted", "RUNNING"),
    ]
    deleted = [r for r in swept.runs if r.info.lifecycle_stage == "deleted"]
    assert len(deleted) == 1 and len(swept.runs) == 2 + 8 + 1
    assert sorted(swept.result.ran) == sorted(f"{t}/{s}/s{seed}" for t, s, seed in GRID)


def test_the_report_reads_the_sweep(swept: SimpleNamespace) -> None:
    mlflow.set_tracking_uri(swept.uri)
    text = report(CONFIG["experiment"])
    assert "| ioi " in text and "| gender " in text
    assert [line for line in text.splitlines() if line.startswith("| free ")][0].split("|")[3].strip() == "4"


def test_running_the_sweep_again_logs_nothing_and_other_settings_are_refused(
    swept: SimpleNamespace,
    cli: Callable[..., Result],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", swept.uri)
    monkeypatch.chdir(swept.root)
    before = {r.info.run_id: (r.info.status, r.info.lifecycle_stage) for r in swept.runs}
    done = cli("sweep", swept.root / "sweep.json", "--workers", "2")
    assert done.code == 0, done.err
    assert "0 trials run, 8 finished before, 0 failed" in done.out
    changed = _write(swept.root, "changed.json", json.dumps({**CONFIG, "finetune": {**SMALL, "steps": 3}}))
    assert_one_error_line(cli("sweep", changed, "--workers", "2"), "params differ from the logged ones")
    mlflow.set_tracking_uri(swept.uri)
    after = {r.info.run_id: (r.info.status, r.info.lifecycle_stage) for r in all_runs(swept.experiment_id)}
    assert after == before


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


def _toml(**changes: object) -> str:
    """CONFIG as TOML, with `changes` (None: the key left out)."""
    config = {k: v for k, v in ({**CONFIG, **changes}).items() if v is not None}
    lines = [f"{k} = {json.dumps(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, values in ((k, v) for k, v in config.items() if isinstance(v, dict)):
        lines += [f"[{table}]", *(f"{k} = {json.dumps(v)}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


# (id, config file name, its text, extra arguments, fragments of the error line)
BAD = [
    ("missing-file", "nope.toml", None, [], ["nope.toml: no such file"]),
    (
        "not-toml-or-json",
        "sweep.yaml",
        "tasks: [ioi]\n",
        [],
        ["sweep.yaml: a sweep config is a .toml or .json"],
    ),
    ("invalid-toml", "sweep.toml", "tasks = [ioi\n", [], ["sweep.toml: not valid TOML"]),
    ("invalid-json", "sweep.json", "{oops", [], ["sweep.json: not valid JSON"]),
    ("unknown-key", "sweep.toml", _toml(workers=2), [], ["sweep.toml: unknown key 'workers'"]),
    ("missing-seeds", "sweep.toml", _toml(seeds=None), [], ["sweep.toml: missing key 'seeds'"]),
    ("seed-not-int", "sweep.toml", _toml(seeds=[0, "1"]), [], ["seeds must be a non-empty list of integers"]),
    ("seed-twice", "sweep.toml", _toml(seeds=[1, 1]), [], ["seeds lists a seed twice"]),
    ("seed-negative", "sweep.toml", _toml(seeds=[-1]), [], ["seeds: -1: must be in 0..4294967295"]),
    ("unknown-strategy", "sweep.toml", _toml(strategies=["free", "bogus"]), [], ["unknown strategy 'bogus'"]),
    ("unknown-task", "sweep.toml", _toml(tasks=["ioi", "nosuch"]), [], ["unknown task 'nosuch'"]),
    (
        "steps-zero",
        "sweep.toml",
        _toml(finetune={**SMALL, "steps": 0}),
        [],
        ["finetune.steps: must be at least 1, not 0"],
    ),
    (
        "steps-text",
        "sweep.toml",
        _toml(finetune={"steps": "ten"}),
        [],
        ["finetune.steps 'ten': must be of type int"],
    ),
    ("unknown-setting", "sweep.toml", _toml(finetune={"stepz": 3}), [], ["finetune.stepz: unknown setting"]),
    (
        "components-too-many",
        "sweep.toml",
        _toml(finetune={"components": 999}),
        [],
        ["finetune.components 999"],
    ),
    ("retries-negative", "sweep.toml", _toml(retries=-1), [], ["retries must be an integer of at least 0"]),
    (
        "forecasting-without-forecaster",
        "sweep.toml",
        _toml(strategies=["predictive"], finetune={**SMALL, "steps": 4}),
        [],
        ["need finetune.forecaster or forecasters.ioi"],
    ),
    (
        "predictive-that-never-switches",
        "sweep.toml",
        _toml(strategies=["predictive"], finetune={**SMALL, "every": 2}),
        [],
        ["finetune.every: 2 is not below steps (2): strategy predictive would never re-select"],
    ),
    ("workers-zero", "sweep.toml", _toml(), ["--workers", "0"], ["--workers must be at least 1, not 0"]),
    (
        "workers-and-address",
        "sweep.toml",
        _toml(),
        ["--workers", "2", "--address", "auto"],
        ["--workers sets"],
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "extra", "fragments"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_a_bad_sweep_gives_one_error_line_and_writes_nothing(
    cli: Callable[..., Result],  # noqa: F811
    tmp_path: Path,
    name: str,
    text: str | None,
    extra: list[str],
    fragments: list[str],
) -> None:
    config = tmp_path / name if text is None else _write(tmp_path, name, text)
    before = sorted(tmp_path.iterdir())
    assert_one_error_line(cli("sweep", config, *extra), *fragments)
    assert sorted(tmp_path.iterdir()) == before  # no MLflow store, no out directory


def test_without_ray_the_sweep_says_how_to_install_it(
    cli: Callable[..., Result],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    config = _write(tmp_path, "sweep.toml", _toml())
    assert_one_error_line(cli("sweep", config), "not installed: pip install 'foresight-circuits[ray]'")
    assert sorted(tmp_path.iterdir()) == [config]


def test_an_unreachable_tracking_server_fails_before_anything_is_written(
    cli: Callable[..., Result],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = _write(tmp_path, "sweep.toml", _toml())
    assert_one_error_line(
        cli("sweep", config, "--workers", "2"), f"MLflow tracking server {uri} is not reachable"
    )
    assert sorted(tmp_path.iterdir()) == [config]


def test_clear_deletes_only_the_unfinished_runs_and_directories_of_the_trials_to_run(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("clear", artifact_location=str(tmp_path / "art"))
    parent, other = (client.create_run(experiment_id).info.run_id for _ in range(2))
    todo, done = Trial("ioi", "static", 0), Trial("ioi", "free", 0)

    def child(trial: Trial, status: str, under: str = parent) -> str:
        tags = {SWEEP_KEY: trial.key, "mlflow.parentRunId": under}
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        client.set_terminated(run_id, status)
        return run_id

    stale = [child(todo, "RUNNING"), child(todo, "FAILED")]
    kept = [child(todo, "FINISHED"), child(done, "FAILED"), child(todo, "FAILED", under=other)]
    for trial in (todo, done):
        (trial.directory(tmp_path / "out") / "x").mkdir(parents=True)
    _clear(client, experiment_id, {"ioi": parent}, [todo], tmp_path / "out")
    stages = {r: client.get_run(r).info.lifecycle_stage for r in stale + kept}
    assert stages == {**dict.fromkeys(stale, "deleted"), **dict.fromkeys(kept, "active")}
    assert not todo.directory(tmp_path / "out").exists() and done.directory(tmp_path / "out").exists()
