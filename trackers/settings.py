"""`TrackerSettings`: what is tracked and when (the command line builds its options from these
fields; the method names come from the attribution registry, `foresight.attribution.methods`)."""

from __future__ import annotations

from dataclasses import dataclass

from foresight.attribution.methods import METHODS
from foresight.config import LEVELS, ConfigError, check_settings, seed_setting, setting


@dataclass(frozen=True)
class TrackerSettings:
    """What is tracked and when.

    Checkpoints are step 0 and every `every` steps, or exactly `steps` (step 0
    is added if missing). The circuit is `foresight.circuits.circuit` of the node
    scores with k = `circuit_size` (heads and MLPs only). With `lookahead` (eap only),
    checkpoint t > 0 also stores, per node, d/de score(theta_t + e (theta_t - theta_prev))
    at e = 0 (`foresight.attribution.lookahead`): the first-order change of the score if
    the update since the previous checkpoint were repeated. It keeps a copy of the
    trainable parameters of the previous checkpoint (4 bytes per float32 trainable
    parameter: 4.2 MiB for the default model's 1.09 M parameters under full SFT, less under
    LoRA) and, per task and checkpoint, 1.4 s against 0.26 s for the node eap pass (default
    model, 32 pairs, one thread): it multiplies a checkpoint's cost by about 4, so it is off
    by default and on in `CORPUS_SETTINGS`. The first checkpoint after a resume has none
    (the copy is not saved). With `evaluate` (default) a checkpoint also measures held-out
    accuracy and the faithfulness of the current, step-0 and previous circuits (Circuit
    Stability); without, those scalars and metrics are absent (the forecasting strategies
    observe so: no forecaster feature reads them).
    With `mib` (off by default) a checkpoint also logs MIB's CPR and CMD of its scores, with
    their curves, as an MLflow table (`trackers.mib_log`).
    With `noise_floor` = B > 0, the first checkpoint also computes the noise floor of CD and CS
    (`foresight.noise_floor`: B bootstrap resamples of the pairs), stores its thresholds as
    checkpoint scalars (cd_floor_p95_{all,head,mlp}, cs_floor_p05) and every checkpoint logs
    migrated_{kind} = 1 where CD to step 0 is above the floor's 95th percentile, else 0.
    """

    every: int = setting(10, "take a checkpoint every K steps (and at step 0)", at_least=1)
    steps: tuple[int, ...] | None = setting(None, "the checkpoint steps (instead of every)")
    method: str = setting("eap", "eap, eap-ig or patching", choices=METHODS.names())
    levels: tuple[str, ...] = setting(("node", "edge"), "node, edge or both")
    n_pairs: int = setting(32, "attribution pairs (fixed for the whole run)", at_least=1)
    n_eval: int = setting(100, "held-out examples for accuracy", at_least=1)
    circuit_size: int = setting(10, "k: the circuit is the top-k heads and MLPs", at_least=1)
    ig_steps: int = setting(5, "integration steps of eap-ig", at_least=1)
    seed: int = seed_setting("seed of the attribution pairs and held-out examples")
    lookahead: bool = setting(False, "store the look-ahead derivative of the scores (eap only)")
    evaluate: bool = setting(True, "measure accuracy and faithfulness at each checkpoint")
    mib: bool = setting(False, "log MIB's CPR and CMD with their curves at each checkpoint")
    noise_floor: int = setting(
        0, "B: bootstrap resamples of the pairs for the CD/CS noise floor (0: none)", at_least=0
    )

    def __post_init__(self) -> None:
        check_settings(self)
        unknown = [level for level in self.levels if level not in LEVELS]
        if unknown or not self.levels:
            raise ConfigError("levels", f"{self.levels!r}: choose from {', '.join(LEVELS)}")
        if self.lookahead and self.method != "eap":
            raise ConfigError("lookahead", f"differentiates eap scores; method is {self.method!r}")

    def is_checkpoint(self, step: int) -> bool:
        """Whether `step` is a checkpoint."""
        if step == 0:
            return True
        return step in self.steps if self.steps is not None else step % self.every == 0


CORPUS_SETTINGS = TrackerSettings(
    every=4, levels=("node",), n_pairs=32, n_eval=100, circuit_size=10, seed=0, lookahead=True
)
"""What the trajectory corpus is tracked with (experiments/collect_trajectories.py) and so what
the forecasting strategies observe with (only `every` and, for edge forecasters, `levels` vary)."""
