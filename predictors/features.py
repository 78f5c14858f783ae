"""Per-component features at checkpoint k, computed from checkpoints 0..k only.

`features_at(obs, problem, priors)` returns one row per component of the problem's level (sorted
by name) and the columns `FEATURES`. |score| is normalised by the largest |score| of the level at
the same checkpoint, so features compare across tasks. Checkpoints used: 0, k-2, k-1, k
(clipped at 0). Ranks are normalised to [0, 1], 0 = the largest |score|. Look-ahead: the
tracker's derivative of the score along the last update (`trackers.tracker`), signed and as
the change of |score|, over the same scale. Probe: |score| after the probe fine-tune, and its
change from step 0 (the probe's first-order change). Regime: the training the run observed
(masked LoRA or not, masked or free, log10 lr). Population priors (`population_priors`,
learned in `Forecaster.fit` from the training runs): per (kind, layer), the mean change of
normalised |score| from the first to the last checkpoint, and the share of final circuits
that a component of that kind and layer is in. Missing values (no grad_norm, no look-ahead,
no probe, no regime, no priors, no neighbour) are NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from foresight import components
from foresight.circuits import circuit
from foresight.components import KINDS
from predictors.problem import ForecastProblem, Observation, Trajectory, level_scores

FEATURES: tuple[str, ...] = (
    *(f"abs_{c}" for c in ("0", "km2", "km1", "k")),
    "signed_0",
    "signed_k",
    "d_abs_k_km1",
    "d_abs_km1_km2",
    "d_abs_k_0",
    "rank_0",
    "rank_km1",
    "rank_k",
    "d_rank_k_km1",
    "d_rank_k_0",
    "in_circuit_k",
    "in_circuit_0",
    "slope",
    "trend_at_target",
    "grad_norm_k",
    "grad_norm_mean",
    "d_grad_norm_k_0",
    "layer",
    "k",
    "steps_to_target",
    "probe_abs",
    "d_probe_abs_0",
    "lookahead_k",
    "lookahead_abs_k",
    "regime_lora",
    "regime_masked",
    "regime_log_lr",
    "prior_d_abs",
    "prior_in_circuit",
    *(f"kind_{k}" for k in KINDS),
    "layer_heads_mean",
    "layer_mlp",
    "prev_layer_heads_mean",
    "sender_abs",
    "receiver_abs",
)

LOOKAHEAD_FEATURES: tuple[str, ...] = ("lookahead_k", "lookahead_abs_k")
"""The features read from the tracker's look-ahead derivatives (the costliest tracked quantity)."""


def _normalised_abs(scores: np.ndarray) -> np.ndarray:
    """|scores| divided by each checkpoint's largest |score| (rows: checkpoints)."""
    a = np.abs(scores)
    top = a.max(axis=1, keepdims=True)
    return a / np.where(top > 0, top, 1.0)


def _in_circuit(values: np.ndarray, names: np.ndarray, n: int) -> np.ndarray:
    """1.0 for the members of the circuit of size n of `values` (by |value|), else 0.0."""
    members = circuit(dict(zip(names, values, strict=True)), n)
    return np.array([float(c in members) for c in names])


