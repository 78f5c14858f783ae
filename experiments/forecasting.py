"""Forecasting on the trajectory corpus: leave-one-family-out table, paired tests, training times.

    python experiments/forecasting.py [--corpus predictors/assets/corpus] [--prefix 3] [--circuit-size 8]

Node level, horizon "final": from checkpoints 0..k of a run, the top-n heads and MLPs at its last
checkpoint. Every forecaster and baseline is evaluated leave-one-family-out (predictors.evaluate
with `foresight.tasks.task_family`: a task family is held out as a whole), logged to MLflow
(experiment "foresight-forecasting"), and the summary is written to
experiments/results/forecasting.md with paired tests over held-out runs (Wilcoxon signed-rank
and paired t of Jaccard@n) of the best learned forecaster against every other model, and the wall
time of fitting LightGBM and the GNN once on the whole corpus.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from foresight.tasks import task_family
from predictors.evaluate import ALL, evaluate, paired_tests
from predictors.problem import ForecastProblem, load_corpus
from predictors.registry import LEARNED, MODELS, make_forecaster

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("predictors/assets/corpus"))
    parser.add_argument("--prefix", type=int, default=3)
    parser.add_argument("--circuit-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = load_corpus(args.corpus)
    tasks = sorted({r.task for r in runs})
    families = sorted({task_family(t) for t in tasks})
    problem = ForecastProblem(args.prefix, "final", args.circuit_size)
    fit_s = {}
    for model in ("lgbm", "gnn"):
        start = time.perf_counter()
        make_forecaster(model, problem, args.seed).fit(runs)
        fit_s[model] = time.perf_counter() - start
        print(f"{model}: fitted on all {len(runs)} runs in {fit_s[model]:.1f} s", flush=True)
    start = time.perf_counter()
    result = evaluate(runs, problem, list(MODELS), args.seed, log_mlflow=True, groups=task_family)
    loto_s = time.perf_counter() - start
    overall = result.summary[result.summary["task"] == ALL].set_index("model")["jaccard"]
    best = overall[list(LEARNED)].idxmax()
    tests = paired_tests(result.per_run, best, [m for m in MODELS if m != best])
    regimes = pd.Series([str(r.rows["regime_strategy"].iloc[0]) for r in runs]).value_counts()
    checkpoints = sorted({r.n_checkpoints for r in runs})
    notes = [
        "",
        f"Paired tests over held-out runs, Jaccard@{args.circuit_size} of the best learned forecaster "
        f"({best}) minus each other model:",
        "",
        tests.to_markdown(index=False, floatfmt=".3g"),
        "",
        f"Corpus: {args.corpus}, {len(runs)} runs ({len(tasks)} tasks in {len(families)} families: "
        f"{', '.join(families)}; regimes {regimes.to_dict()}), {checkpoints} checkpoints per run; "
        f"seed {args.seed}. Held out: one family at a time.",
        f"Fit on the whole corpus, {torch.get_num_threads()} threads: LightGBM {fit_s['lgbm']:.1f} s, "
        f"GNN {fit_s['gnn']:.1f} s. Leave-one-family-out over all models: {loto_s:.0f} s.",
        "gap_closed = (J - J_static) / (1 - J_static) of the mean Jaccard over held-out runs.",
    ]
    text = result.markdown + "\n".join(notes) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "forecasting.md").write_text(text)
    result.per_run.to_csv(RESULTS / "forecasting_per_run.csv", index=False)
    print(text)


if __name__ == "__main__":
    main()
