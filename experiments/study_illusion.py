"""The illusion-of-effectiveness study: free vs static vs random LoRA fine-tuning on every task.

    python experiments/study_illusion.py [--tasks ...] [--seeds 0 1 2] [--report-only]

The seed study's claim: updating only the static circuit (the old map) beats updating
everything, but not updating as many random heads and MLPs. Writes
experiments/results/illusion.md and illusion.png (experiments/strategy_study.py).
"""

from __future__ import annotations

from strategy_study import StudyConfig, run_study, study_parser

CONFIG = StudyConfig(strategies=("free", "static", "random"))


if __name__ == "__main__":
    run_study("illusion", CONFIG, study_parser(__doc__.splitlines()[0]).parse_args())
