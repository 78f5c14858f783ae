"""The design study's comparisons and tests (experiments/study_design.py) on planted data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture()
def design(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import study_design

    return study_design


def planted(design, gain: float) -> pd.DataFrame:  # noqa: ANN001
    """Every design task and 2 seeds: static@base, last@k0, predictive@k0 (last + gain), random
    at the three learning rates (the best: 0.6)."""
    rng, rows = np.random.default_rng(0), []
    for task in design.DESIGN_TASKS:
        for seed in (0, 1):
            base = 0.5 + rng.normal(0, 0.02)
            values = {"static@base": base, "last@k0": base + 0.01, "predictive@k0": base + 0.01 + gain}
            values |= {f"random@lr{lr:g}": 0.4 + 0.1 * i for i, lr in enumerate(design.LR_GRID)}
            rows += [
                {"task": task, "seed": seed, "strategy": s, "accuracy_after": v} for s, v in values.items()
            ]
    return pd.DataFrame(rows)


def test_design_has_nine_families_and_the_arms_of_the_issue(design) -> None:  # noqa: ANN001
    from foresight.tasks import task_family

    assert len(design.DESIGN_TASKS) == 11 and len({task_family(t) for t in design.DESIGN_TASKS}) == 9
    arms = design.arms([0, 1, 2, 3])
    assert arms["k0"] == (("predictive", "last", "gradient"), {"warmup_checkpoints": 1})
    assert {"oracle-masked", "predictive-dynamic", "dynamic"} <= set(arms["base"][0])
    assert [a for a in arms if a.startswith("lr")] == [f"lr{lr:g}" for lr in design.LR_GRID]
    assert ("predictive@k3", "last@k3") in design.design_pairs([3])


def test_a_planted_gain_is_found_at_the_family_level_and_random_gets_its_best_lr(design) -> None:  # noqa: ANN001
    tests = design.design_tests(planted(design, 0.05), [0]).set_index(["a", "b"])
    row = tests.loc[("predictive@k0", "last@k0")]
    assert row["n_clusters"] == 9 and row["n_runs"] == 22 and row["mean_diff"] == pytest.approx(0.05)
    assert row["p"] == pytest.approx(2 / 512) and row["p_holm"] < 0.05
    random = tests.loc[("random@best", "static@base")]
    assert random["mean_diff"] == pytest.approx(0.6 - 0.5, abs=0.02)  # the best rate's 0.6 against static
    null = design.design_tests(planted(design, 0.0), [0]).set_index(["a", "b"])
    assert null.loc[("predictive@k0", "last@k0"), "p"] == 1.0


def test_dry_run_counts_the_trials() -> None:
    done = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "study_design.py"), "--dry-run"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    # arms: base 6, k0..k3 3 each, 3 learning rates x 2: 24 strategies x 11 tasks x 5 seeds
    assert done.stdout.startswith("8 arms, 1320 trials")


def test_a_partial_study_tests_only_what_ran(design) -> None:  # noqa: ANN001
    """Without the learning-rate arms there is no random row, and Holm counts only the pairs
    that ran (no hidden learning-rate choice)."""
    from foresight.stats import holm

    frame = planted(design, 0.05)
    tests = design.design_tests(frame[~frame["strategy"].str.startswith("random@")], [0])
    assert set(zip(tests["a"], tests["b"], strict=True)) == {
        ("predictive@k0", "last@k0"), ("predictive@k0", "static@base"), ("last@k0", "static@base")
    }  # fmt: skip
    np.testing.assert_allclose(tests["p_holm"], holm(tests["p"].to_numpy(), 0))


def test_the_per_run_csv_rebuilds_the_table_naming_random_s_rate_and_what_did_not_run(
    design,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    path = tmp_path / "design_per_run.csv"
    planted(design, 0.05).to_csv(path, index=False)
    done = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "study_design.py"), "--per-run", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    text = design.design_markdown(pd.read_csv(path), [0, 1, 2, 3])
    assert done.stdout.strip() == text.strip() == (tmp_path / "design.md").read_text().strip()
    assert "Not run: arms k1, k2, k3." in text and f"random@best is random@lr{design.LR_GRID[-1]:g}" in text
    only_random = planted(design, 0.05).query("strategy.str.startswith('random@')")
    assert "No comparison: none of its pairs of arms ran." in design.design_markdown(only_random, [0])
