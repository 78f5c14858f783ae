"""Terminal tables fit 80 columns without cutting a column name or a number."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from pandas.api.types import is_numeric_dtype
from rich.console import Console

from foresight.report import TERMINAL_TEST_COLUMNS, strategy_summary, strategy_tests
from foresight.tables import frame_table, human

STRATEGIES = ("free", "static", "random", "predictive", "predictive-dynamic", "oracle")


def comparison() -> pd.DataFrame:
    """What `foresight compare` summarises: six strategies (the longest name included), 3 seeds."""
    rows = [
        {"task": "ioi", "strategy": s, "seed": seed, "accuracy_before": 0.536, "wall_s": 12.345678,
         "accuracy_after": 0.5 + 0.07 * i + 0.013 * seed, "trainable_parameters": 12288.0 * (i + 1)}
        for i, s in enumerate(STRATEGIES)
        for seed in range(3)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def render(frame: pd.DataFrame, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(frame_table(frame, "a title"))
    return console.export_text()


def problems(text: str, frame: pd.DataFrame, width: int) -> list[str]:
    """What is wrong with a rendered table: lines over `width`, an ellipsis, a column name's
    word or a text cell not shown whole, a number with more than 3 decimals."""
    found = [f"line of {len(line)} columns" for line in text.splitlines() if len(line) > width]
    found += ["ellipsis"] if "…" in text else []
    words = set(text.split())
    expected = {w for c in frame.columns for w in str(c).replace("_", " ").split()}
    expected |= {
        w for c in frame.columns if not is_numeric_dtype(frame[c]) for v in frame[c] for w in v.split()
    }
    found += [f"{w!r} not whole" for w in sorted(expected - words)]
    found += [f"unrounded {m}" for m in re.findall(r"\d\.\d{4,}", text)]
    return found


def test_the_comparison_tables_fit_80_columns_with_every_name_whole() -> None:
    frame = comparison()
    for table in (strategy_summary(frame), strategy_tests(frame)[TERMINAL_TEST_COLUMNS]):
        text = render(table)
        assert problems(text, table, 80) == [], text


def test_foresight_tasks_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """`foresight tasks`: descriptions and prompts longer than a third of the width wrap at
    spaces; every column stays."""
    import foresight.app.cli
    from foresight.tasks import get_task, task_names

    console = Console(width=80, record=True, color_system=None)
    monkeypatch.setattr(foresight.app.cli, "console", console)
    foresight.app.cli.tasks_command()
    text = console.export_text()
    tasks = [get_task(name) for name in task_names()]
    shown = pd.DataFrame({"task": task_names(), "description": [t.description for t in tasks],
                          "example prompt": [t.eval_examples(1)[0].prompt for t in tasks]})  # fmt: skip
    assert problems(text, shown, 80) == [], text
    assert "answer" in text.split()


def test_problems_detects_a_cut_table() -> None:
    """The check above can fail: at 40 columns the summary no longer fits whole."""
    table = strategy_summary(comparison())
    assert problems(render(table, width=40), table, 40) != []
    assert problems("accurac… 0.12345", pd.DataFrame({"accuracy": [0.1]}), 80) == [
        "ellipsis", "'accuracy' not whole", "unrounded 0.12345"
    ]  # fmt: skip


def test_human_rounds_and_marks_missing_values() -> None:
    assert [human(v) for v in (0.123456, 12288.0, float("nan"), 3, "x")] == ["0.123", "12288", "-", "3", "x"]
