"""Every command-line option that sets a field of a settings record has that field's default
and help (they are built from the field), and every field is an option or hidden on purpose."""

from __future__ import annotations

from dataclasses import MISSING, fields

import click
import pytest
import typer
from typer.main import get_command

from foresight.app import cli
from foresight.app.options import config_options
from foresight.sft import SFTConfig
from foresight.updater.config import FinetuneConfig
from predictors.problem import ForecastProblem
from predictors.registry import FORECASTERS, make_forecaster
from trackers.tracker import TrackerSettings

# command -> (record, fields that are no option of it)
COMMANDS = {
    "sft": [(SFTConfig, (*cli.SFT_HIDDEN, *cli.SFT_ONLY_FULL))],
    "track": [(SFTConfig, cli.SFT_HIDDEN), (TrackerSettings, cli.TRACKER_HIDDEN)],
    "finetune": [(FinetuneConfig, cli.FINETUNE_HIDDEN)],
    "compare": [(FinetuneConfig, (*cli.FINETUNE_HIDDEN, "strategy", "seed"))],
}


def drift(command: click.Command, record: type, hidden: tuple[str, ...]) -> list[str]:
    """The fields of `record` whose option in `command` is missing or has another default."""
    options = {p.name: p for p in command.params}
    wrong = []
    for f in fields(record):
        if f.name in hidden:
            continue
        option = options.get(f.name)
        default = None if f.default is MISSING else f.default
        if option is None:
            wrong.append(f"{f.name}: no option")
        elif option.default != default and not (option.required and f.name == "strategy"):
            wrong.append(f"{f.name}: option default {option.default!r}, field default {default!r}")
    return wrong


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_default_is_its_field_default(name: str) -> None:
    command = get_command(cli.app).commands[name]
    for record, hidden in COMMANDS[name]:
        assert drift(command, record, hidden) == [], (name, record.__name__)


def test_track_takes_the_tracker_settings_pairs() -> None:
    """The drift this test was written for: `track --n-pairs` defaulted to 64, the tracker to 32."""
    command = get_command(cli.app).commands["track"]
    (n_pairs,) = [p for p in command.params if p.name == "n_pairs"]
    assert n_pairs.default == TrackerSettings().n_pairs == 32


def test_the_check_sees_a_drifting_default() -> None:
    """A command that declares its own `--n-pairs 64` beside TrackerSettings' 32 is caught, as
    is a field that is no option; one built with `config_options` is not."""
    app = typer.Typer()

    @app.command("drifting")
    def drifting(n_pairs: int = typer.Option(64)) -> None: ...

    @app.command("derived")
    @config_options(TrackerSettings)
    def derived(settings: dict | None = None) -> None: ...

    commands = get_command(app).commands
    hidden = tuple(f.name for f in fields(TrackerSettings) if f.name not in ("n_pairs", "every"))
    assert drift(commands["drifting"], TrackerSettings, hidden) == [
        "every: no option", "n_pairs: option default 64, field default 32",
    ]  # fmt: skip
    assert drift(commands["derived"], TrackerSettings, hidden) == []


@pytest.mark.parametrize("name", ["train", "eval"])
def test_forecast_options_are_the_problem_defaults(name: str) -> None:
    command = get_command(cli.app).commands["forecast"].commands[name]
    defaults = {p.name: p.default for p in command.params}
    problem = ForecastProblem()
    assert (defaults["prefix"], defaults["horizon"], defaults["circuit_size"]) == (
        problem.prefix, problem.horizon, problem.circuit_size,
    )  # fmt: skip


def test_an_alias_names_its_forecaster() -> None:
    """`lightgbm` is `lgbm` (the registry's alias, no longer the CLI's)."""
    problem = ForecastProblem(prefix=1, horizon=1, circuit_size=2)
    assert FORECASTERS.name("lightgbm") == "lgbm"
    assert type(make_forecaster("lightgbm", problem)) is type(make_forecaster("lgbm", problem))
    with pytest.raises(ValueError, match="unknown forecaster 'lightgbn'"):
        make_forecaster("lightgbn", problem)


def test_the_strategy_help_names_every_registered_strategy() -> None:
    from foresight.updater.strategies import STRATEGIES
    from predictors.strategies import Predictive  # noqa: F401  (registers the forecasting strategies)

    packages = ("foresight", "predictors")
    shipped = [n for n, cls in STRATEGIES.items() if cls.__module__.split(".")[0] in packages]
    help_text = next(f for f in fields(FinetuneConfig) if f.name == "strategy").metadata["help"]
    assert help_text.split(", ") == shipped  # test-only strategies (tests/dying_strategy.py) aside
