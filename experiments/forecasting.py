"""Forecasting on the trajectory corpus: leave-one-family-out per-run results over fit seeds, and
the table with cluster-level tests rebuilt from them.

    python experiments/forecasting.py [--corpus predictors/assets/corpus] [--prefix 3] [--circuit-size 8]
        [--models lgbm lgbm-ranker ...] [--fit-seeds 0 1 2 3 4] [--tables-only]

Node level, horizon "final": from checkpoints 0..k of a run, the top-n heads and MLPs at its last
checkpoint. Each (model, fit seed) not yet in experiments/results/forecasting_per_run.csv is
evaluated leave-one-family-out (`predictors.evaluate.leave_one_task_out` with
`foresight.tasks.task_family`: a family is held out as a whole) and appended to that CSV (columns
`predictors.evaluate.PER_RUN_COLUMNS`), so the computation resumes where it stopped. The table
(experiments/results/forecasting.md) is then rebuilt from the CSV alone
(`predictors.report.seeded_report`): per learned model the mean ± sd over fit seeds of its gain
over `last` and `static`, how many seeds are significant after Holm, the cluster-level tests
(task and family as the unit), split by regime.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from foresight.tasks import task_family
from predictors.evaluate import PER_RUN_COLUMNS, leave_one_task_out, run_metadata
from predictors.problem import ForecastProblem, load_corpus
from predictors.registry import MODELS
from predictors.report import seeded_report

RESULTS = Path(__file__).parent / "results"
PER_RUN = RESULTS / "forecasting_per_run.csv"


def compute(
    corpus: Path, problem: ForecastProblem, models: list[str], fit_seeds: list[int], path: Path
) -> None:
    """Append to `path` the per-run rows of every (model, fit seed) it does not hold yet."""
    done = set()
    if path.exists():
        old = pd.read_csv(path)
        done = set(zip(old["model"], old["fit_seed"], strict=True))
    todo = [(m, s) for s in fit_seeds for m in models if (m, s) not in done]
    if not todo:
        return
    runs = load_corpus(corpus)
    meta = run_metadata(runs)
    for model, seed in todo:
        start = time.perf_counter()
        rows = leave_one_task_out(runs, problem, [model], seed, groups=task_family)
        rows = rows.drop(columns="task").merge(meta, on="run")
        rows = rows.assign(fit_seed=seed, k=problem.prefix, n=problem.circuit_size)
        rows[PER_RUN_COLUMNS].to_csv(path, mode="a", header=not path.exists(), index=False)
        print(f"{model} fit seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("predictors/assets/corpus"))
    parser.add_argument("--prefix", type=int, default=3)
    parser.add_argument("--circuit-size", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--fit-seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tables-only", action="store_true", help="rebuild the table from the CSV")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = ForecastProblem(args.prefix, "final", args.circuit_size)
    if not args.tables_only:
        compute(args.corpus, problem, args.models, args.fit_seeds, PER_RUN)
    text = seeded_report(pd.read_csv(PER_RUN), problem, f"{args.corpus}")
    (RESULTS / "forecasting.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
