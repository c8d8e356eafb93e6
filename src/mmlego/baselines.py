"""Baselines scored on the same folds and preprocessing as MM-Lego.

- ``coxnet``: an elastic-net Cox model (scikit-survival) on the concatenated modalities,
  its penalty chosen by inner cross-validation on the training patients only;
- ``early_fusion``: one self-normalising network on the concatenated modalities;
- ``late_fusion``: the mean risk and survival curve of the unimodal blocks.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sksurv.linear_model import CoxnetSurvivalAnalysis
from torch import nn

from mmlego.metrics import harrell_c
from mmlego.nn.encoders import SNN

logger = logging.getLogger(__name__)


def _structured(times: np.ndarray, censorship: np.ndarray) -> np.ndarray:
    return np.array(
        list(zip(np.asarray(censorship) == 0, np.asarray(times, dtype=float))),
        dtype=[("event", bool), ("time", float)],
    )


def fit_coxnet(
    x_train: np.ndarray,
    times: np.ndarray,
    censorship: np.ndarray,
    *,
    l1_ratio: float = 0.5,
    n_alphas: int = 30,
    alpha_min_ratio: float = 0.05,
    inner_folds: int = 3,
    seed: int = 0,
) -> tuple[CoxnetSurvivalAnalysis, float, dict]:
    """Fit an elastic-net Cox model whose penalty maximises inner cross-validated C.

    The penalty path comes from all training patients; each inner fold refits the path on
    its training part and scores every penalty by Harrell's C on its held-out part. The
    model is then refit on all training patients. Returns the model, the chosen penalty
    and the inner scores.
    """
    with warnings.catch_warnings():
        # The path's smallest penalties may stop at max_iter; the inner CV judges them anyway.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _fit_coxnet(x_train, times, censorship, l1_ratio, n_alphas, alpha_min_ratio, inner_folds, seed)


def _fit_coxnet(x_train, times, censorship, l1_ratio, n_alphas, alpha_min_ratio, inner_folds, seed):
    outcome = _structured(times, censorship)
    path_model = _coxnet(l1_ratio, n_alphas, alpha_min_ratio).fit(x_train, outcome)
    alphas = path_model.alphas_
    scores = np.zeros((inner_folds, len(alphas)))
    splitter = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    for index, (inner_train, inner_test) in enumerate(splitter.split(x_train, outcome["event"])):
        model = _coxnet(l1_ratio, n_alphas, alpha_min_ratio, alphas=alphas)
        model.fit(x_train[inner_train], outcome[inner_train])
        for column, alpha in enumerate(alphas):
            risk = model.predict(x_train[inner_test], alpha=alpha)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores[index, column] = harrell_c(risk, times[inner_test], censorship[inner_test])
    mean_scores = np.nanmean(np.where(np.isfinite(scores), scores, np.nan), axis=0)
    best = int(np.nanargmax(mean_scores))
    final = _coxnet(l1_ratio, n_alphas, alpha_min_ratio, alphas=alphas, baseline=True).fit(x_train, outcome)
    chosen = float(alphas[best])
    logger.info(
        "coxnet: penalty %.4g chosen by inner %d-fold C = %.3f (%d non-zero coefficients)",
        chosen, inner_folds, mean_scores[best], int(np.count_nonzero(final.coef_[:, best])),
    )
    details = {"alpha": chosen, "inner_c_index": float(mean_scores[best]), "l1_ratio": l1_ratio}
    return final, chosen, details


def _coxnet(l1_ratio, n_alphas, alpha_min_ratio, *, alphas=None, baseline=False):
    model = CoxnetSurvivalAnalysis(
        l1_ratio=l1_ratio,
        n_alphas=n_alphas,
        alpha_min_ratio=alpha_min_ratio,
        alphas=alphas,
        fit_baseline_model=baseline,
        max_iter=100_000,
    )
    return model


def coxnet_predict(
    model: CoxnetSurvivalAnalysis, alpha: float, x: np.ndarray, inner_edges: np.ndarray, max_time: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return the risk (P,) and survival past each time bin (P, n_bins).

    Bin j ends at ``inner_edges[j]``; the last bin is open, so its column is the survival
    at ``max_time``, the last training time.
    """
    risk = model.predict(x, alpha=alpha)
    ends = np.append(np.asarray(inner_edges, dtype=float), max_time)
    functions = model.predict_survival_function(x, alpha=alpha)
    curve = np.stack([fn(np.clip(ends, fn.x[0], fn.x[-1])) for fn in functions])
    return risk, curve


class EarlyFusionNet(nn.Module):
    """A self-normalising network from concatenated features (B, D) to bin logits (B, n_bins)."""

    def __init__(
        self, *, in_features: int, n_bins: int, hidden: Sequence[int] = (256, 128), dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.encoder = SNN(in_features=in_features, hidden=hidden, dropout=dropout)
        self.to_logits = nn.Linear(self.encoder.out_features, n_bins)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        tokens, _ = self.encoder(x.unsqueeze(1))  # (B, 1, H)
        return self.to_logits(tokens.squeeze(1))  # (B, n_bins)


def late_fusion(risks: Sequence[np.ndarray], curves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Average the unimodal risks (P,) and curves (P, n_bins), ignoring NaN for absent modalities."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN patient stays NaN
        return np.nanmean(np.stack(risks), axis=0), np.nanmean(np.stack(curves), axis=0)
