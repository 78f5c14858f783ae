"""`FinetuneConfig`: the settings of one strategy fine-tuning run, checked once, here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from foresight.config import (
    DEVICE_HELP,
    DTYPE_HELP,
    DTYPE_NAMES,
    ConfigError,
    check_settings,
    seed_setting,
    setting,
)

Mode = Literal["lora", "full"]
DEFAULT_LR: dict[str, float] = {"lora": 5e-3, "full": 1e-3}
DEFAULT_WARMUP_CHECKPOINTS = 4  # `last` without a forecaster: re-localize at checkpoint k = 3


@dataclass(frozen=True)
class FinetuneConfig:
    """One run: `strategy` (a name in `foresight.updater.strategies.STRATEGIES`, looked up when
    the run starts) on `model` with `components` (K, the heads and MLPs selected; `free`
    ignores it), `mode` (masked LoRA or masked full SFT), `steps` of `batch_size`, `lr`
    (default `DEFAULT_LR[mode]`: at 1e-3, 160 free LoRA steps leave ioi at chance on the default
    model; at 5e-3 they solve it), LoRA `rank`, `seed` (data order, LoRA init, the random draw).
    Strategies that re-select do so every `every` steps; metrics are logged every `log_every`
    (default `every`). Forecasting strategies and `last` switch after `warmup_checkpoints`
    checkpoints (default: the forecaster's prefix + 1; `last` without one:
    `DEFAULT_WARMUP_CHECKPOINTS`). `forecaster` is a saved forecaster directory. Attribution
    uses `n_pairs` pairs and accuracy `n_eval` held-out examples, both drawn with data seed 0,
    so every seed and strategy is scored on the same examples. `dtype` and `device` place the
    model (`foresight.models.load_model`); float16 weights train only through LoRA (their
    float32 adapters), so float16 with mode full is refused."""

    strategy: str = setting(
        "static",
        "free, static, random, last, gradient, dynamic, oracle, oracle-masked, predictive, "
        "predictive-dynamic",
    )
    model: str = setting("default", "'default', 'default-gpt2' or a model directory")
    components: int = setting(8, "K: heads and MLPs to update (not free)", at_least=1)
    mode: Mode = setting("lora", "lora or full", choices=("lora", "full"))
    steps: int = setting(100, "training steps", at_least=1)
    lr: float | None = setting(None, "default: 5e-3 for lora, 1e-3 for full", above=0)
    batch_size: int = setting(32, "examples per step and process", at_least=1)
    rank: int = setting(8, "LoRA rank", at_least=1)
    seed: int = seed_setting("data order, LoRA init, the random draw")
    every: int = setting(10, "steps between re-selections and predictive checkpoints", at_least=1)
    log_every: int | None = setting(None, "steps between logged metrics (default: --every)", at_least=1)
    warmup_checkpoints: int | None = setting(None, "checkpoints before last/predictive switch", at_least=1)
    forecaster: str | None = setting(None, "a saved forecaster directory")
    n_pairs: int = setting(32, "attribution pairs (data seed 0)", at_least=1)
    n_eval: int = setting(200, "held-out examples scored (data seed 0)", at_least=1)
    save_model: bool = setting(True, "save the merged model")
    dtype: str = setting("float32", DTYPE_HELP, choices=DTYPE_NAMES)
    device: str = setting("auto", DEVICE_HELP)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.dtype == "float16" and self.mode == "full":
            raise ConfigError("dtype", "float16 trains only with mode lora (use bfloat16 for full)")

    @property
    def learning_rate(self) -> float:
        """`lr`, or the mode's default."""
        return DEFAULT_LR[self.mode] if self.lr is None else self.lr

    @property
    def logging_interval(self) -> int:
        """`log_every`, or `every`."""
        return self.log_every or self.every

    def regime(self, strategy: str | None = None) -> dict[str, Any]:
        """The training regime label of a trajectory tracked under this run: mode, `strategy`
        (default this run's), lr."""
        return {"mode": self.mode, "strategy": strategy or self.strategy, "lr": self.learning_rate}

    def with_run(self, strategy: str, seed: int) -> FinetuneConfig:
        """The same settings for another strategy and seed."""
        return replace(self, strategy=strategy, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """The settings as MLflow params / JSON (paths as strings)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
