import numpy as np
import pytest
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
from sksurv.util import Surv

from mmlego.metrics import MetricWarning, evaluate_survival, harrell_c, uno_c


def synthetic_fold(seed, size=60):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=size)
    times = rng.exponential(scale=np.exp(-risk)) * 100 + 1
    censorship = (rng.uniform(size=size) < 0.3).astype(int)
    return risk, times, censorship


def test_harrell_matches_scikit_survival():
    risk, times, censorship = synthetic_fold(0)
    noisy = risk + np.random.default_rng(1).normal(size=risk.size)
    expected = concordance_index_censored(censorship == 0, times, noisy)[0]
    assert harrell_c(noisy, times, censorship) == pytest.approx(expected)
    assert 0.5 < expected < 1.0


def test_uno_matches_scikit_survival():
    risk, times, censorship = synthetic_fold(2)
    _, train_times, train_censorship = synthetic_fold(3, size=200)
    tau = min(times.max(), train_times.max())
    expected = concordance_index_ipcw(
        Surv.from_arrays(train_censorship == 0, train_times), Surv.from_arrays(censorship == 0, times), risk, tau=tau
    )[0]
    assert uno_c(risk, times, censorship, train_times, train_censorship) == pytest.approx(expected)


def test_evaluate_survival_on_informative_risk():
    risk, times, censorship = synthetic_fold(4, size=120)
    _, train_times, train_censorship = synthetic_fold(5, size=200)
    edges = np.quantile(train_times[train_censorship == 0], [0.25, 0.5, 0.75])
    curve = np.exp(-np.exp(risk)[:, None] * np.array([0.2, 0.5, 0.9, 1.5])[None, :])
    result = evaluate_survival(
        risk=risk, curve=curve, times=times, censorship=censorship,
        train_times=train_times, train_censorship=train_censorship, inner_edges=edges,
    )
    assert set(result) == {"c_index", "c_index_ipcw", "ibs", "mean_auc"}
    assert result["c_index"] > 0.6
    assert result["c_index_ipcw"] > 0.6
    assert result["mean_auc"] > 0.6
    assert 0.0 < result["ibs"] < 0.25


def test_no_events_gives_nan_with_warning():
    risk, times, _ = synthetic_fold(6, size=20)
    censorship = np.ones(20, dtype=int)
    _, train_times, train_censorship = synthetic_fold(7, size=100)
    with pytest.warns(MetricWarning):
        result = evaluate_survival(
            risk=risk, curve=np.full((20, 4), 0.5), times=times, censorship=censorship,
            train_times=train_times, train_censorship=train_censorship, inner_edges=np.array([10.0, 20.0, 30.0]),
        )
    assert np.isnan(result["c_index"])
    assert np.isnan(result["c_index_ipcw"])
    assert np.isnan(result["mean_auc"])


def test_no_comparable_pairs_gives_nan_with_warning():
    times = np.array([1.0, 2.0, 3.0])
    censorship = np.array([1, 1, 0])  # the only event is the last time, so no pair is comparable
    with pytest.warns(MetricWarning, match="c_index is NaN"):
        value = harrell_c(np.array([0.1, 0.2, 0.3]), times, censorship)
    assert np.isnan(value)


def test_nan_risk_gives_nan_with_warning():
    with pytest.warns(MetricWarning, match="NaN or infinity"):
        value = harrell_c(np.array([np.nan, 0.2]), np.array([1.0, 2.0]), np.array([0, 0]))
    assert np.isnan(value)
