"""What a tracked checkpoint costs beyond its passes: device-to-host transfers (a fixed number,
not one per component), what is built once per run, and the writer thread."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from tiny_models import tiny_model
from transfers import count_transfers

from foresight.architectures import graph_of
from foresight.architectures.parameters import ComponentMap
from foresight.circuit_metrics import circuit_conflict, circuit_conflict_of_dots
from foresight.encoding import encode_pairs
from foresight.gradients import ComponentGradients, gradient_dots, gradient_norms
from foresight.sft import SFTConfig
from foresight.tasks import get_task
from trackers.background import SerialJobs
from trackers.run import track
from trackers.store import TrajectoryWriter
from trackers.tracker import CircuitTracker, TrackerSettings

SETTINGS = TrackerSettings(n_pairs=8, n_eval=16, circuit_size=3)
TASKS = ("ioi", "gender")  # two tasks: Circuit Conflict's dot products are taken too


def _transfers_per_checkpoint(heads: int, tokenizer, out: Path) -> int:
    """Host transfers (`tests/transfers.py`) of one checkpoint after step 0, two tasks tracked."""
    model = tiny_model("llama", vocab=len(tokenizer), width=64, layers=2, heads=heads, kv_heads=heads)
    manifest = {"run_id": f"h{heads}", "model": "tiny", "seed": 0}
    tracker = CircuitTracker(
        [get_task(t) for t in TASKS], tokenizer, graph_of(model), out, manifest, SETTINGS
    )
    tracker.take_checkpoint(model, 0)  # builds what is built once per run
    with count_transfers() as counts:
        tracker.take_checkpoint(model, 10)
    return sum(counts.values())


def test_a_checkpoint_moves_data_to_the_host_a_fixed_number_of_times(tokenizer, tmp_path: Path) -> None:
    """Doubling the heads (16 -> 24 components, the layers unchanged) adds no transfer, beyond the
    one of Circuit Conflict's dot products, which only a task pair with shared circuit components
    takes. One transfer per component (or per score) would add at least 8 per task."""
    few = _transfers_per_checkpoint(4, tokenizer, tmp_path / "few")
    many = _transfers_per_checkpoint(8, tokenizer, tmp_path / "many")
    assert many <= few + 1, (few, many)
    assert few <= 60, few  # what the attribution, evaluation and gradient passes take (51 when written)


def test_norms_and_dots_match_an_independent_computation(tokenizer) -> None:
    """The on-device norms and the Circuit Conflict computed from the on-device dot products equal
    numpy's on the same vectors brought over one by one."""
    model = tiny_model("gpt2", vocab=len(tokenizer))
    gradients = ComponentGradients(model)
    grads = {
        t: gradients(model, encode_pairs(tokenizer, get_task(t).attribution_pairs(8, seed=0))) for t in TASKS
    }
    host = {t: {c: g.double().numpy() for c, g in grads[t].items()} for t in TASKS}
    norms = gradient_norms(grads["ioi"])
    assert norms == pytest.approx({c: float(np.linalg.norm(g)) for c, g in host["ioi"].items()}, rel=1e-12)
    components = sorted(grads["ioi"])
    a, b = set(components[:6]), set(components[3:9])
    dots = gradient_dots(grads["ioi"], grads["gender"], a & b)
    assert dots == pytest.approx({c: float(host["ioi"][c] @ host["gender"][c]) for c in a & b}, rel=1e-9)
    assert circuit_conflict_of_dots(dots, a, b) == circuit_conflict(host["ioi"], host["gender"], a, b)


def test_component_gradients_are_the_owned_entries_of_the_parameter_gradients(tokenizer) -> None:
    """A head's vector is its rows of q/k/v and its columns of o, in the order of boolean masking
    with `ComponentMap.parameter_masks` (independent of the index vectors); GPT-2's fused qkv."""
    model = tiny_model("gpt2", vocab=len(tokenizer))
    pairs = encode_pairs(tokenizer, get_task("ioi").attribution_pairs(8, seed=0))
    grads = ComponentGradients(model)(model, pairs)
    params = dict(model.named_parameters())
    logits = model(input_ids=pairs.clean).logits[torch.arange(len(pairs)), pairs.last]
    loss = torch.nn.functional.cross_entropy(logits.float(), pairs.answer)
    full = dict(zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True), strict=True))
    component_map = ComponentMap(model)
    for component in ("a1.h2", "m0"):
        masks = component_map.parameter_masks([component])
        expected = torch.cat([full[k][m].flatten() for k, m in sorted(masks.items()) if m.any()])
        torch.testing.assert_close(grads[component], expected, rtol=1e-5, atol=1e-7)


def test_serial_jobs_run_in_order_and_surface_the_first_error() -> None:
    jobs, done = SerialJobs("test"), []
    for i in range(5):
        jobs.submit(done.append, i)
    jobs.wait()
    assert done == [0, 1, 2, 3, 4]

    def fail() -> None:
        raise OSError("disk full")

    gate = threading.Event()
    jobs.submit(gate.wait)  # holds the queue while the next two are queued
    jobs.submit(fail)
    jobs.submit(done.append, 5)  # queued behind the failure: not run
    gate.set()
    with pytest.raises(OSError, match="disk full"):
        jobs.wait()
    assert done == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="an earlier job failed"):
        jobs.submit(done.append, 6)
        jobs.wait()


def test_a_failed_trajectory_write_fails_the_run(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write on the writer thread that fails is raised by track, not swallowed."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)

    def fail(self, step, table, scalars) -> None:  # noqa: ANN001
        raise OSError(f"no space left for step {step}")

    monkeypatch.setattr(TrajectoryWriter, "write_checkpoint", fail)
    sft = SFTConfig(steps=2, batch_size=8, examples_per_task=16)
    with pytest.raises(OSError, match="no space left for step 0"):
        track(
            ["ioi"], tmp_path / "run", str(tiny_model_dir), sft, TrackerSettings(every=2, n_pairs=8, n_eval=8)
        )


def test_masks_and_the_mlflow_store_are_built_once_per_run(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three checkpoints on background model copies: one ComponentGradients (its index vectors),
    one SQLite store set-up, and no dense parameter mask at all; no model saved by default."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    built: Counter = Counter()

    def counting(name: str, original):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            built[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(SqlAlchemyStore, "__init__", counting("store", SqlAlchemyStore.__init__))
    monkeypatch.setattr(ComponentGradients, "__init__", counting("gradients", ComponentGradients.__init__))
    monkeypatch.setattr(ComponentMap, "parameter_masks", counting("dense", ComponentMap.parameter_masks))
    sft = SFTConfig(steps=4, batch_size=8, examples_per_task=16)
    settings = TrackerSettings(every=2, n_pairs=8, n_eval=8, circuit_size=3)
    run = track(["ioi"], tmp_path / "run", str(tiny_model_dir), sft, settings, tracking_copy="on")
    assert run.tracker.states["ioi"].writer.steps() == [0, 2, 4]
    assert built == {"store": 1, "gradients": 1}
    assert not (tmp_path / "run" / "model").exists()
