"""Strategy fine-tuning and comparisons on a tiny random Llama (2 layers, 4 heads, width 32)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from synthetic import synthetic_trajectories

import foresight.updater.finetune as ft
from foresight.architectures import graph_of
from foresight.architectures.parameters import ComponentMap
from foresight.models import load_model
from foresight.updater import FinetuneConfig, kind_counts
from foresight.updater.compare import Comparison, compare
from foresight.updater.finetune import FinetuneResult, finetune
from predictors.baselines import Last
from predictors.persist import save_forecaster
from predictors.problem import ForecastProblem, split_runs
from predictors.strategies import Predictive  # noqa: F401  (registers the forecasting strategies)
from trackers.store import load_trajectory

HEAD_DIM = 32 // 4
FAST = {"components": 3, "steps": 4, "batch_size": 8, "lr": 1e-2, "every": 2, "n_pairs": 8, "n_eval": 16}
EVERYTHING = {f"a{layer}.h{head}" for layer in range(2) for head in range(4)} | {"m0", "m1"}


def weights(path: str | Path) -> dict[str, torch.Tensor]:
    return dict(load_model(path)[0].state_dict())


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path) -> SimpleNamespace:
    """The untrained weights and the component map of the tiny model."""
    model = load_model(tiny_model_dir)[0]
    return SimpleNamespace(state=dict(model.state_dict()), map=ComponentMap(model))


def moved(base: SimpleNamespace, tuned: dict[str, torch.Tensor], component: str) -> bool:
    """Whether any weight entry that `component` owns changed."""
    masks = base.map.parameter_masks([component])
    return any(bool((tuned[k] != base.state[k])[m].any()) for k, m in masks.items())


def scripted_attribution(monkeypatch: pytest.MonkeyPatch, first: set[str], later: set[str], n_first: int):
    """Replace eap in finetune: the first `n_first` calls rank `first` on top, later calls `later`."""
    calls: list[int] = []

    def stub(model, pairs, method="eap", level="node"):  # noqa: ANN001
        calls.append(1)
        top = first if len(calls) <= n_first else later
        scores = {n: 2.0 if n in top else 0.1 for n in graph_of(model).node_names()}
        return SimpleNamespace(as_dict=lambda: scores)

    monkeypatch.setattr(ft, "attribute", stub)


@pytest.fixture(scope="module")
def static_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> FinetuneResult:
    config = FinetuneConfig(strategy="static", model=str(tiny_model_dir), **FAST)
    return finetune("gender", config, tmp_path_factory.mktemp("static"))


def test_static_lora_changes_only_the_selected_slices(
    static_run: FinetuneResult, base: SimpleNamespace
) -> None:
    selected = set(static_run.components)
    assert len(selected) == 3 and static_run.trainable_parameters > 0
    assert list(static_run.metrics["step"]) == [0, 2, 4]
    tuned = weights(Path(static_run.out_dir) / "model")
    region = base.map.parameter_masks(selected)
    for key, value in base.state.items():
        if key in region:
            assert torch.equal(tuned[key][~region[key]], value[~region[key]]), key
        else:
            assert torch.equal(tuned[key], value), key
    for component in selected:
        assert moved(base, tuned, component), component
    head = next(c for c in sorted(selected) if c.startswith("a"))
    layer, index = int(head[1]), int(head.split(".h")[1])
    rows = slice(index * HEAD_DIM, (index + 1) * HEAD_DIM)
    q, o = f"model.layers.{layer}.self_attn.q_proj.weight", f"model.layers.{layer}.self_attn.o_proj.weight"
    before = base.state
    assert not torch.equal(tuned[q][rows], before[q][rows]) and not torch.equal(
        tuned[o][:, rows], before[o][:, rows]
    )
    others = [h for h in range(4) if f"a{layer}.h{h}" not in selected]
    for h in others:
        rows = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
        assert torch.equal(tuned[q][rows], before[q][rows]) and torch.equal(
            tuned[o][:, rows], before[o][:, rows]
        )


@pytest.fixture(scope="module")
def comparison(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Comparison:
    tmp = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.create_experiment("foresight-compare", artifact_location=str(tmp / "artifacts"))
        scripted_attribution(mp, {"a0.h0", "a1.h1", "m0"}, {"a0.h0", "a1.h1", "m0"}, n_first=0)  # eap is slow
        config = FinetuneConfig(model=str(tiny_model_dir), **{**FAST, "steps": 2})
        return compare("gender", ["free", "static", "random"], [0, 1], config, tmp / "runs")


def test_compare_logs_one_child_per_strategy_and_seed(comparison: Comparison, tiny_model_dir: Path) -> None:
    client = MlflowClient()
    parent = client.get_run(comparison.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{comparison.run_id}'"
    )
    tags = sorted((r.data.tags["strategy"], r.data.tags["seed"], r.data.tags["task"]) for r in children)
    assert tags == sorted((s, str(seed), "gender") for s in ("free", "static", "random") for seed in (0, 1))
    for run in children:
        assert run.data.params["mode"] == "lora" and int(run.data.params["trainable_parameters"]) > 0
        params = run.data.params
        assert (params["task"], params["strategy"], params["seed"]) == tuple(
            run.data.tags[k] for k in ("task", "strategy", "seed")
        )
        assert (params["model"], params["steps"], params["lr"]) == (str(tiny_model_dir), "2", "0.01")
        finals = [
            client.get_metric_history(run.info.run_id, k) for k in ("accuracy_before", "accuracy_after")
        ]
        assert [[m.step for m in history] for history in finals] == [[0], [0]]  # one value: a bar
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "gender/accuracy")]
        assert steps == [0, 2]  # the names of a tracked run's metrics (foresight.metric_names)
        assert client.get_metric_history(run.info.run_id, "gender/circuit_distance/to_updated")
        assert client.get_metric_history(run.info.run_id, "train/loss")
    artifacts = {a.path for a in client.list_artifacts(comparison.run_id, "comparison")}
    assert artifacts == {f"comparison/{f}" for f in ("accuracy.png", "summary.json", "paired_tests.json")}
    assert "comparison.md" in {a.path for a in client.list_artifacts(comparison.run_id)}
    metrics = parent.data.metrics
    for row in comparison.table.itertuples():
        assert metrics[f"accuracy_after/{row.strategy}/mean"] == round(row.accuracy, 4)
        assert metrics[f"accuracy_after/{row.strategy}/ci_low"] == round(row.ci_low, 4)
        assert metrics[f"accuracy_after/{row.strategy}/ci_high"] == round(row.ci_high, 4)
    assert parent.data.tags["mlflow.note.content"] == comparison.markdown
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert list(comparison.table["strategy"]) == ["free", "static", "random"]
    assert (comparison.table["n"] == 2).all() and (
        comparison.table["ci_low"] <= comparison.table["ci_high"]
    ).all()
    assert [tuple(r) for r in comparison.tests[["a", "b", "n"]].itertuples(index=False)] == [
        ("static", "random", 2),
        ("static", "free", 2),
        ("random", "free", 2),
    ]
    assert "n = 2 seeds is small" in comparison.markdown


def test_random_selects_as_many_heads_and_mlps_as_static(comparison: Comparison) -> None:
    by = {(r.strategy, r.seed): r for r in comparison.results}
    for seed in (0, 1):
        assert kind_counts(by["random", seed].components) == kind_counts(by["static", seed].components)
        assert set(by["free", seed].components) == EVERYTHING
        assert by["free", seed].trainable_parameters > by["static", seed].trainable_parameters


def test_dynamic_reselection_takes_effect_on_the_next_step(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path, base: SimpleNamespace
) -> None:
    first, later = {"a0.h0", "a0.h1", "m0"}, {"a0.h2", "a1.h3", "m1"}
    scripted_attribution(monkeypatch, first, later, n_first=2)  # the static pick and the step-0 check
    result = finetune(
        "gender", FinetuneConfig(strategy="dynamic", model=str(tiny_model_dir), **FAST), tmp_path
    )
    assert result.selections == {0: sorted(first), 2: sorted(later)}
    assert list(result.metrics["cd_selected"]) == [0.0, 1.0, 0.0]
    tuned = weights(tmp_path / "model")
    for component in first | later:
        assert moved(base, tuned, component), component
    for component in EVERYTHING - first - later:
        assert not moved(base, tuned, component), component


def test_metrics_cadence_is_separate_from_the_reselection_cadence(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path
) -> None:
    first, later = {"a0.h0", "a0.h1", "m0"}, {"a0.h2", "a1.h3", "m1"}
    scripted_attribution(monkeypatch, first, later, n_first=2)
    config = FinetuneConfig(
        strategy="dynamic", model=str(tiny_model_dir), log_every=4, save_model=False, **FAST
    )
    result = finetune("gender", config, tmp_path)
    assert result.selections == {0: sorted(first), 2: sorted(later)}  # reselected at step 2 ...
    assert list(result.metrics.dropna(subset=["accuracy"])["step"]) == [0, 4]  # ... logged at 0 and 4
    assert list(result.metrics.dropna(subset=["accuracy"])["cd_selected"]) == [0.0, 0.0]


def test_last_reselects_once_at_the_switch_step(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path
) -> None:
    first, later = {"a0.h0", "a0.h1", "m0"}, {"a0.h2", "a1.h3", "m1"}
    scripted_attribution(monkeypatch, first, later, n_first=2)  # the static pick and the step-0 check
    config = FinetuneConfig(
        strategy="last",
        model=str(tiny_model_dir),
        warmup_checkpoints=2,
        save_model=False,
        **{**FAST, "steps": 6},
    )
    result = finetune("gender", config, tmp_path)
    assert result.selections == {0: sorted(first), 2: sorted(later)}  # checkpoint k = 1 is step 2; not again


def test_predictive_switches_to_the_forecast_of_its_tracked_trajectory(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The warm-up is tracked by CircuitTracker (the corpus' code path): every feature input is
    there (gradient norms too), and the switch takes the `last` forecast of what was stored."""
    runs = split_runs(
        synthetic_trajectories(tasks=("t0",), seeds=(0, 1), n_layers=2, n_heads=4, n_checkpoints=4)[0]
    )
    save_forecaster(
        Last(ForecastProblem(prefix=1, horizon=1, circuit_size=3)).fit(runs), tmp_path / "forecaster"
    )
    first = {"a0.h0", "a0.h1", "m0"}
    scripted_attribution(monkeypatch, first, first, n_first=2)  # the monitor's eap only
    config = FinetuneConfig(
        strategy="predictive", model=str(tiny_model_dir), forecaster=str(tmp_path / "forecaster"), **FAST
    )
    result = finetune("gender", config, tmp_path / "run")
    rows = load_trajectory(tmp_path / "run/trajectory/gender")
    assert sorted(rows.step.unique()) == [0, 2]  # the warm-up: checkpoints k = 0, 1; none after the switch
    nodes = rows[(rows.level == "node") & (rows.step == 2)].set_index("component")
    forecast = set(nodes.score.abs().drop(["embed", "logits"]).sort_values(ascending=False).index[:3])
    assert result.selections[0] == sorted(first) and result.selections[2] == sorted(forecast)
    members = nodes.kind.isin(["head", "mlp"])
    assert nodes.grad_norm[members].notna().all() and (nodes.grad_norm[members] > 0).all()


