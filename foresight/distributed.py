"""The processes of one run under `torchrun` / `accelerate launch` (DDP: gloo on the CPU,
nccl on GPUs), through accelerate's `PartialState`; without a launcher, one process of
rank 0, and every function here is trivial.

The rule every command follows: each rank trains its share of the global batch (the
Trainer's DDP); rank 0 alone attributes, evaluates and writes (trajectories, MLflow,
reports; the Trainer saves its checkpoints from rank 0 itself); a decision taken on rank 0
(a claimed run directory, a re-selected component set, a run's result) reaches the other
ranks by `broadcast`.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

T = TypeVar("T")


def start(device: str = "auto") -> PartialState:
    """Join the launcher's process group (once per process; later calls return the same
    state). `device` is the run's `--device`: the CPU processes of `torchrun` form a gloo
    group only when told that they run on the CPU."""
    cpu = device == "cpu" or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def is_main() -> bool:
    """Whether this process is rank 0 (the only one that attributes and writes)."""
    return start().is_main_process


def world_size() -> int:
    """The number of processes of the run."""
    return start().num_processes


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if world_size() == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]
