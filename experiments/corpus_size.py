"""Does more data help? Held-out Jaccard of the learned forecasters against the size of their training corpus.

    python experiments/corpus_size.py [--fractions 0.25 0.5 1] [--models lgbm lgbm-ranker] [--seeds 0 1 2]
        [--tables-only]

Leave-one-family-out as experiments/forecasting.py (node level, horizon "final", prefix k, K),
with the held-out runs fixed: in each fold the forecaster is trained on a random `fraction` of
the other families' runs (drawn with the seed; at least one run), and scored on every run of the
held-out family. `last` (no training) is the reference. Each seed draws another sample, in
another order, and seeds LightGBM: the spread over seeds is the forecasters' own variance.
Each (model, fraction, seed) not yet in experiments/results/corpus_size_per_run.csv is appended
to it (`predictors.evaluate.PER_RUN_COLUMNS`, fraction, train_runs), so the computation resumes
where it stopped; experiments/results/corpus_size.md is then rebuilt from the CSV alone
(`predictors.report.corpus_size_markdown`: family-level sign-flip tests against `last`, Holm).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from foresight.tasks import task_family
from predictors.base import Forecaster
from predictors.evaluate import PER_RUN_COLUMNS, leave_one_task_out, run_metadata
from predictors.problem import ForecastProblem, Trajectory, load_corpus
from predictors.registry import make_forecaster
from predictors.report import corpus_size_markdown

RESULTS = Path(__file__).parent / "results"
PER_RUN = RESULTS / "corpus_size_per_run.csv"
COLUMNS = [*PER_RUN_COLUMNS, "fraction", "train_runs"]


class Subsampled:
    """A forecaster factory: what it makes trains `model` on a random `fraction` of the runs it
    is given (its `fit` returns the fitted forecaster)."""

    def __init__(self, model: str, fraction: float, seed: int) -> None:
        self.model, self.fraction, self.seed = model, fraction, seed
        self.problem: ForecastProblem | None = None

    def __call__(self, problem: ForecastProblem) -> Subsampled:
        self.problem = problem
        return self

    def size(self, n_runs: int) -> int:
        """The training sample of `n_runs` runs: round(fraction x n_runs), at least one."""
        return max(1, round(self.fraction * n_runs))

    def fit(self, runs: Sequence[Trajectory]) -> Forecaster:
        """`model` fitted on `size(len(runs))` runs drawn with the seed."""
        sample = random.Random(self.seed).sample(list(runs), self.size(len(runs)))
        return make_forecaster(self.model, self.problem, self.seed).fit(sample)


def compute(
    corpus: Path, problem: ForecastProblem, models: list[str], fractions: list[float], seeds: list[int]
) -> None:
    """Append to PER_RUN the per-run rows of `last` and of every (model, fraction, seed) it does
    not hold yet."""
    done = set()
    if PER_RUN.exists():
        old = pd.read_csv(PER_RUN)
        done = set(zip(old["model"], old["fraction"].fillna(-1), old["fit_seed"], strict=True))
    todo = [("last", -1.0, 0)] + [(m, f, s) for m in models for f in fractions for s in seeds]
    todo = [t for t in todo if t not in done]
    if not todo:
        return
    runs = load_corpus(corpus)
    meta = run_metadata(runs)
    outside = {f: sum(task_family(r.task) != f for r in runs) for f in set(meta["family"])}
    for model, fraction, seed in todo:
        start = time.perf_counter()
        if model == "last":
            rows = leave_one_task_out(runs, problem, ["last"], 0, task_family)
        else:
            factory = Subsampled(model, fraction, seed)
            rows = leave_one_task_out(runs, problem, {model: factory}, seed, task_family)
        rows = rows.drop(columns="task").merge(meta, on="run")
        rows = rows.assign(fit_seed=seed, k=problem.prefix, n=problem.circuit_size)
        if model == "last":
            rows = rows.assign(fraction=None, train_runs=None)
        else:
            rows = rows.assign(fraction=fraction, train_runs=rows["family"].map(outside).map(factory.size))
        rows[COLUMNS].to_csv(PER_RUN, mode="a", header=not PER_RUN.exists(), index=False)
        print(f"{model} fraction {fraction} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("predictors/assets/corpus"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--models", nargs="+", default=["lgbm", "lgbm-ranker"])
    parser.add_argument("--prefix", type=int, default=3)
    parser.add_argument("--circuit-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tables-only", action="store_true", help="rebuild the table from the CSV")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    if args.tables_only and not PER_RUN.is_file():
        parser.error(f"--tables-only: {PER_RUN} does not exist yet (run without it first)")
    if not args.tables_only:
        problem = ForecastProblem(args.prefix, "final", args.circuit_size)
        compute(args.corpus, problem, args.models, args.fractions, args.seeds)
    text = corpus_size_markdown(pd.read_csv(PER_RUN), str(args.corpus))
    (RESULTS / "corpus_size.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
