"""Does more data help? Held-out Jaccard of the learned forecasters against the size of their training corpus.

    python experiments/corpus_size.py [--fractions 0.25 0.5 1] [--models lgbm lgbm-ranker] [--seeds 0 1 2]

Leave-one-family-out as experiments/forecasting.py (node level, horizon "final", prefix k, K),
with the held-out runs fixed: in each fold the forecaster is trained on a random `fraction` of
the other families' runs (drawn with the seed; at least one run), and scored on every run of the
held-out family. `last` (no training) is the reference. Each seed draws another sample, in
another order, and seeds LightGBM: the spread over seeds is the forecasters' own variance.
Writes experiments/results/corpus_size.md.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import ttest_rel

from foresight.tasks import task_family
from predictors.base import Forecaster
from predictors.evaluate import leave_one_task_out
from predictors.problem import ForecastProblem, Trajectory, load_corpus
from predictors.registry import make_forecaster

RESULTS = Path(__file__).parent / "results"


class Subsampled:
    """A forecaster factory: what it makes trains `model` on a random `fraction` of the runs it
    is given (its `fit` returns the fitted forecaster); `sizes` records each training set's size."""

    def __init__(self, model: str, fraction: float, seed: int) -> None:
        self.model, self.fraction, self.seed = model, fraction, seed
        self.sizes: list[int] = []
        self.problem: ForecastProblem | None = None

    def __call__(self, problem: ForecastProblem) -> Subsampled:
        self.problem = problem
        return self

    def fit(self, runs: Sequence[Trajectory]) -> Forecaster:
        """`model` fitted on round(fraction x len(runs)) runs (at least one) drawn with the seed."""
        n = max(1, round(self.fraction * len(runs)))
        self.sizes.append(n)
        sample = random.Random(self.seed).sample(list(runs), n)
        return make_forecaster(self.model, self.problem, self.seed).fit(sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("predictors/assets/corpus"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--models", nargs="+", default=["lgbm", "lgbm-ranker"])
    parser.add_argument("--prefix", type=int, default=3)
    parser.add_argument("--circuit-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = load_corpus(args.corpus)
    problem = ForecastProblem(args.prefix, "final", args.circuit_size)
    reference = leave_one_task_out(runs, problem, ["last"], 0, task_family)
    last = reference.set_index("run")["jaccard"]
    rows = []
    for model in args.models:
        for fraction in args.fractions:
            for seed in args.seeds:
                factory = Subsampled(model, fraction, seed)
                per_run = leave_one_task_out(runs, problem, {model: factory}, seed, task_family)
                jaccard = per_run.set_index("run")["jaccard"].reindex(last.index)
                rows.append(
                    {
                        "model": model,
                        "fraction": fraction,
                        "seed": seed,
                        "train runs (mean per fold)": sum(factory.sizes) / len(factory.sizes),
                        f"Jaccard@{args.circuit_size}": jaccard.mean(),
                        "minus last": (jaccard - last).mean(),
                        "paired t p": ttest_rel(jaccard, last).pvalue,
                    }
                )
                print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    spread = table.groupby(["model", "fraction"])[[f"Jaccard@{args.circuit_size}", "minus last"]]
    summary = spread.agg(["mean", "min", "max"])
    summary.columns = [f"{a} {b}" for a, b in summary.columns]
    text = "\n".join(
        [
            f"# Corpus size vs held-out Jaccard@{args.circuit_size} (leave-one-family-out, prefix k = "
            f"{args.prefix})",
            "",
            f"`last` on the same {len(last)} held-out runs: {last.mean():.3f}.",
            "",
            f"Over seeds {args.seeds} (mean, min, max):",
            "",
            summary.reset_index().to_markdown(index=False, floatfmt=".3f"),
            "",
            "Each seed (paired t-test over the held-out runs against `last`):",
            "",
            table.to_markdown(index=False, floatfmt=".3f"),
            "",
            f"Corpus {args.corpus}, {len(runs)} runs.",
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "corpus_size.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
