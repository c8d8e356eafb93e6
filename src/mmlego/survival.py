"""Discrete-time survival: time bins, the NLL loss of Zadeh & Schmid (2020), curves and risk.

Conventions: ``censorship`` is 1 for a censored patient and 0 for an observed event
(event = 1 - censorship). Logits (B, n_bins) give hazards h = sigmoid(logits), the
probability of the event in bin j given survival to its start.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

logger = logging.getLogger(__name__)

DEFAULT_N_BINS = 4
DEFAULT_ALPHA = 0.4


class BinEdgeWarning(UserWarning):
    """Warning for time bins that are empty because event-time quantiles coincide."""


def fit_bin_edges(times: np.ndarray, censorship: np.ndarray, *, n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """Return the n_bins - 1 inner bin edges: quantiles of the event (uncensored) times.

    Fit on training patients only. The outer edges are -inf and +inf, so bin 0 is
    (-inf, e_1] and the last bin is (e_{n_bins-1}, +inf).
    """
    times = np.asarray(times, dtype=float)
    censorship = np.asarray(censorship)
    if times.shape != censorship.shape or times.ndim != 1:
        raise ValueError(
            f"times and censorship must be 1-D arrays of equal length, found shapes {times.shape} and {censorship.shape}"
        )
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, found {n_bins}")
    event_times = times[censorship == 0]
    if event_times.size < n_bins:
        raise ValueError(
            f"fitting {n_bins} time bins needs at least {n_bins} events, found {event_times.size}. "
            f"Use fewer bins or more patients"
        )
    quantiles = np.arange(1, n_bins) / n_bins
    edges = np.quantile(event_times, quantiles)
    if np.any(np.diff(edges) <= 0):
        warnings.warn(
            f"event-time quantiles coincide, so some of the {n_bins} bins are empty: inner edges {edges.tolist()}",
            BinEdgeWarning,
            stacklevel=2,
        )
    return edges


def assign_bins(times: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Return the bin label of each time: j such that e_j < t <= e_{j+1} (edges -inf, inner, +inf)."""
    times = np.asarray(times, dtype=float)
    return np.searchsorted(np.asarray(inner_edges, dtype=float), times, side="left").astype(np.int64)


def nll_survival_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    censorship: torch.Tensor,
    *,
    alpha: float = DEFAULT_ALPHA,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Return the discrete-time survival NLL averaged over the batch.

    With h = sigmoid(logits), S_j = prod_{i<=j} (1 - h_i) and S_{-1} = 1, for label y and
    censorship c:

        uncensored = -(1 - c) * (log S_{y-1} + log h_y)
        censored   = -c * log S_y
        loss       = (1 - alpha) * (uncensored + censored) + alpha * uncensored

    Probabilities are clamped to at least ``eps`` before the log.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, n_bins), found {tuple(logits.shape)}")
    labels = labels.long().reshape(-1, 1)  # (B, 1)
    censorship = censorship.to(logits.dtype).reshape(-1, 1)  # (B, 1)
    if labels.shape[0] != logits.shape[0] or censorship.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels and censorship need one entry per row of logits ({logits.shape[0]}), "
            f"found {labels.shape[0]} and {censorship.shape[0]}"
        )
    if bool((labels < 0).any()) or bool((labels >= logits.shape[1]).any()):
        raise ValueError(f"labels must be in [0, {logits.shape[1]}), found {labels.flatten().tolist()}")

    hazards = torch.sigmoid(logits)  # (B, T)
    survival = torch.cumprod(1 - hazards, dim=1)  # (B, T)
    survival_padded = torch.cat([torch.ones_like(survival[:, :1]), survival], dim=1)  # (B, T + 1), S_{-1} = 1

    survival_before = survival_padded.gather(1, labels).clamp_min(eps)  # S_{y-1}
    hazard_at = hazards.gather(1, labels).clamp_min(eps)  # h_y
    survival_at = survival_padded.gather(1, labels + 1).clamp_min(eps)  # S_y

    uncensored = -(1 - censorship) * (torch.log(survival_before) + torch.log(hazard_at))
    censored = -censorship * torch.log(survival_at)
    loss = (1 - alpha) * (uncensored + censored) + alpha * uncensored
    return loss.mean()


def survival_curve(logits: torch.Tensor) -> torch.Tensor:
    """Return S_j = prod_{i<=j} (1 - sigmoid(logits_i)), shape (B, n_bins): survival past bin j."""
    return torch.cumprod(1 - torch.sigmoid(logits), dim=1)


def risk_score(logits: torch.Tensor) -> torch.Tensor:
    """Return the risk -sum_j S_j, shape (B,). Higher means an earlier expected event."""
    return -survival_curve(logits).sum(dim=1)


def survival_at_times(curve: np.ndarray, inner_edges: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Evaluate per-bin survival curves (P, n_bins) as step functions at ``times`` -> (P, len(times)).

    S(t) = 1 before the first inner edge, and S_j from edge e_{j+1} on (S_j is survival past
    bin j, which ends at e_{j+1}). The last bin is open, so S_{n_bins-1} is never reached.
    """
    curve = np.asarray(curve, dtype=float)
    padded = np.concatenate([np.ones((curve.shape[0], 1)), curve], axis=1)  # (P, n_bins + 1)
    passed = np.searchsorted(np.asarray(inner_edges, dtype=float), np.asarray(times, dtype=float), side="right")
    return padded[:, passed]
