"""Which components to update, and when to change them: the strategy registry.

Only heads `a{L}.h{H}` and MLPs `m{L}` are ever selected (`foresight.circuits`).
A `Strategy` gives the set for step 0 (`initial`) and, if it `reselects`, may
return a new set at every `every`-th step (`reselect`). Strategies:

- free: every head and MLP (mode "full": plain full-parameter SFT);
- static: the circuit at step 0 (the old map);
- random: as many heads and as many MLPs as static, drawn with the seed;
- last: static, re-localized once at the switch step (the control of predictive);
- dynamic: static, re-localized every `every` steps (the control of predictive-dynamic);
- oracle: the circuit at the end of a free run of the same budget and seed;
- oracle-masked: the circuit at the end of a masked run of static (same budget and seed): where
  the circuit of an updater that trains only its circuit ends up (the oracle for an updater);
- gradient: static, then once, at the switch step, the K heads and MLPs with the largest
  gradient norm of the task loss (`foresight.gradients.ComponentGradients`): a cheap placement
  baseline after arXiv 2605.12207;
- predictive, predictive-dynamic: the forecast circuit (`predictors.strategies`, which
  registers them when it is imported; the app imports it, `foresight` never does).

The registry `STRATEGIES` (a `foresight.registry.Registry`): `register_strategy` adds a class under
its `name`; `strategy_class` finds it.

A re-selection at step s takes effect from step s + 1.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from foresight import components as names
from foresight.circuits import circuit
from foresight.config import ConfigError
from foresight.encoding import PairBatch
from foresight.graph import Graph
from foresight.registry import Registry
from foresight.tasks.base import Example, Task
from foresight.updater.config import DEFAULT_WARMUP_CHECKPOINTS, FinetuneConfig

NodeScores = Callable[[], dict[str, float]]


def kind_counts(components: Iterable[str]) -> tuple[int, int]:
    """(number of heads, number of MLPs) among `components`."""
    kinds = [names.kind(c) for c in components]
    return kinds.count("head"), kinds.count("mlp")


def select_random(candidates: Iterable[str], n_heads: int, n_mlps: int, seed: int) -> set[str]:
    """`n_heads` heads and `n_mlps` MLPs drawn uniformly from the heads and MLPs of `candidates`
    (sorted first, so the draw depends on the seed only)."""
    pool = sorted(names.members(candidates))
    rng = random.Random(seed)
    chosen: set[str] = set()
    for kind, n in (("head", n_heads), ("mlp", n_mlps)):
        of_kind = [c for c in pool if names.kind(c) == kind]
        if not 0 <= n <= len(of_kind):
            raise ValueError(f"{kind}s: cannot draw {n} of {len(of_kind)} candidates")
        chosen.update(rng.sample(of_kind, n))
    return chosen


@dataclass
class TaskData:
    """The fixed data of a run: attribution pairs and held-out examples (data seed 0)."""

    task: Task
    tokenizer: PreTrainedTokenizerBase
    pairs: PairBatch
    examples: list[Example]


@dataclass
class Context:
    """What a strategy may use: the run's settings, graph and data, the static circuit, its
    output directory, the free reference run (for `oracle`; returns the trained model), node
    scores of a model, a loaded forecaster (else the strategy loads `config.forecaster`), the
    masked reference run of static (for `oracle-masked`) and the per-component gradient norms of
    the task loss of a model (for `gradient`)."""

    config: FinetuneConfig
    graph: Graph
    data: TaskData
    static: set[str]
    out_dir: Path
    free_reference: Callable[[], PreTrainedModel]
    node_scores: Callable[[PreTrainedModel], dict[str, float]]
    forecaster: Any = None
    masked_reference: Callable[[], PreTrainedModel] | None = None
    gradient_norms: Callable[[PreTrainedModel], dict[str, float]] | None = None

    def switch_step(self, warmup_checkpoints: int) -> int:
        """The step of checkpoint `warmup_checkpoints - 1`; ValueError if no step is left after it."""
        c = self.config
        switch = (warmup_checkpoints - 1) * c.every
        if switch >= c.steps:
            raise ValueError(
                f"a warm-up of {warmup_checkpoints} checkpoints every {c.every} steps "
                f"leaves none of {c.steps} steps"
            )
        return switch


class Strategy:
    """The set at step 0 (`initial`) and, if `reselects`, changes at re-selection steps;
    `needs_forecaster`: it reads `Context.forecaster` (or `config.forecaster`)."""

    name: ClassVar[str]
    reselects: ClassVar[bool] = False
    needs_forecaster: ClassVar[bool] = False

    def __init__(self, context: Context) -> None:
        self.context = context

    def initial(self) -> set[str]:
        """The set in force from step 1; default: the static circuit."""
        return set(self.context.static)

    def reselect(self, step: int, model: PreTrainedModel, scores: NodeScores) -> set[str] | None:
        """Called at every `every`-th step s < steps with the model and its node scores (computed
        on demand); a set replaces the one in force from step s + 1, None keeps it."""
        return None


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")  # in the order of registration

S = TypeVar("S", bound=type[Strategy])


def register_strategy(cls: S) -> S:
    """Class decorator: `cls` becomes strategy `cls.name` (`foresight.registry.Registry.register`:
    a name taken by another class is an error; the same class again, e.g. from a reloaded module,
    replaces itself)."""
    STRATEGIES.register(cls.name, cls)
    return cls


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as strategy `name`; ValueError naming the registered ones if none is."""
    return STRATEGIES.get(name)


