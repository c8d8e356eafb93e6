"""Survival metrics on held-out patients, wrapping scikit-survival.

Every metric returns NaN and issues a ``MetricWarning`` when a fold is degenerate (no
events, no comparable pairs, evaluation times outside the follow-up range) instead of
raising, so one bad fold does not stop a cross-validation run.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv

from mmlego.survival import survival_at_times

logger = logging.getLogger(__name__)

DEFAULT_GRID_QUANTILES = (0.1, 0.9)
DEFAULT_GRID_SIZE = 20


class MetricWarning(UserWarning):
    """Warning for a survival metric that could not be computed on a fold (its value is NaN)."""


def _nan_with_warning(metric: str, reason: str) -> float:
    message = f"{metric} is NaN: {reason}"
    logger.warning(message)
    warnings.warn(message, MetricWarning, stacklevel=3)
    return float("nan")


def _survival_array(times: np.ndarray, censorship: np.ndarray) -> np.ndarray:
    events = np.asarray(censorship) == 0
    return Surv.from_arrays(event=events, time=np.asarray(times, dtype=float))


def harrell_c(risk: np.ndarray, times: np.ndarray, censorship: np.ndarray) -> float:
    """Return Harrell's C-index; higher risk should mean an earlier event."""
    risk = np.asarray(risk, dtype=float)
    events = np.asarray(censorship) == 0
    if not np.all(np.isfinite(risk)):
        return _nan_with_warning("c_index", "risk scores contain NaN or infinity")
    try:
        return float(concordance_index_censored(events, np.asarray(times, dtype=float), risk)[0])
    except ValueError as error:
        return _nan_with_warning("c_index", str(error))


def uno_c(
    risk: np.ndarray,
    times: np.ndarray,
    censorship: np.ndarray,
    train_times: np.ndarray,
    train_censorship: np.ndarray,
) -> float:
    """Return Uno's IPCW C-index truncated at tau = min(max test time, max training time).

    The censoring distribution is the Kaplan-Meier estimate on the training patients.
    Only test patients with a time below tau count.
    """
    risk = np.asarray(risk, dtype=float)
    times = np.asarray(times, dtype=float)
    train_times = np.asarray(train_times, dtype=float)
    if not np.all(np.isfinite(risk)):
        return _nan_with_warning("c_index_ipcw", "risk scores contain NaN or infinity")
    tau = float(min(times.max(), train_times.max()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            value = concordance_index_ipcw(
                _survival_array(train_times, train_censorship), _survival_array(times, censorship), risk, tau=tau
            )[0]
    except (ValueError, ZeroDivisionError, RuntimeWarning) as error:
        return _nan_with_warning("c_index_ipcw", str(error))
    if not np.isfinite(value):
        return _nan_with_warning("c_index_ipcw", "no comparable pairs below tau")
    return float(value)


def evaluation_times(
    times: np.ndarray,
    train_times: np.ndarray,
    *,
    quantiles: tuple[float, float] = DEFAULT_GRID_QUANTILES,
    size: int = DEFAULT_GRID_SIZE,
) -> np.ndarray:
    """Return a time grid between the given quantiles of the test times.

    The grid stays inside the test follow-up range [min, max) and below the maximum
    training time, as scikit-survival requires. It is empty when that range is empty.
    """
    times = np.asarray(times, dtype=float)
    low, high = np.quantile(times, quantiles)
    low = max(low, times.min())
    high = min(high, np.nextafter(times.max(), -np.inf), np.nextafter(np.asarray(train_times, dtype=float).max(), -np.inf))
    if not high > low:
        return np.empty(0)
    return np.unique(np.linspace(low, high, size))


def integrated_brier(
    curve: np.ndarray,
    inner_edges: np.ndarray,
    times: np.ndarray,
    censorship: np.ndarray,
    train_times: np.ndarray,
    train_censorship: np.ndarray,
) -> float:
    """Return the integrated Brier score of per-bin survival curves (P, n_bins).

    The curves are step functions at the bin edges (see ``survival_at_times``), evaluated
    on ``evaluation_times``.
    """
    grid = evaluation_times(times, train_times)
    if grid.size < 2:
        return _nan_with_warning("ibs", "fewer than two evaluation times inside the test follow-up range")
    estimate = survival_at_times(curve, inner_edges, grid)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            value = integrated_brier_score(
                _survival_array(train_times, train_censorship), _survival_array(times, censorship), estimate, grid
            )
    except (ValueError, ZeroDivisionError, RuntimeWarning) as error:
        return _nan_with_warning("ibs", str(error))
    return float(value)


def mean_cumulative_auc(
    risk: np.ndarray,
    times: np.ndarray,
    censorship: np.ndarray,
    train_times: np.ndarray,
    train_censorship: np.ndarray,
) -> float:
    """Return the mean cumulative/dynamic AUC over ``evaluation_times``."""
    risk = np.asarray(risk, dtype=float)
    if not np.all(np.isfinite(risk)):
        return _nan_with_warning("mean_auc", "risk scores contain NaN or infinity")
    grid = evaluation_times(times, train_times)
    if grid.size < 2:
        return _nan_with_warning("mean_auc", "fewer than two evaluation times inside the test follow-up range")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            _, value = cumulative_dynamic_auc(
                _survival_array(train_times, train_censorship), _survival_array(times, censorship), risk, grid
            )
    except (ValueError, ZeroDivisionError, RuntimeWarning) as error:
        return _nan_with_warning("mean_auc", str(error))
    if not np.isfinite(value):
        return _nan_with_warning("mean_auc", "no events or no controls at the evaluation times")
    return float(value)


def evaluate_survival(
    *,
    risk: np.ndarray,
    curve: np.ndarray,
    times: np.ndarray,
    censorship: np.ndarray,
    train_times: np.ndarray,
    train_censorship: np.ndarray,
    inner_edges: np.ndarray,
) -> dict[str, float]:
    """Return {c_index, c_index_ipcw, ibs, mean_auc} for held-out patients.

    ``risk`` (P,) and ``curve`` (P, n_bins) come from ``mmlego.survival.risk_score`` and
    ``survival_curve``. The training times and censorship estimate the censoring
    distribution. A metric that cannot be computed is NaN, with a ``MetricWarning``.
    """
    return {
        "c_index": harrell_c(risk, times, censorship),
        "c_index_ipcw": uno_c(risk, times, censorship, train_times, train_censorship),
        "ibs": integrated_brier(curve, inner_edges, times, censorship, train_times, train_censorship),
        "mean_auc": mean_cumulative_auc(risk, times, censorship, train_times, train_censorship),
    }
