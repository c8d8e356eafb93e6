"""Per (method, fold) survival metrics, the long-format metrics table and its summary."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mmlego.metrics import evaluate_survival
from mmlego.predictions import read_predictions, survival_columns

logger = logging.getLogger(__name__)

METRICS = ("c_index", "c_index_ipcw", "ibs", "mean_auc")
LOWER_IS_BETTER = {"ibs"}


def fold_metrics(
    predictions: pd.DataFrame,
    inner_edges: np.ndarray,
    labels: pd.DataFrame,
    train_ids: list[str],
) -> dict[str, float]:
    """Score one method on one fold's held-out patients.

    ``predictions`` is indexed by case_id with ``risk`` and ``survival_bin_*`` columns;
    ``labels`` is indexed by case_id with ``survival_months`` and ``censorship``; the
    training patients estimate the censoring distribution for the IPCW metrics.
    """
    missing = predictions.index.difference(labels.index)
    if len(missing):
        raise ValueError(f"predictions for patients absent from the cohort table: {list(missing[:5])}")
    test = labels.loc[predictions.index]
    train = labels.loc[[case for case in train_ids if case in labels.index]]
    return evaluate_survival(
        risk=predictions["risk"].to_numpy(float),
        curve=predictions[survival_columns(predictions)].to_numpy(float),
        times=test["survival_months"].to_numpy(float),
        censorship=test["censorship"].to_numpy(float),
        train_times=train["survival_months"].to_numpy(float),
        train_censorship=train["censorship"].to_numpy(float),
        inner_edges=np.asarray(inner_edges, dtype=float),
    )


def metrics_table(
    prediction_paths: Mapping[tuple[str, int], str | Path],
    labels: pd.DataFrame,
    train_ids: Mapping[int, list[str]],
) -> pd.DataFrame:
    """Return the long table (method, fold, metric, value) for every prediction file.

    Besides the survival metrics it contains ``gradient_steps`` (steps spent on multimodal
    training, NaN where the method is not fit by gradient steps), ``seconds`` and
    ``n_patients``.
    """
    rows = []
    for (method, fold), path in sorted(prediction_paths.items()):
        predictions, record = read_predictions(path)
        scores = fold_metrics(predictions, np.asarray(record.inner_edges), labels, train_ids[fold])
        scores["gradient_steps"] = record.gradient_steps
        scores["seconds"] = record.seconds
        scores["n_patients"] = len(predictions)
        logger.info("%s fold %d: %s", method, fold, _format_scores(scores))
        rows += [(method, fold, name, value) for name, value in scores.items()]
    return pd.DataFrame(rows, columns=["method", "fold", "metric", "value"])


def summary_markdown(metrics: pd.DataFrame, *, title: str) -> str:
    """Return a Markdown table: mean ± sample sd over folds, one row per method.

    The best mean of each survival metric is in bold (highest, or lowest for ``ibs``).
    """
    wide = metrics.pivot_table(index=["method", "fold"], columns="metric", values="value", dropna=False)
    grouped = wide.groupby(level="method")
    means, sds, counts = grouped.mean(), grouped.std(ddof=1), grouped.size()
    best = {}
    for metric in METRICS:
        if metric in means and means[metric].notna().any():
            column = means[metric]
            best[metric] = column.idxmin() if metric in LOWER_IS_BETTER else column.idxmax()

    columns = [m for m in METRICS if m in means] + ["gradient_steps"]
    header = ["method", "folds"] + columns
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in _method_order(means.index):
        cells = [method, str(counts[method])]
        for metric in columns:
            cell = _mean_sd(means.at[method, metric], sds.at[method, metric])
            if metric == "gradient_steps":
                cell = _format_steps(means.at[method, metric])
            elif best.get(metric) == method:
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mean ± sample standard deviation over folds of held-out patients. Bold: best mean per",
        "metric (lowest for the integrated Brier score `ibs`). `gradient_steps`: mean steps",
        "spent on multimodal training per fold (n/a for methods not fit by gradient steps).",
        "",
    ]
    return "\n".join(lines)


def _method_order(methods) -> list[str]:
    lead = ["legomerge", "legofuse", "early_fusion", "late_fusion", "coxnet"]
    ordered = [m for m in lead if m in methods]
    return ordered + sorted(m for m in methods if m not in ordered)


def _mean_sd(mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(sd):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {sd:.3f}"


def _format_steps(mean: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.0f}"


def _format_scores(scores: Mapping[str, float]) -> str:
    return " ".join(f"{name}={value:.4f}" for name, value in scores.items() if name in METRICS)
