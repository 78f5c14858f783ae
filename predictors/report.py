"""The forecasting table rebuilt from per-run results alone: learned models over fit seeds, split
by regime, with cluster-level tests corrected by Holm.

Input: a per-run frame with `predictors.evaluate.PER_RUN_COLUMNS` (one row per model, fit seed
and held-out run). Baselines that do not depend on the seed (static, last, ...) need fit seed 0
only; a control is taken at the learned model's fit seed where it has one, else at seed 0.

For each fit seed s, regime r (all runs, then each regime) and learned model m, m@s is compared
with each control (`last`, `static`) by `foresight.stats.paired_test`: the family (a held-out
fold) is the unit of p, the task the unit of p_task, run-level Wilcoxon p_run is secondary.
Holm's correction runs, per fit seed and regime, over every (learned model, control) row, so
that picking the best model afterwards is counted. With 9 families the smallest exact two-sided
p is 2/2^9 = 0.0039, so 8 comparisons can reach an adjusted p of 0.031 at best.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from foresight.report import (
    FLOOR_COLUMNS,
    ReportError,
    evolution_markdown,
    floor_markdown,
    read_per_run_csv,
    strategy_markdown,
)
from foresight.stats import holm, paired_test
from predictors.evaluate import PER_RUN_COLUMNS, comparison_frame, paired_tests, summarize
from predictors.problem import ForecastProblem
from predictors.registry import LEARNED

CONTROLS = ("last", "static")
PREFIX_CONTROLS = ("last", "static", "anticipate")
ALL_REGIMES = "all"


def _at_seed(per_run: pd.DataFrame, model: str, seed: int) -> pd.DataFrame:
    rows = per_run[per_run["model"] == model]
    same = rows[rows["fit_seed"] == seed]
    return same if len(same) else rows[rows["fit_seed"] == 0]


def seed_tests(
    per_run: pd.DataFrame, controls: Sequence[str] = CONTROLS, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per (fit_seed, regime, model, control): the learned model's mean Jaccard `jaccard`,
    `foresight.stats.paired_test` columns with the family as the cluster, p_task (the task as the
    cluster), p_holm and p_task_holm (Holm per fit seed and regime over every learned model x
    control, those without this fit seed counted as made), significant and significant_task
    (adjusted p < alpha)."""
    models = [m for m in LEARNED if m in set(per_run["model"])]
    regimes = [ALL_REGIMES, *sorted(per_run["regime"].unique())]
    rows = []
    for seed in sorted(per_run.loc[per_run["model"].isin(models), "fit_seed"].unique()):
        for model in models:
            learned = per_run[(per_run["model"] == model) & (per_run["fit_seed"] == seed)]
            if learned.empty:
                continue
            for control in controls:
                both = pd.concat([learned, _at_seed(per_run, control, seed)])
                for regime in regimes:
                    part = both if regime == ALL_REGIMES else both[both["regime"] == regime]
                    family = paired_test(
                        part, model, control, "model", "jaccard", ["run"], "family", int(seed)
                    )
                    task = paired_test(part, model, control, "model", "jaccard", ["run"], "task", int(seed))
                    jaccard = part.loc[part["model"] == model, "jaccard"].mean()
                    rows.append(
                        {"fit_seed": seed, "regime": regime, "model": model, "control": control}
                        | {"jaccard": jaccard, **family, "p_task": task["p"], "n_tasks": task["n_clusters"]}
                    )
    tests = pd.DataFrame(rows)
    family = tests.groupby(["fit_seed", "regime"])
    made = len(models) * len(controls)  # a model without this fit seed still counts as compared
    tests["p_holm"] = family["p"].transform(lambda p: holm(p.to_numpy(), made - len(p)))
    tests["p_task_holm"] = family["p_task"].transform(lambda p: holm(p.to_numpy(), made - len(p)))
    tests["significant"] = tests["p_holm"] < alpha
    tests["significant_task"] = tests["p_task_holm"] < alpha
    return tests