def checked_strategy(name: str, every: int, steps: int) -> type[Strategy]:
    """The class of strategy `name`; ConfigError (every) if it re-selects but `every` is not below
    `steps`: it re-selects at steps every, 2 x every, ... before the last, so it never would."""
    cls = strategy_class(name)
    if cls.reselects and every >= steps:
        raise ConfigError(
            "every", f"{every} is not below steps ({steps}): strategy {name} would never re-select"
        )
    return cls


def forecasting_strategies() -> tuple[str, ...]:
    """The registered strategies that need a forecaster."""
    return tuple(name for name, cls in STRATEGIES.items() if cls.needs_forecaster)


@register_strategy
class Free(Strategy):
    """Every head and MLP (mode full: plain SFT of every parameter)."""

    name = "free"

    def initial(self) -> set[str]:
        return set(self.context.graph.member_names())


@register_strategy
class Static(Strategy):
    """The circuit at step 0: the old map."""

    name = "static"


@register_strategy
class Random(Strategy):
    """As many heads and as many MLPs as static, drawn with the run's seed."""

    name = "random"

    def initial(self) -> set[str]:
        c = self.context
        return select_random(c.graph.member_names(), *kind_counts(c.static), seed=c.config.seed)


@register_strategy
class Last(Strategy):
    """Static, then the current circuit once, at the switch step (where predictive switches)."""

    name = "last"
    reselects = True

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        warmup = context.config.warmup_checkpoints or DEFAULT_WARMUP_CHECKPOINTS
        self.switch = context.switch_step(warmup)

    def reselect(self, step: int, model: PreTrainedModel, scores: NodeScores) -> set[str] | None:
        return circuit(scores(), self.context.config.components) if step == self.switch else None


@register_strategy
class Gradient(Last):
    """Static, then once, at the switch step, the K heads and MLPs of largest gradient norm of
    the task loss (ties broken as `foresight.circuits.circuit` breaks them)."""

    name = "gradient"

    def reselect(self, step: int, model: PreTrainedModel, scores: NodeScores) -> set[str] | None:
        c = self.context
        return circuit(c.gradient_norms(model), c.config.components) if step == self.switch else None


@register_strategy
class Dynamic(Strategy):
    """Static, then the current circuit every `every` steps (re-localizing, no forecast)."""

    name = "dynamic"
    reselects = True

    def reselect(self, step: int, model: PreTrainedModel, scores: NodeScores) -> set[str] | None:
        return circuit(scores(), self.context.config.components)


@register_strategy
class Oracle(Strategy):
    """The circuit at the end of a free run of the same budget and seed (hindsight)."""

    name = "oracle"

    def initial(self) -> set[str]:
        return circuit(
            self.context.node_scores(self.context.free_reference()), self.context.config.components
        )


@register_strategy
class OracleMasked(Strategy):
    """The circuit at the end of a masked run of static of the same budget and seed."""

    name = "oracle-masked"

    def initial(self) -> set[str]:
        c = self.context
        return circuit(c.node_scores(c.masked_reference()), c.config.components)
