"""Circuit trajectories during SFT: the trajectory store (and the tracking callback)."""

from trackers.store import (
    CHECKPOINT_COLUMNS,
    SCHEMA_VERSION,
    TrajectoryError,
    TrajectoryWriter,
    checkpoint_file,
    find_trajectories,
    load_checkpoint,
    load_probe,
    load_trajectories,
    load_trajectory,
    read_checkpoint,
    read_manifest,
    scores_table,
)

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
