"""The comparison as a person sees it in the MLflow UI, in headless Chromium (Debian's
`chromium` and `chromium-driver` through selenium; `experiments/screenshots.py` holds the
helpers): the parent run shows the per-strategy summary metrics, and its figure renders.

The comparison is logged as `foresight compare` logs it (`foresight.mlflow_ui.log_comparison`),
from accuracies given here instead of fine-tuning; one `mlflow server` serves the module."""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking._tracking_service import utils as tracking_utils
from selenium.webdriver.support.ui import WebDriverWait

from foresight.metric_names import FINAL, LOSS, PER_TASK, legend_label, mlflow_names
from foresight.mlflow_log import SafeLogger, start_run
from foresight.mlflow_ui import describe_finetune_run, describe_tracked_run, log_comparison, ui_url
from foresight.report import comparison_markdown, strategy_summary, strategy_tests
from foresight.updater.compare import EXPERIMENT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from screenshots import browser, start_ui, stop_ui, wait_for_text  # noqa: E402

pytestmark = pytest.mark.server

ACCURACY = {"free": (0.61, 0.66, 0.58), "static": (0.72, 0.75, 0.70), "random": (0.64, 0.60, 0.69)}


@dataclass
class UI:
    driver: object
    url: str
    experiment_id: str
    run_id: str
    table: pd.DataFrame
    figure: Path


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    root = tmp_path_factory.mktemp("ui")
    store = root / "mlflow.db"
    frame = pd.DataFrame(
        [{"task": "ioi", "strategy": s, "seed": seed, "accuracy_before": 0.52, "accuracy_after": a,
          "trainable_parameters": 1000.0 * (i + 1)}
         for i, (s, accuracies) in enumerate(ACCURACY.items()) for seed, a in enumerate(accuracies)]
    )  # fmt: skip
    table, tests = strategy_summary(frame), strategy_tests(frame)
    report = root / "comparison.md"
    report.write_text(comparison_markdown("ioi", table, tests))
    saved = tracking_utils._tracking_uri
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    try:
        with start_run(EXPERIMENT, "compare-ioi", artifact_location=str(root / "artifacts")) as parent:
            logger = SafeLogger(parent.info.run_id, root, experiment_id=parent.info.experiment_id)
            log_comparison(logger, "ioi", table, tests, report)
    finally:
        mlflow.set_tracking_uri(saved)
    figure = Path(parent.info.artifact_uri.removeprefix("file://")) / "comparison" / "accuracy.png"
    process, url = start_ui(store)
    driver = browser()
    try:
        yield UI(driver, url, parent.info.experiment_id, parent.info.run_id, table, figure)
    finally:
        driver.quit()
        stop_ui(process)


def test_the_parent_run_page_shows_the_summary_metrics_of_every_strategy(ui: UI) -> None:
    ui.driver.get(ui_url(ui.experiment_id, ui.run_id, base=ui.url))
    wait_for_text(ui.driver, "accuracy_after/static/mean")
    text = ui.driver.find_element("tag name", "body").text
    for strategy in ACCURACY:
        for name in ("mean", "ci_low", "ci_high"):
            assert f"accuracy_after/{strategy}/{name}" in text
    assert "paired_test/static_vs_random/mean_diff" in text
    assert "Strategy comparison: ioi" in text  # the report, as the run's description


def test_the_comparison_figure_renders_in_the_artifact_view(ui: UI) -> None:
    ui.driver.get(ui_url(ui.experiment_id, ui.run_id, "/artifacts/comparison/accuracy.png", ui.url))
    # the preview is an <img> named by its path, drawn from the artifact fetched as a blob
    widths = WebDriverWait(ui.driver, 90).until(
        lambda d: d.execute_script(
            "return [...document.images].filter(i => i.alt === 'comparison/accuracy.png' && i.complete"
            " && i.naturalWidth > 0).map(i => i.naturalWidth)"
        )
    )
    width = struct.unpack(">I", ui.figure.read_bytes()[16:20])[0]  # the PNG header's width
    assert widths == [width]


def test_the_vocabulary_names_labels_and_describes_every_measure_once() -> None:
    names = [m.name for m in PER_TASK.values()] + [LOSS.name, *(m.name for m in FINAL.values())]
    assert len(names) == len(set(names))  # one MLflow name per measure
    assert mlflow_names({"ioi/cd_start_head": 0.5, "loss": 1.0, "cc/ioi/gt": 0.25}) == {
        "ioi/circuit_distance/to_start/heads": 0.5,
        "train/loss": 1.0,
        "ioi/circuit_conflict/with_gt": 0.25,
        "gt/circuit_conflict/with_ioi": 0.25,
    }
    assert legend_label("cd_start_head") == "to start, heads"
    assert legend_label("cs_start_spearman") == "score stability, to start"
    tracked, finetuned = describe_tracked_run(["ioi"]), describe_finetune_run("ioi", "static")
    for key, measure in PER_TASK.items():
        assert (f"`TASK/{measure.name}`" in tracked) == ("track" in measure.logged_by), key
        assert (f"`TASK/{measure.name}`" in finetuned) == ("finetune" in measure.logged_by), key
    assert "`accuracy_after`" in finetuned and "`accuracy_after`" not in tracked
