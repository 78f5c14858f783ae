"""What every settings record shares: its error, and the ranges that several of them use.

A settings record (`SFTConfig`, `FinetuneConfig`, `TrackerSettings`, `ForecastProblem`,
`SweepConfig`) is the one home of its fields' defaults, ranges and help texts; it raises
`ConfigError(field, message)` for a value out of range, which the app renders as
`error: --field-name VALUE: message`.
"""

from __future__ import annotations

MAX_SEED = 2**32 - 1  # seeds are what numpy and torch accept: 0..MAX_SEED
