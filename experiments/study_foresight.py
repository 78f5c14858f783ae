"""The foresight study: the eight strategies at the same budget, with the re-localizing controls.

    python experiments/study_foresight.py [--corpus predictors/assets/corpus] [--tasks ...]
        [--seeds 0 1 2 3 4] [--forecaster lgbm-no-lookahead] [--strategies ...] [--report-only]

Strategies: free, static, random, last, dynamic, predictive, predictive-dynamic, oracle (same
steps, data and K; `last` re-localizes once at the step where predictive switches, `dynamic`
at every re-selection step where predictive-dynamic re-forecasts). The forecaster of each task
is leave-one-family-out: `--forecaster` (a LightGBM model of `predictors.registry`) trained on
the corpus runs of every other task family (`foresight.tasks.task_family`; prefix 3 checkpoints,
horizon: the final checkpoint, K = 8), saved under
runs/study-foresight/forecasters/{name}/k{prefix}-seed{seed}/{corpus fingerprint}/{family}
(`predictors.problem.corpus_fingerprint`: a changed corpus trains new forecasters). The
comparisons share the corpus's spacing (a checkpoint every 4 steps, 160 steps), so the warm-up
is steps 0-12. Writes
experiments/results/foresight.md and foresight.png (experiments/strategy_study.py), with the
paired tests of `foresight.report.PAIRS` (predictive vs last, predictive-dynamic vs dynamic,
each vs static and random) and the wall time per strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

from strategy_study import StudyConfig, run_study, study_parser

from foresight.tasks import task_family
from predictors.persist import SPEC_FILE, save_forecaster
from predictors.problem import ForecastProblem, corpus_fingerprint, load_corpus
from predictors.registry import LEARNED, make_forecaster
from predictors.strategies import Predictive  # noqa: F401  (registers the forecasting strategies)

CONFIG = StudyConfig(
    strategies=("free", "static", "random", "last", "dynamic", "predictive", "predictive-dynamic", "oracle")
)
PREFIX = 3
LIGHTGBM = [m for m in LEARNED if m.startswith("lgbm")]
FORECASTERS = Path("runs/study-foresight/forecasters")


def held_out_forecasters(
    corpus: Path, name: str, seed: int = 0, prefix: int = PREFIX
) -> Callable[[str], Path]:
    """task -> the directory of forecaster `name` at `prefix` trained on the runs of every other
    task family (built on first use)."""
    problem = ForecastProblem(prefix, "final", CONFIG.components)
    runs = cache(load_corpus)  # read on the first forecaster built, not for --report-only
    fingerprint = cache(corpus_fingerprint)

    def forecaster_for(task: str) -> Path:
        family = task_family(task)
        directory = FORECASTERS / name / f"k{prefix}-seed{seed}" / fingerprint(corpus)[:16] / family
        if not (directory / SPEC_FILE).is_file():
            training = [r for r in runs(corpus) if task_family(r.task) != family]
            save_forecaster(make_forecaster(name, problem, seed).fit(training), directory)
        return directory

    return forecaster_for


if __name__ == "__main__":
    parser = study_parser(__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("predictors/assets/corpus"))
    parser.add_argument("--forecaster", choices=LIGHTGBM, default="lgbm-no-lookahead")
    parser.add_argument("--strategies", nargs="+", choices=CONFIG.strategies, default=CONFIG.strategies)
    args = parser.parse_args()
    config = replace(CONFIG, strategies=tuple(args.strategies))
    run_study("foresight", config, args, held_out_forecasters(args.corpus, args.forecaster))
