"""Saving and loading fitted forecasters.

A forecaster directory holds `forecaster.json` (format, model type, seed, problem, feature
names, graph (`Graph.to_dict`) and its fingerprint; n_checkpoints; the population priors;
the forecaster's JSON state) and, for learned models, the model file (LightGBM text model `model.txt`, torch
state_dict `model.pt`). A loaded forecaster raises ForecasterMismatch on runs of another graph.
"""

from __future__ import annotations

import json
from pathlib import Path

from foresight.graph import Graph
from foresight.jsonfile import read_json_object
from predictors.base import Forecaster
from predictors.features import FEATURES
from predictors.problem import ForecasterMismatch, ForecastProblem
from predictors.registry import make_forecaster

SPEC_FILE = "forecaster.json"
FORMAT = 3


def save_forecaster(forecaster: Forecaster, directory: str | Path) -> Path:
    """Write a fitted `forecaster` to `directory` (created if missing); returns the directory."""
    if forecaster.graph is None:
        raise ValueError(f"{forecaster.name}: save before fit")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    graph = forecaster.graph
    spec = {
        "format": FORMAT,
        "model_type": forecaster.name,
        "seed": forecaster.seed,
        "problem": forecaster.problem.to_dict(),
        "feature_names": list(FEATURES),
        "graph": graph.to_dict(),
        "graph_fingerprint": graph.fingerprint(),
        "n_checkpoints": forecaster.n_checkpoints,
        "priors": forecaster.priors,
        "state": forecaster.state(),
    }
    forecaster.save_model(directory)
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    return directory


def load_forecaster(directory: str | Path) -> Forecaster:
    """The forecaster saved in `directory`. ForecasterMismatch if it was saved with other features
    or its graph fingerprint does not match its graph."""
    directory = Path(directory)
    file = directory / SPEC_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{directory}: no {SPEC_FILE} (not a saved forecaster)")
    spec = read_json_object(file, "forecaster spec")
    if spec.get("format") != FORMAT:
        raise ValueError(f"{file}: format {spec.get('format')!r}, this version reads {FORMAT}")
    if spec["feature_names"] != list(FEATURES):
        raise ForecasterMismatch(f"{file}: saved with other features than this version computes")
    forecaster = make_forecaster(spec["model_type"], ForecastProblem.from_dict(spec["problem"]), spec["seed"])
    forecaster.graph = Graph.from_dict(spec["graph"])
    if forecaster.graph.fingerprint() != spec["graph_fingerprint"]:
        raise ForecasterMismatch(f"{file}: graph fingerprint does not match its graph")
    forecaster.n_checkpoints = spec["n_checkpoints"]
    forecaster.priors = spec["priors"]
    forecaster.set_state(spec["state"])
    forecaster.load_model(directory)
    return forecaster