def _trend(absn: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope of |score| over checkpoint index and its value at `target`."""
    if len(absn) < 2:
        return np.zeros(absn.shape[1]), absn[-1]
    x = np.arange(len(absn), dtype=float)
    xc = x - x.mean()
    slope = xc @ (absn - absn.mean(axis=0)) / (xc @ xc)
    return slope, absn.mean(axis=0) + slope * (target - x.mean())


def _neighbourhood(
    names: np.ndarray, kind: np.ndarray, layer: np.ndarray, node_absk: pd.Series | None, n_layers: int
) -> dict[str, np.ndarray]:
    """Mean |score| at k of the same layer's heads, the layer's MLP and the previous layer's heads
    (nodes); |score| at k of sender and receiver node (edges; receiver a{L} = mean of layer L's heads)."""
    nan = np.full(len(names), np.nan)
    out = dict.fromkeys(FEATURES[-5:], nan)
    if node_absk is None:
        return out
    by_layer: dict[int, list[float]] = {}
    mlp: dict[int, float] = {}
    for c, v in node_absk.items():
        if components.kind(c) == "head":
            by_layer.setdefault(components.position(c, n_layers)[0], []).append(v)
        elif components.kind(c) == "mlp":
            mlp[components.position(c, n_layers)[0]] = v
    heads_mean = {layer: float(np.mean(v)) for layer, v in by_layer.items()}
    if (kind != "edge").all():
        out["layer_heads_mean"] = np.array([heads_mean.get(x, np.nan) for x in layer])
        out["layer_mlp"] = np.array([mlp.get(x, np.nan) for x in layer])
        out["prev_layer_heads_mean"] = np.array([heads_mean.get(x - 1, np.nan) for x in layer])
        return out

    def node_value(name: str) -> float:
        if name in node_absk.index:
            return float(node_absk[name])
        return heads_mean.get(components.position(name, n_layers)[0], np.nan)  # attention input a{L}

    ends = [components.edge_ends(c) for c in names]
    out["sender_abs"] = np.array([node_value(s) for s, _ in ends])
    out["receiver_abs"] = np.array([node_value(r) for _, r in ends])
    return out


Priors = dict[str, dict[str, float]]
"""Population priors: "{kind}:{layer}" -> {"d_abs": ..., "in_circuit": ...}."""


def _prior_key(kind: str, layer: int) -> str:
    return f"{kind}:{int(layer)}"


def population_priors(runs: Sequence[Trajectory], problem: ForecastProblem) -> Priors:
    """Per (kind, layer) of the problem's level, over `runs`: the mean change of normalised |score|
    from the first to the last checkpoint ("d_abs") and the mean share of the last checkpoint's
    circuit (`foresight.circuits.circuit`, circuit_size) membership ("in_circuit")."""
    means = pd.concat([_run_priors(run, problem) for run in runs]).groupby("key").mean()
    return {key: {c: float(v) for c, v in row.items()} for key, row in means.iterrows()}


def _run_priors(run: Trajectory, problem: ForecastProblem) -> pd.DataFrame:
    """One run's part of `population_priors`: per component its key, d_abs and in_circuit (kept
    in `run.memo`: every leave-one-out fold that trains on the run reads it)."""
    memo_key = ("priors", problem.level, problem.circuit_size)
    if memo_key not in run.memo:
        rows = run.rows[run.rows["level"] == problem.level]
        scores = run.scores(problem.level)
        absn = _normalised_abs(scores.to_numpy())
        names = scores.columns.to_numpy()
        meta = rows.drop_duplicates("component").set_index("component").loc[names]
        run.memo[memo_key] = pd.DataFrame(
            {
                "key": [_prior_key(kd, ly) for kd, ly in zip(meta["kind"], meta["layer"], strict=True)],
                "d_abs": absn[-1] - absn[0],
                "in_circuit": _in_circuit(absn[-1], names, problem.circuit_size),
            }
        )
    return run.memo[memo_key]


def features_at(obs: Observation, problem: ForecastProblem, priors: Priors | None = None) -> pd.DataFrame:
    """Features (component x FEATURES) of `obs` at its checkpoint k; reads nothing after k."""
    return with_priors(*prior_free_features(obs, problem), priors)


def with_priors(features: pd.DataFrame, keys: Sequence[str], priors: Priors | None) -> pd.DataFrame:
    """`features` with the prior_* columns of `priors` for rows of prior keys `keys` (NaN if absent)."""
    out = features.copy()
    for column in ("d_abs", "in_circuit"):
        out[f"prior_{column}"] = [(priors or {}).get(key, {}).get(column, np.nan) for key in keys]
    return out


def prior_free_features(obs: Observation, problem: ForecastProblem) -> tuple[pd.DataFrame, list[str]]:
    """`features_at` with NaN prior_* columns, and each row's prior key "{kind}:{layer}" (the
    part of the features that does not depend on the training runs, so it can be reused)."""
    history = obs.history[obs.history["ckpt"] <= obs.k]
    k, n_layers = obs.k, obs.graph.n_layers
    rows = history[history["level"] == problem.level]
    wide = rows.pivot(index="ckpt", columns="component", values=["score", "grad_norm", "lookahead"])
    names = wide["score"].columns.to_numpy()
    scores, grad = wide["score"].to_numpy(), wide["grad_norm"].to_numpy()
    absn = _normalised_abs(scores)
    ranks = (rankdata(-absn, axis=1) - 1) / max(len(names) - 1, 1)
    at = {"0": 0, "km2": max(k - 2, 0), "km1": max(k - 1, 0), "k": k}
    f = {f"abs_{tag}": absn[i] for tag, i in at.items()}
    scale = np.abs(scores).max(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    f["signed_0"], f["signed_k"] = scores[0] / scale[0], scores[k] / scale[k]
    f["d_abs_k_km1"] = f["abs_k"] - f["abs_km1"]
    f["d_abs_km1_km2"] = f["abs_km1"] - f["abs_km2"]
    f["d_abs_k_0"] = f["abs_k"] - f["abs_0"]
    f["rank_0"], f["rank_km1"], f["rank_k"] = ranks[0], ranks[at["km1"]], ranks[k]
    f["d_rank_k_km1"] = f["rank_k"] - f["rank_km1"]
    f["d_rank_k_0"] = f["rank_k"] - f["rank_0"]
    f["in_circuit_k"] = _in_circuit(absn[k], names, problem.circuit_size)
    f["in_circuit_0"] = _in_circuit(absn[0], names, problem.circuit_size)
    f["slope"], f["trend_at_target"] = _trend(absn, obs.target_index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN grad_norm columns
        f["grad_norm_mean"] = np.nanmean(grad, axis=0)
    f["grad_norm_k"], f["d_grad_norm_k_0"] = grad[k], grad[k] - grad[0]

    meta = rows[rows["ckpt"] == k].set_index("component").loc[names]
    kind, layer = meta["kind"].to_numpy(), meta["layer"].to_numpy()
    f["layer"] = (layer + 1) / (n_layers + 1)
    f["k"] = np.full(len(names), float(k))
    f["steps_to_target"] = np.full(len(names), float(obs.target_index - k))
    probe = obs.probe
    if probe is not None and (probe["level"] == problem.level).any():
        p = probe[probe["level"] == problem.level].set_index("component")["score"].reindex(names)
        f["probe_abs"] = np.abs(p.to_numpy()) / scale[0]
        f["d_probe_abs_0"] = f["probe_abs"] - f["abs_0"]
    else:
        f["probe_abs"] = f["d_probe_abs_0"] = np.full(len(names), np.nan)
    ahead = wide["lookahead"].to_numpy()[k] / scale[k]
    f["lookahead_k"], f["lookahead_abs_k"] = ahead, np.sign(scores[k]) * ahead
    last = rows[rows["ckpt"] == k].iloc[0]
    mode, strategy, lr = last["regime_mode"], last["regime_strategy"], last["regime_lr"]
    f["regime_lora"] = np.full(len(names), np.nan if pd.isna(mode) else float(mode == "lora"))
    f["regime_masked"] = np.full(len(names), np.nan if pd.isna(strategy) else float(strategy != "free"))
    f["regime_log_lr"] = np.full(len(names), np.log10(lr) if lr > 0 else np.nan)
    keys = [_prior_key(kd, ly) for kd, ly in zip(kind, layer, strict=True)]
    f["prior_d_abs"] = f["prior_in_circuit"] = np.full(len(names), np.nan)
    for kd in KINDS:
        f[f"kind_{kd}"] = (kind == kd).astype(float)
    if problem.level == "node":
        node_absk = pd.Series(absn[k], index=names)
    elif (history["level"] == "node").any():
        nodes = level_scores(history, "node")
        node_absk = pd.Series(_normalised_abs(nodes.to_numpy())[k], index=nodes.columns)
    else:
        node_absk = None
    f.update(_neighbourhood(names, kind, layer, node_absk, n_layers))
    frame = pd.DataFrame(
        {c: f[c] for c in FEATURES}, index=pd.Index(names, name="component"), dtype="float64"
    )
    return frame, keys
