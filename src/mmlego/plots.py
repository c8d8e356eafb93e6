"""Result plots: C-index per method and fold, and Kaplan-Meier curves by risk group."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sksurv.compare import compare_survival  # noqa: E402
from sksurv.nonparametric import kaplan_meier_estimator  # noqa: E402

from mmlego.atomic import atomic_path  # noqa: E402
from mmlego.evaluate import _method_order  # noqa: E402


def plot_c_index(metrics: pd.DataFrame, path: str | Path, *, title: str) -> None:
    """Save a dot plot of Harrell's C per method (rows) and fold (points), with the mean."""
    table = metrics[metrics["metric"] == "c_index"]
    methods = _method_order(table["method"].unique())
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(methods) + 1.5))
    for row, method in enumerate(methods):
        values = table.loc[table["method"] == method, "value"].to_numpy(float)
        axes.scatter(values, np.full(values.shape, row), color="tab:blue", alpha=0.7, s=25)
        if np.isfinite(values).any():
            axes.plot([np.nanmean(values)] * 2, [row - 0.3, row + 0.3], color="black", lw=2)
    axes.axvline(0.5, color="grey", ls="--", lw=1)
    axes.set_yticks(range(len(methods)), methods)
    axes.invert_yaxis()
    axes.set_xlabel("Harrell's C on held-out patients (dots: folds, bar: mean)")
    axes.set_title(title)
    _save(figure, path)


def risk_groups(predictions: pd.DataFrame) -> pd.Series:
    """Label each held-out patient "high" or "low" risk by its fold's median risk.

    The median is taken within each fold, so risk scales that differ between folds'
    models do not decide the groups; the groups are then pooled over folds.
    """
    median = predictions.groupby("fold")["risk"].transform("median")
    return pd.Series(np.where(predictions["risk"] > median, "high", "low"), index=predictions.index)


def plot_kaplan_meier(
    pooled: Mapping[str, pd.DataFrame], labels: pd.DataFrame, path: str | Path, *, title: str
) -> dict[str, float]:
    """Save Kaplan-Meier curves of high- and low-risk groups, one panel per method.

    ``pooled[method]`` contains the out-of-fold predictions of every fold (columns ``fold``
    and ``risk``, index ``case_id``). Returns each method's log-rank p-value.
    """
    methods = _method_order(list(pooled))
    columns = min(3, len(methods))
    rows = math.ceil(len(methods) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    p_values = {}
    for axis, method in zip(axes.flat, methods):
        p_values[method] = _kaplan_meier_panel(axis, method, pooled[method], labels)
    for axis in axes.flat[len(methods) :]:
        axis.set_visible(False)
    figure.suptitle(title)
    _save(figure, path)
    return p_values


def _kaplan_meier_panel(axis, method: str, predictions: pd.DataFrame, labels: pd.DataFrame) -> float:
    groups = risk_groups(predictions)
    times = labels.loc[predictions.index, "survival_months"].to_numpy(float)
    events = labels.loc[predictions.index, "censorship"].to_numpy(float) == 0
    for group, color in (("low", "tab:blue"), ("high", "tab:red")):
        chosen = (groups == group).to_numpy()
        if chosen.sum() == 0:
            continue
        curve_times, survival = kaplan_meier_estimator(events[chosen], times[chosen])
        axis.step(curve_times, survival, where="post", color=color, label=f"{group} risk (n={chosen.sum()})")
    p_value = _log_rank_p(events, times, groups.to_numpy())
    axis.set_title(f"{method}\nlog-rank p = {p_value:.2g}", fontsize=10)
    axis.set_xlabel("months")
    axis.set_ylabel("survival probability")
    axis.set_ylim(0, 1.02)
    axis.legend(fontsize=8, loc="lower left")
    return p_value


def _log_rank_p(events: np.ndarray, times: np.ndarray, groups: np.ndarray) -> float:
    if len(np.unique(groups)) < 2 or not events.any():
        return math.nan
    outcome = np.array(list(zip(events, times)), dtype=[("event", bool), ("time", float)])
    _, p_value = compare_survival(outcome, groups)
    return float(p_value)


def _save(figure, path: str | Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp_path:
        figure.savefig(tmp_path, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(figure)
