"""The foresight study: static vs random vs predictive vs predictive-dynamic vs oracle, every task.

    python experiments/study_foresight.py [--corpus predictors/assets/corpus] [--tasks ...]
        [--seeds 0 1 2] [--report-only]

The forecaster of each task is leave-one-task-out: a LightGBM classifier trained on the corpus
runs of every other task (prefix 3 checkpoints, horizon: the final checkpoint, K = 8), saved
under runs/study-foresight/forecasters/{task}. The comparisons share the corpus's spacing
(a checkpoint every 4 steps, 160 steps), so the predictive warm-up is steps 0-12. Writes
experiments/results/foresight.md and foresight.png (experiments/strategy_study.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from strategy_study import StudyConfig, run_study, study_parser

from predictors.lgbm import LGBMForecaster
from predictors.persist import SPEC_FILE, save_forecaster
from predictors.problem import ForecastProblem, load_corpus

CONFIG = StudyConfig(strategies=("static", "random", "predictive", "predictive-dynamic", "oracle"))
PREFIX = 3
FORECASTERS = Path("runs/study-foresight/forecasters")


def held_out_forecasters(corpus: Path, seed: int = 0) -> Callable[[str], Path]:
    """task -> the directory of a forecaster trained on every other task's runs (built on first use)."""
    problem = ForecastProblem(PREFIX, "final", CONFIG.components)
    runs = cache(load_corpus)  # read on the first forecaster built, not for --report-only

    def forecaster_for(task: str) -> Path:
        directory = FORECASTERS / task
        if not (directory / SPEC_FILE).is_file():
            training = [r for r in runs(corpus) if r.task != task]
            save_forecaster(LGBMForecaster(problem, seed).fit(training), directory)
        return directory

    return forecaster_for


if __name__ == "__main__":
    parser = study_parser(__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("predictors/assets/corpus"))
    args = parser.parse_args()
    run_study("foresight", CONFIG, args, held_out_forecasters(args.corpus))
