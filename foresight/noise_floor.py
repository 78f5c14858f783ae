"""The noise floor of Circuit Distance and Circuit Stability: how far a circuit moves when only the
attribution pairs are resampled and the model does not change.

At one checkpoint, B bootstrap resamples of the pairs (drawn with replacement, seeded) each give
a circuit (`foresight.circuits.circuit` of the node scores, k components). The floor is:

- cd[kind]: Circuit Distance between every two resampled circuits (B(B-1)/2 values), for all
  components, heads and MLPs (`foresight.circuit_metrics.circuit_distance`);
- cs: Circuit Stability of each resampled circuit against the circuit of all the pairs, both
  evaluated on all the pairs (`circuit_stability(faith(C_b), faith(C))`, B values).

A migration counts only above the floor: CD above the 95th percentile of cd[kind]
(`NoiseFloor.cd_p95`), CS below the 5th percentile of cs (`NoiseFloor.cs_p05`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch
from torch import nn

from foresight.attribution.api import attribute_with_runs
from foresight.attribution.faithfulness import CircuitEvaluator
from foresight.circuit_metrics import circuit_distance, circuit_stability
from foresight.circuits import circuit
from foresight.encoding import PairBatch

KINDS = ("all", "head", "mlp")


@dataclass(frozen=True)
class NoiseFloor:
    """cd: kind -> the pairwise Circuit Distances of the resampled circuits; cs: the Circuit
    Stability of each resampled circuit against the full-pairs circuit."""

    cd: dict[str, np.ndarray]
    cs: np.ndarray

    def cd_p95(self, kind: str = "all") -> float:
        """95th percentile of the floor's Circuit Distances of `kind`."""
        return float(np.percentile(self.cd[kind], 95))

    def cs_p05(self) -> float:
        """5th percentile of the floor's Circuit Stabilities (NaNs ignored)."""
        return float(np.nanpercentile(self.cs, 5))

    def migrated(self, cd: float, kind: str = "all") -> bool:
        """Whether a Circuit Distance of `kind` is above the floor's 95th percentile."""
        return cd > self.cd_p95(kind)

    def summary(self) -> dict[str, float]:
        """cd_floor_p95_{kind} for each kind and cs_floor_p05: the thresholds, as scalars."""
        return {f"cd_floor_p95_{k}": self.cd_p95(k) for k in KINDS} | {"cs_floor_p05": self.cs_p05()}


def resample(pairs: PairBatch, rng: np.random.Generator) -> PairBatch:
    """A bootstrap resample of `pairs`: len(pairs) pairs drawn with replacement."""
    index = torch.as_tensor(rng.integers(0, len(pairs), len(pairs)))
    return PairBatch(*(t[index.to(t.device)] for t in vars(pairs).values()))


def floor_from_circuits(circuits: list[set[str]], stabilities: np.ndarray) -> NoiseFloor:
    """The floor of resampled `circuits` (at least 2) and their Circuit Stabilities."""
    if len(circuits) < 2:
        raise ValueError(f"a noise floor needs at least 2 resampled circuits, got {len(circuits)}")
    cd = {k: np.array([circuit_distance(a, b, k) for a, b in combinations(circuits, 2)]) for k in KINDS}
    return NoiseFloor(cd, np.asarray(stabilities, dtype=float))


def noise_floor(
    model: nn.Module,
    pairs: PairBatch,
    circuit_size: int,
    n_boot: int = 20,
    seed: int = 0,
    method: str = "eap",
    ig_steps: int = 5,
) -> NoiseFloor:
    """The noise floor of `model` at its current weights on `pairs` (module doc): `n_boot`
    resamples, node-level `method` scores, circuits of `circuit_size` components."""
    rng = np.random.default_rng(seed)
    scores, runs = attribute_with_runs(model, pairs, method=method, level="node", ig_steps=ig_steps)
    evaluator = CircuitEvaluator(runs)
    full = evaluator.faithfulness(circuit(scores.as_dict(), circuit_size), "node")
    circuits, stabilities = [], []
    for _ in range(n_boot):
        resampled, _ = attribute_with_runs(
            model, resample(pairs, rng), method=method, level="node", ig_steps=ig_steps
        )
        circuits.append(circuit(resampled.as_dict(), circuit_size))
        stabilities.append(circuit_stability(evaluator.faithfulness(circuits[-1], "node"), full))
    return floor_from_circuits(circuits, np.array(stabilities))
