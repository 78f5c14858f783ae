"""What forecasting costs: the wall time of the forecasting strategies against their controls.

    python experiments/bench_forecasting_cost.py [--task bool] [--steps 160] [--every 4] [--threads 1]

One run each, in one process, one after another, of `dynamic`, `predictive-dynamic` and
`last` and `predictive` (masked LoRA, K = 8, the study's budget and spacing), the forecasting
strategies once with a LightGBM forecaster that reads the look-ahead features and once with
one that does not (`lgbm-no-lookahead`, whose serving tracker skips the look-ahead
derivatives). The forecasters are trained on the corpus runs of every other task family
(leave-one-family-out, as in the foresight study; their fit is not timed). Wall time: the
run's `FinetuneResult.wall_s` (training, re-selection, forecasting, the warm-up probe);
ratio: against the control at the same re-selection interval (`dynamic` for
predictive-dynamic, `last` for predictive). The issue's target: predictive-dynamic at most
1.5x dynamic.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

from foresight.tasks import task_family
from foresight.updater.config import FinetuneConfig
from foresight.updater.finetune import finetune
from predictors.problem import ForecastProblem, load_corpus
from predictors.registry import make_forecaster

PREFIX, COMPONENTS = 3, 8
RUNS = (  # (strategy, forecaster, control)
    ("last", None, None),
    ("predictive", "lgbm", "last"),
    ("predictive", "lgbm-no-lookahead", "last"),
    ("dynamic", None, None),
    ("predictive-dynamic", "lgbm", "dynamic"),
    ("predictive-dynamic", "lgbm-no-lookahead", "dynamic"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("predictors/assets/corpus"))
    parser.add_argument("--task", default="bool")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = ForecastProblem(PREFIX, "final", COMPONENTS)
    training = [r for r in load_corpus(args.corpus) if task_family(r.task) != task_family(args.task)]
    forecasters = {
        name: make_forecaster(name, problem).fit(training) for name in ("lgbm", "lgbm-no-lookahead")
    }
    rows, wall = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy, forecaster, control in RUNS:
            config = FinetuneConfig(
                strategy=strategy, mode="lora", steps=args.steps, every=args.every, log_every=args.steps,
                components=COMPONENTS, save_model=False,
            )  # fmt: skip
            out = Path(tmp) / f"{strategy}-{forecaster}"
            result = finetune(args.task, config, out, forecaster=forecasters.get(forecaster))
            wall[strategy, forecaster] = result.wall_s
            ratio = result.wall_s / wall[control, None] if control else float("nan")
            rows.append(
                {"strategy": strategy, "forecaster": forecaster or "-", "wall_s": result.wall_s,
                 "vs control": ratio, "accuracy": result.accuracy_after}
            )  # fmt: skip
            print(f"{strategy} ({forecaster or 'no forecaster'}): {result.wall_s:.1f} s", flush=True)
    print(f"\n{args.task}, {args.steps} steps, re-selection every {args.every}, {args.threads} thread(s):")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
