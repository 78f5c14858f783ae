"""A benchmark row in a fresh process (experiments/fresh_process.py): its result, or its error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture()
def row_result(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    from fresh_process import row_result

    return row_result


def test_the_result_is_the_last_stdout_line_in_a_process_of_its_own(row_result, tmp_path: Path) -> None:  # noqa: ANN001
    script = tmp_path / "row.py"
    script.write_text(
        "import json, os, sys\n"
        "print('a progress line')\n"
        "print(json.dumps({'args': sys.argv[1:], 'pid': os.getpid(), 'env': os.environ.get('ROW_FLAG')}))\n"
    )
    result = row_result(script, ["--x", "1"], {**os.environ, "ROW_FLAG": "set"})
    assert result["args"] == ["--x", "1"] and result["env"] == "set"
    assert result["pid"] != os.getpid()


def test_a_failing_row_raises_with_its_stderr(row_result, tmp_path: Path) -> None:  # noqa: ANN001
    script = tmp_path / "row.py"
    script.write_text("import sys\nsys.exit('the row broke: out of memory')\n")
    with pytest.raises(RuntimeError, match=r"row\.py --x failed:\nthe row broke: out of memory"):
        row_result(script, ["--x"])
