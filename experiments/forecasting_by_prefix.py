"""How early can the final circuit be forecast? Leave-one-family-out Jaccard@n against the prefix k.

    python experiments/forecasting_by_prefix.py [--corpus predictors/assets/corpus]
        [--prefixes 0 1 ... 12]
        [--models static last extrapolate anticipate lgbm lgbm-ranker lgbm-no-lookahead]

For every prefix k (checkpoints 0..k observed: steps 0..`every` x k), the
leave-one-family-out evaluation of `predictors.evaluate` (node level, horizon: the final
checkpoint, circuit size n; `foresight.tasks.task_family` groups) for each model, and
cluster-level paired tests (`predictors.evaluate.paired_tests`: the held-out family is the unit,
exact sign-flip p, Holm per k over every learned model x control) of each learned model against
`last`, `static` and `anticipate` at that k. Writes experiments/results/forecasting_by_prefix.md
(mean Jaccard@n per model and k; the tests), forecasting_by_prefix.png and the per-run results
forecasting_by_prefix_per_run.csv (`PER_RUN_COLUMNS` and k). Prints the wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from foresight.tasks import task_family
from predictors.evaluate import ALL, PER_RUN_COLUMNS, evaluate, run_metadata
from predictors.problem import ForecastProblem, load_corpus
from predictors.report import jaccard_by_prefix, prefix_markdown

RESULTS = Path(__file__).parent / "results"
BASELINES = ("static", "last", "extrapolate", "anticipate")
LIGHTGBM = ("lgbm", "lgbm-ranker", "lgbm-no-lookahead")


def per_run_by_prefix(
    corpus: Path, prefixes: list[int], models: list[str], n: int, seed: int, path: Path
) -> pd.DataFrame:
    """Per-run results (PER_RUN_COLUMNS) of every model at every prefix, written to `path`
    after each k."""
    runs = load_corpus(corpus)
    meta, frames = run_metadata(runs), []
    for k in prefixes:
        result = evaluate(runs, ForecastProblem(k, "final", n), models, seed, groups=task_family)
        frame = result.per_run.drop(columns="task").merge(meta, on="run").assign(fit_seed=seed, k=k, n=n)
        frames.append(frame[PER_RUN_COLUMNS])
        pd.concat(frames, ignore_index=True).to_csv(path, index=False)
        overall = result.summary[result.summary["task"] == ALL].set_index("model")["jaccard"]
        print(f"k={k}: " + ", ".join(f"{m} {overall[m]:.3f}" for m in models), flush=True)
    return pd.concat(frames, ignore_index=True)


def plot(table: pd.DataFrame, every: int, path: Path) -> Path:
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for model in table.columns:
        ax.plot(table.index * every, table[model].to_numpy(), marker="o", label=model)
    ax.set_xlabel(f"last observed step (checkpoint k x {every})")
    ax.set_ylabel("Jaccard@n with the final circuit")
    ax.set_title("Forecasting the final circuit from the first k checkpoints (held-out tasks)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("predictors/assets/corpus"))
    parser.add_argument("--prefixes", nargs="*", type=int, default=list(range(13)))
    parser.add_argument("--models", nargs="*", default=[*BASELINES, *LIGHTGBM])
    parser.add_argument("--circuit-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=4, help="steps between the corpus's checkpoints")
    parser.add_argument("--tables-only", action="store_true", help="rebuild from the per-run CSV")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    path = RESULTS / "forecasting_by_prefix_per_run.csv"
    if args.tables_only:
        per_run = pd.read_csv(path)
    else:
        per_run = per_run_by_prefix(
            args.corpus, args.prefixes, args.models, args.circuit_size, args.seed, path
        )
    table, tests = jaccard_by_prefix(per_run)
    RESULTS.mkdir(exist_ok=True)
    plot(table, args.every, RESULTS / "forecasting_by_prefix.png")
    wall = f"{time.perf_counter() - start:.0f} s on {args.threads} threads" + (
        " (tables rebuilt from the per-run CSV)" if args.tables_only else ""
    )
    text = prefix_markdown(per_run, f"{args.corpus}") + f"\nWall time: {wall}.\n"
    (RESULTS / "forecasting_by_prefix.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