def test_gradient_placement_switches_to_the_largest_gradient_norms(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = {"a0.h0", "a0.h1", "m0"}
    scripted_attribution(monkeypatch, first, first, n_first=2)
    calls: list[int] = []

    def norms(model, data):  # noqa: ANN001, ANN202
        calls.append(1)
        return {c: (3.0 if c in {"a1.h2", "a1.h3", "m1"} else 1.0) for c in EVERYTHING}

    monkeypatch.setattr(ft, "gradient_norms", norms)
    config = FinetuneConfig(
        strategy="gradient",
        model=str(tiny_model_dir),
        warmup_checkpoints=2,
        save_model=False,
        **{**FAST, "steps": 6},
    )
    result = finetune("gender", config, tmp_path)
    assert result.selections == {0: sorted(first), 2: ["a1.h2", "a1.h3", "m1"]} and len(calls) == 1


def test_gradient_norms_are_the_norms_of_the_component_gradients(tiny_model_dir: Path) -> None:
    from foresight.encoding import encode_pairs
    from foresight.gradients import ComponentGradients
    from foresight.tasks import get_task
    from foresight.updater.strategies import TaskData

    model, tokenizer = load_model(tiny_model_dir)
    task = get_task("gender")
    data = TaskData(task, tokenizer, encode_pairs(tokenizer, task.attribution_pairs(8, seed=0)), [])
    norms = ft.gradient_norms(model, data)
    grads = ComponentGradients(model)(model, data.pairs)
    assert set(norms) == EVERYTHING
    for c in ("a0.h0", "m1"):
        assert norms[c] == pytest.approx(float(torch.tensor(grads[c]).norm()))
    assert len(set(norms.values())) > 1


def test_masked_oracle_takes_the_final_circuit_of_a_masked_static_run(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from foresight.circuits import circuit

    references, expected = [], []
    real = ft._reference

    def recording(config, data, components, out_dir):  # noqa: ANN001, ANN202
        model = real(config, data, components, out_dir)
        references.append(components)
        expected.append(circuit(ft.model_node_scores(model, data), config.components))
        return model

    monkeypatch.setattr(ft, "_reference", recording)
    config = FinetuneConfig(strategy="oracle-masked", model=str(tiny_model_dir), save_model=False, **FAST)
    result = finetune("gender", config, tmp_path)
    assert len(references) == 1 and len(references[0]) == FAST["components"]  # static, not free
    assert result.selections[0] == sorted(expected[0]) and (tmp_path / "masked-reference").is_dir()
