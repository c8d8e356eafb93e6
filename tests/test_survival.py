import math

import numpy as np
import pytest
import torch

from mmlego.survival import (
    assign_bins,
    fit_bin_edges,
    nll_survival_loss,
    risk_score,
    survival_at_times,
    survival_curve,
)


def test_bin_edges_use_event_times_only():
    times = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 100.0, 200.0])
    censorship = np.array([0, 0, 0, 0, 0, 1, 1])
    edges = fit_bin_edges(times, censorship, n_bins=4)
    np.testing.assert_allclose(edges, [2.0, 3.0, 4.0])


def test_assign_bins_right_closed():
    labels = assign_bins(np.array([-5.0, 2.0, 2.5, 3.0, 4.0, 4.1, 1e9]), np.array([2.0, 3.0, 4.0]))
    assert labels.tolist() == [0, 0, 1, 1, 2, 3, 3]


def test_bin_edges_need_enough_events():
    with pytest.raises(ValueError, match="needs at least 4 events, found 2"):
        fit_bin_edges(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 1]), n_bins=4)


def test_loss_three_patients_by_hand():
    # Zero logits give h = 0.5 in both bins, so S_0 = 0.5 and S_1 = 0.25.
    # Patient 1, event in bin 0: uncensored = -(log 1 + log 0.5) = log 2.
    # Patient 2, event in bin 1: uncensored = -(log 0.5 + log 0.5) = 2 log 2.
    # Patient 3, censored in bin 1: censored = -log 0.25 = 2 log 2, weighted by 1 - alpha = 0.6.
    logits = torch.zeros(3, 2)
    labels = torch.tensor([0, 1, 1])
    censorship = torch.tensor([0.0, 0.0, 1.0])
    expected = math.log(2) * (1 + 2 + 0.6 * 2) / 3
    loss = nll_survival_loss(logits, labels, censorship, alpha=0.4)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_loss_alpha_zero_by_hand():
    logits = torch.zeros(3, 2)
    loss = nll_survival_loss(logits, torch.tensor([0, 1, 1]), torch.tensor([0.0, 0.0, 1.0]), alpha=0.0)
    assert loss.item() == pytest.approx(math.log(2) * (1 + 2 + 2) / 3, rel=1e-6)


def test_loss_nonzero_logits_by_hand():
    logits = torch.tensor([[math.log(1 / 3), math.log(3.0)]])  # h = (0.25, 0.75)
    loss = nll_survival_loss(logits, torch.tensor([1]), torch.tensor([0.0]), alpha=0.4)
    assert loss.item() == pytest.approx(-(math.log(0.75) + math.log(0.75)), rel=1e-6)
    censored = nll_survival_loss(logits, torch.tensor([0]), torch.tensor([1.0]), alpha=0.4)
    assert censored.item() == pytest.approx(-0.6 * math.log(0.75), rel=1e-6)


def test_loss_is_finite_for_extreme_logits():
    logits = torch.tensor([[-100.0, 100.0], [100.0, -100.0]])
    loss = nll_survival_loss(logits, torch.tensor([0, 1]), torch.tensor([0.0, 1.0]))
    assert torch.isfinite(loss)


def test_loss_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="labels must be in"):
        nll_survival_loss(torch.zeros(2, 4), torch.tensor([0, 4]), torch.zeros(2))


def test_curve_and_risk():
    logits = torch.zeros(2, 2)
    torch.testing.assert_close(survival_curve(logits), torch.tensor([[0.5, 0.25], [0.5, 0.25]]))
    torch.testing.assert_close(risk_score(logits), torch.tensor([-0.75, -0.75]))
    higher_hazard = torch.tensor([[2.0, 2.0]])
    assert risk_score(higher_hazard).item() > risk_score(logits[:1]).item()


def test_survival_at_times_steps_at_edges():
    curve = np.array([[0.8, 0.5, 0.1]])
    values = survival_at_times(curve, np.array([10.0, 20.0]), np.array([5.0, 10.0, 15.0, 20.0, 50.0]))
    np.testing.assert_allclose(values, [[1.0, 0.8, 0.8, 0.5, 0.5]])
