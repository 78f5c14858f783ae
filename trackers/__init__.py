"""Circuit trajectories during SFT: the trajectory store (and the tracking callback).

The store's names below are imported on first use (`trackers.settings`, which the command line
reads at start-up, does not pull in pandas and pyarrow)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CHECKPOINT_COLUMNS",
    "SCHEMA_VERSION",
    "TrajectoryError",
    "TrajectoryWriter",
    "checkpoint_file",
    "find_trajectories",
    "load_checkpoint",
    "load_probe",
    "load_trajectories",
    "load_trajectory",
    "read_checkpoint",
    "read_manifest",
    "scores_table",
]


def __getattr__(name: str) -> Any:
    """`name` from `trackers.store` (PEP 562)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("trackers.store"), name)
