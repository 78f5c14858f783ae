"""`FinetuneConfig`: the settings of one strategy fine-tuning run, checked once, here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from foresight.models import torch_dtype

Mode = Literal["lora", "full"]
DEFAULT_LR: dict[str, float] = {"lora": 5e-3, "full": 1e-3}
DEFAULT_WARMUP_CHECKPOINTS = 4  # `last` without a forecaster: re-localize at checkpoint k = 3


@dataclass(frozen=True)
class FinetuneConfig:
    """One run: `strategy` on `model` with `components` (K, the heads and MLPs selected; `free`
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

    strategy: str = "static"
    model: str = "default"
    components: int = 8
    mode: Mode = "lora"
    steps: int = 100
    lr: float | None = None
    batch_size: int = 32
    rank: int = 8
    seed: int = 0
    every: int = 10
    log_every: int | None = None
    warmup_checkpoints: int | None = None
    forecaster: str | None = None
    n_pairs: int = 32
    n_eval: int = 200
    save_model: bool = True
    dtype: str = "float32"
    device: str = "auto"

    def __post_init__(self) -> None:
        from foresight.updater.strategies import RESELECTING, STRATEGIES  # the registry imports this module

        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if self.mode not in DEFAULT_LR:
            raise ValueError(f"mode {self.mode!r}: choose from {', '.join(DEFAULT_LR)}")
        for name in ("components", "steps", "batch_size", "rank", "every", "n_pairs", "n_eval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.strategy in RESELECTING and self.every >= self.steps:
            raise ValueError(
                f"every {self.every} with steps {self.steps}: strategy {self.strategy} re-selects at "
                "steps every, 2 x every, ... before the last, so it would never re-select"
            )
        for name in ("log_every", "warmup_checkpoints"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, not {self.lr}")
        torch_dtype(self.dtype)
        if self.dtype == "float16" and self.mode == "full":
            raise ValueError("dtype float16 trains only with mode lora (use bfloat16 for full)")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in 0..2**32-1, not {self.seed}")

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
