"""Count device-to-host transfers: every call that would copy a tensor to the host (and so
wait for the device) on a GPU, counted on any device by wrapping the Tensor methods that do it."""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# the Tensor methods that return host data (a sync on a GPU): explicit copies and conversions
HOST_METHODS = (
    *("cpu", "item", "tolist", "numpy"),
    *("__float__", "__int__", "__bool__", "__index__", "__array__"),
)


def _to_host(tensor: torch.Tensor, args: tuple, kwargs: dict) -> bool:
    """Whether `tensor.to(*args, **kwargs)` copies a device tensor to the CPU."""
    target = kwargs.get("device", args[0] if args else None)
    if isinstance(target, str | torch.device):
        return torch.device(target).type == "cpu" and tensor.device.type != "cpu"
    return False


@contextmanager
def count_transfers() -> Iterator[Counter]:
    """Within the block, count calls of the `HOST_METHODS` on tensors (on any device: on the CPU
    they stand for what would be a transfer on a GPU) and the `.to("cpu")` of device tensors,
    by the innermost call site outside torch (file:line); yields the Counter."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in (*HOST_METHODS, "to")}

    def site() -> str:
        for frame in reversed(traceback.extract_stack()[:-2]):
            if "/torch/" not in frame.filename:
                return f"{frame.filename}:{frame.lineno}"
        return "torch"

    def wrap(name: str):
        original = originals[name]

        def counted(self, *args, **kwargs):
            if name != "to" or _to_host(self, args, kwargs):
                counts[site()] += 1
            return original(self, *args, **kwargs)

        return counted

    for name in originals:
        setattr(torch.Tensor, name, wrap(name))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
