"""Per-run forecast metrics: predicted scores vs the true future circuit.

With P = the predicted circuit (the top-n heads and MLPs by predicted score) and T = the true
circuit (`foresight.circuits.circuit` of the true scores; |P| = |T| = n): Jaccard = |P∩T| / |P∪T|,
precision@n (Top@K overlap) = |P∩T| / n, F1@n = 2|P∩T| / (|P| + |T|) (equal to precision@n
when both sets have n members). AUROC and average precision rank the candidates by predicted
score against membership in T; Spearman correlates predicted score with true |future score|.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from foresight.circuits import circuit, is_candidate

METRICS = ("jaccard", "f1", "precision_at_n", "auroc", "average_precision", "spearman")


def jaccard(a: Collection[str], b: Collection[str]) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def f1(predicted: Collection[str], true: Collection[str]) -> float:
    """2 |P ∩ T| / (|P| + |T|)."""
    p, t = set(predicted), set(true)
    return 2 * len(p & t) / (len(p) + len(t)) if p or t else 1.0


def run_metrics(predicted: pd.Series, true_scores: pd.Series, n: int) -> dict[str, float]:
    """METRICS of predicted scores (component -> score, higher = in circuit) against the signed
    true scores at the target checkpoint (component -> score), for circuit size n. Only circuit
    candidates (heads and MLPs, or edges) are scored: embed and logits are never members."""
    predicted = predicted[[is_candidate(c) for c in predicted.index]]
    true_scores = true_scores.reindex(predicted.index)
    if true_scores.isna().any():
        missing = true_scores.index[true_scores.isna()][:3].tolist()
        raise ValueError(f"no true score for predicted component(s) {missing}")
    pred_set, true_set = circuit(predicted, n, magnitude=False), circuit(true_scores, n)
    member = predicted.index.isin(list(true_set)).astype(int)
    both = member.min() < member.max()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = spearmanr(predicted.to_numpy(), true_scores.abs().to_numpy()).statistic
    return {
        "jaccard": jaccard(pred_set, true_set),
        "f1": f1(pred_set, true_set),
        "precision_at_n": len(pred_set & true_set) / n,
        "auroc": roc_auc_score(member, predicted.to_numpy()) if both else float("nan"),
        "average_precision": average_precision_score(member, predicted.to_numpy()) if both else float("nan"),
        "spearman": float(rho),
    }
