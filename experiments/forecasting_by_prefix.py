"""How early can the final circuit be forecast? Leave-one-family-out Jaccard@n against the prefix k.

    python experiments/forecasting_by_prefix.py [--corpus predictors/assets/corpus]
        [--prefixes 0 1 ... 12] [--models static last extrapolate anticipate lgbm]

For every prefix k (checkpoints 0..k observed: steps 0..`every` x k), the
leave-one-family-out evaluation of `predictors.evaluate` (node level, horizon: the final
checkpoint, circuit size n; `foresight.tasks.task_family` groups) for each model.
Writes experiments/results/forecasting_by_prefix.md
(mean Jaccard@n per model and k) and forecasting_by_prefix.png. Prints the wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from foresight.tasks import task_family
from predictors.evaluate import ALL, evaluate
from predictors.problem import ForecastProblem, load_corpus

RESULTS = Path(__file__).parent / "results"


def jaccard_by_prefix(
    corpus: Path, prefixes: list[int], models: list[str], n: int, seed: int
) -> pd.DataFrame:
    """Mean Jaccard@n over held-out runs: one row per prefix k, one column per model."""
    runs = load_corpus(corpus)
    rows = []
    for k in prefixes:
        problem = ForecastProblem(k, "final", n)
        summary = evaluate(runs, problem, models, seed, log_mlflow=False, groups=task_family).summary
        overall = summary[summary["task"] == ALL].set_index("model")["jaccard"]
        rows.append({"k": k, **overall.reindex(models).to_dict()})
        print(f"k={k}: " + ", ".join(f"{m} {overall[m]:.3f}" for m in models), flush=True)
    return pd.DataFrame(rows).set_index("k")


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
    parser.add_argument(
        "--models", nargs="*", default=["static", "last", "extrapolate", "anticipate", "lgbm"]
    )
    parser.add_argument("--circuit-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=4, help="steps between the corpus's checkpoints")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    table = jaccard_by_prefix(args.corpus, args.prefixes, args.models, args.circuit_size, args.seed)
    RESULTS.mkdir(exist_ok=True)
    plot(table, args.every, RESULTS / "forecasting_by_prefix.png")
    text = (
        f"Mean Jaccard@{args.circuit_size} with the final circuit (step 160), leave-one-family-out over "
        f"{args.corpus}, node level, seed {args.seed}; k = last observed checkpoint (step {args.every}k).\n\n"
        + table.rename(index=str).reset_index().to_markdown(index=False, floatfmt=".3f")
        + f"\n\nWall time: {time.perf_counter() - start:.0f} s on {args.threads} threads.\n"
    )
    (RESULTS / "forecasting_by_prefix.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
