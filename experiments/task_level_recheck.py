"""The illusion and foresight studies' pooled tests redone with the task as the unit, from the
per-task means their results files print (their per-seed accuracies were never stored).

    python experiments/task_level_recheck.py

For a task where every seed ran every strategy, the mean over seeds of accuracy a - b is the
difference of the two printed means, so the task-level test (`foresight.stats.sign_flip_p`:
exact sign-flip over the tasks, Holm over `foresight.report.PAIRS`) needs nothing else. Appends
nothing: writes experiments/results/task_level_recheck.md.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from foresight.report import PAIRS
from foresight.stats import holm, sign_flip_p

RESULTS = Path(__file__).parent / "results"


def first_table(path: Path) -> pd.DataFrame:
    """The first markdown table of `path` (the per-task means), indexed by task, as floats."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    block = lines[start:end]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block]
    table = pd.DataFrame(rows[2:], columns=rows[0]).set_index("task")
    return table.astype(float)


def task_level_tests(means: pd.DataFrame) -> pd.DataFrame:
    """Per pair of PAIRS both in `means`: mean over tasks of a - b, tasks where a > b and a < b,
    exact sign-flip p over tasks and Holm over the pairs."""
    rows = []
    for a, b in PAIRS:
        if a in means and b in means:
            d = (means[a] - means[b]).to_numpy()
            rows.append({"a": a, "b": b, "tasks": len(d), "mean_diff": d.mean(), "a > b": int((d > 0).sum()),
                         "a < b": int((d < 0).sum()), "p": sign_flip_p(d)})  # fmt: skip
    tests = pd.DataFrame(rows)
    return tests.assign(p_holm=holm(tests["p"].to_numpy()))


def main() -> None:
    parts = ["# The studies' pooled tests with the task as the unit (from the per-task means)", ""]
    for name in ("illusion", "foresight"):
        tests = task_level_tests(first_table(RESULTS / f"{name}.md"))
        parts += [f"## {name}", "", tests.to_markdown(index=False, floatfmt=".4g"), ""]
    parts.append(
        "With n tasks the smallest exact two-sided sign-flip p is 2/2^n: 0.0625 for the five "
        "separating tasks (ties, a = b on a task, carry no sign). No pooled claim of either study "
        "can be significant at the task level, whatever its run-level p was."
    )
    text = "\n".join(parts) + "\n"
    (RESULTS / "task_level_recheck.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