def seed_summary(tests: pd.DataFrame) -> pd.DataFrame:
    """Per (regime, model): fit seeds, mean ± sd over seeds of the mean Jaccard and of the gain
    over each control (mean of family means), the median family-level p over seeds and how many
    seeds are significant after Holm with the family and with the task as the unit, as strings."""

    def pm(v: pd.Series) -> str:
        return f"{v.mean():+.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():+.4f}"

    rows = []
    for (regime, model), part in tests.groupby(["regime", "model"], sort=False):
        row = {"regime": regime, "model": model, "fit seeds": part["fit_seed"].nunique()}
        first = part[part["control"] == part["control"].iloc[0]]
        row["Jaccard@n"] = pm(first["jaccard"]).lstrip("+")
        for control, c in part.groupby("control", sort=False):
            row[f"gain vs {control}"] = pm(c["mean_diff"])
            row[f"median p ({control})"] = f"{c['p'].median():.3g}"
            row[f"significant seeds ({control}): family, task"] = (
                f"{int(c['significant'].sum())}/{len(c)}, {int(c['significant_task'].sum())}/{len(c)}"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def seeded_report(per_run: pd.DataFrame, problem: ForecastProblem, corpus: str) -> str:
    """The markdown forecasting report of a per-run frame: the summary over fit seeds by regime,
    every seed's tests, and fit seed 0's full metric table (held-out families as columns)."""
    tests = seed_tests(per_run)
    n_holm = int(tests.groupby(["fit_seed", "regime"]).size().max())
    runs = per_run.drop_duplicates("run")
    regimes = runs["regime"].value_counts().to_dict()
    detail = tests[tests["regime"] == ALL_REGIMES][
        [
            "model",
            "fit_seed",
            "control",
            "mean_diff",
            "ci_lo",
            "ci_hi",
            "p",
            "p_holm",
            "p_task",
            "p_task_holm",
            "p_run",
        ]
    ]
    seed0 = per_run[per_run["fit_seed"] == 0].assign(task=lambda f: f["family"])
    parts = [
        f"# Forecasting the final circuit (prefix k={problem.prefix}, n={problem.circuit_size}, "
        f"level {problem.level}), leave-one-family-out",
        "",
        f"Corpus {corpus}: {len(runs)} runs, {runs['task'].nunique()} tasks in "
        f"{runs['family'].nunique()} families, regimes {regimes}. Gain: mean over families of the "
        "per-family mean of Jaccard(model) - Jaccard(control) over paired held-out runs. p: two-sided "
        "sign-flip test over families (exact; the smallest attainable p is 2/2^9 = 0.0039), Holm "
        f"over the {n_holm} (learned model x control) comparisons of each fit seed and regime; a seed "
        "is significant when its Holm-adjusted p < 0.05. With the task as the unit (30 tasks, but "
        "near-copies within a family) the same tests are more powerful and less valid.",
        "",
        seed_summary(tests).to_markdown(index=False),
        "",
        "Every fit seed, all regimes (family-level p, task-level p_task, run-level Wilcoxon p_run, "
        "percentile bootstrap 95% interval over families):",
        "",
        detail.to_markdown(index=False, floatfmt=".4g"),
        "",
        "Fit seed 0, every model (mean over held-out runs, bootstrap interval over runs; "
        "J per held-out family):",
        "",
        comparison_frame(summarize(seed0)).reset_index().to_markdown(index=False),
        "",
    ]
    return "\n".join(parts)


def jaccard_by_prefix(per_run: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From per-run results with column k (one fit seed): mean Jaccard@n over held-out runs (one
    row per prefix k, one column per model) and the family-level tests (`paired_tests`, Holm per
    k over every learned model x control in PREFIX_CONTROLS)."""
    models = list(dict.fromkeys(per_run["model"]))
    table = per_run.pivot_table(index="k", columns="model", values="jaccard", aggfunc="mean")[models]
    controls = [c for c in PREFIX_CONTROLS if c in models]
    pairs = [(m, c) for m in models if m in LEARNED for c in controls]
    tests = [paired_tests(part, pairs).assign(k=k) for k, part in per_run.groupby("k")]
    return table, pd.concat(tests, ignore_index=True)


def tests_table(tests: pd.DataFrame) -> pd.DataFrame:
    """One row per k, one column per (learned model - control): "+0.031 (p 0.012)", the mean of
    family means and the Holm-adjusted family-level p."""
    pair = tests["a"] + " - " + tests["b"]
    cell = tests.apply(lambda r: f"{r['mean_diff']:+.3f} (p {r['p_holm']:.2g})", axis=1)
    wide = tests.assign(pair=pair, cell=cell).pivot(index="k", columns="pair", values="cell")
    return wide[list(dict.fromkeys(pair))]


def prefix_markdown(per_run: pd.DataFrame, corpus: str) -> str:
    """The by-prefix report of per-run results with column k: the mean Jaccard table and the
    tests table (`jaccard_by_prefix`)."""
    table, tests = jaccard_by_prefix(per_run)
    n, seeds = int(per_run["n"].iloc[0]), sorted(per_run["fit_seed"].unique().tolist())
    return (
        f"Mean Jaccard@{n} with the final circuit, leave-one-family-out over {corpus}, node level, "
        f"fit seed {seeds}; k = last observed checkpoint.\n\n"
        + table.rename(index=str).reset_index().to_markdown(index=False, floatfmt=".3f")
        + f"\n\nCluster-level paired tests at each k ({int(tests['n_runs'].max())} held-out runs in "
        f"{int(tests['n_clusters'].max())} families): mean over families of the mean difference of "
        f"Jaccard@{n}, learned model minus control, and the exact sign-flip p over families "
        f"(smallest attainable: 2/2^{int(tests['n_clusters'].max())}), Holm-adjusted over the "
        f"{tests.groupby('k').size().max()} comparisons at that k:\n\n"
        + tests_table(tests).reset_index().to_markdown(index=False)
        + "\n"
    )


def corpus_size_tests(per_run: pd.DataFrame) -> pd.DataFrame:
    """One row per (fit_seed, model, fraction) of a corpus-size per-run frame (PER_RUN_COLUMNS,
    fraction: the share of the other families' runs each fold trained on, train_runs: that
    training set's size; `last` rows without a fraction): mean Jaccard, mean training runs per
    fold and the family-level `paired_test` against `last` (fit seed 0's), Holm per fit seed
    over every (model, fraction)."""
    last = per_run[per_run["model"] == "last"]
    learned = per_run[per_run["model"] != "last"]
    rows = []
    for (seed, model, fraction), part in learned.groupby(["fit_seed", "model", "fraction"], sort=False):
        test = paired_test(pd.concat([part, last]), model, "last", "model", "jaccard", ["run"], "family")
        rows.append(
            {"fit_seed": seed, "model": model, "fraction": fraction, "jaccard": part["jaccard"].mean()}
            | {"train_runs": part.groupby("family")["train_runs"].first().mean(), **test}
        )
    tests = pd.DataFrame(rows)
    tests["p_holm"] = tests.groupby("fit_seed")["p"].transform(lambda p: holm(p.to_numpy()))
    return tests


def corpus_size_markdown(per_run: pd.DataFrame, corpus: str) -> str:
    """The corpus-size report of a per-run frame (`corpus_size_tests`): per model and fraction
    the mean, min and max over fit seeds of Jaccard@n and of the gain over `last`, and how many
    seeds beat `last` after Holm; then every seed's test."""
    tests = corpus_size_tests(per_run)
    n = int(per_run["n"].iloc[0])
    spread = tests.groupby(["model", "fraction"], sort=False).agg(
        train_runs=("train_runs", "mean"),
        jaccard_mean=("jaccard", "mean"),
        jaccard_min=("jaccard", "min"),
        jaccard_max=("jaccard", "max"),
        gain_mean=("mean_diff", "mean"),
        gain_min=("mean_diff", "min"),
        gain_max=("mean_diff", "max"),
        significant=("p_holm", lambda p: f"{int((p < 0.05).sum())}/{len(p)}"),
    )
    last = per_run[per_run["model"] == "last"]
    columns = ["model", "fraction", "fit_seed", "train_runs", "jaccard", "mean_diff", "ci_lo", "ci_hi"]
    return (
        f"# Corpus size vs held-out Jaccard@{n} (leave-one-family-out, prefix k = "
        f"{int(per_run['k'].iloc[0])})\n\n"
        f"Corpus {corpus}: `last` on the same {len(last)} held-out runs in "
        f"{last['family'].nunique()} families: {last['jaccard'].mean():.3f}. Each fold trains on a "
        "random `fraction` of the other families' runs (train_runs: mean per fold), drawn with the "
        "fit seed. Gain: mean over families of Jaccard(model) - Jaccard(last); p: exact sign-flip "
        "over families, Holm per fit seed over every (model, fraction); significant: seeds with "
        "p_holm < 0.05.\n\n"
        + spread.reset_index().to_markdown(index=False, floatfmt=".3f")
        + "\n\nEvery fit seed (run-level Wilcoxon p_run secondary):\n\n"
        + tests[[*columns, "p", "p_holm", "p_run"]].to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )


def rebuild(path: Path) -> str:
    """The markdown report of a per-run CSV: a strategy study (column strategy:
    `foresight.report.strategy_markdown`; a design-study CSV is an error naming its script), the
    evolution study (`foresight.report.evolution_markdown`), a noise floor
    (`foresight.report.floor_markdown`), corpus size (column fraction: `corpus_size_markdown`),
    forecasting by prefix (several k) or the forecasting table over fit seeds (`seeded_report`)."""
    frame = pd.read_csv(path)
    if "strategy" in frame:
        if frame["strategy"].astype(str).str.contains("@").any():
            raise ReportError(
                f"{path}: a design-study CSV (strategies labelled strategy@arm); its table is rebuilt "
                f"by python experiments/study_design.py --per-run {path}"
            )
        return strategy_markdown(read_per_run_csv(path), f"Strategy comparison ({path.name})")
    if "cd_start_head" in frame:
        return evolution_markdown(frame, f"Circuit evolution ({path.name})")
    if set(frame.columns) == set(FLOOR_COLUMNS):
        return floor_markdown(frame, f"Noise floor of Circuit Distance ({path.name})")
    missing = sorted(set(PER_RUN_COLUMNS) - set(frame.columns))
    if missing:
        raise ReportError(f"{path}: not a per-run results CSV (missing columns {', '.join(missing)})")
    if "fraction" in frame:
        return corpus_size_markdown(frame, path.name)
    if frame["k"].nunique() > 1:
        return prefix_markdown(frame, path.name)
    problem = ForecastProblem(int(frame["k"].iloc[0]), "final", int(frame["n"].iloc[0]))
    return seeded_report(frame, problem, path.name)
