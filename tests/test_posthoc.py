"""Post-hoc adjustments (ltlab.posthoc) against their formulas, numpy and torch, float64."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sklearn.base import clone

from ltlab.posthoc import (LogitAdjuster, PNRebalancer, TauNormalizer, logit_adjust, pn_rebalance, tau_norm_logits,
                           tau_normalize)

TOL = dict(rtol=1e-12, atol=1e-12)
COUNTS = [400, 120, 30, 6]


def _logits(seed=0, m=20):
    return np.random.default_rng(seed).normal(scale=2.0, size=(m, len(COUNTS)))


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_logit_adjust(tau):
    z = _logits()
    prior = np.array(COUNTS, float) / sum(COUNTS)
    want = z - tau * np.log(prior)[None, :]
    got = logit_adjust(z, COUNTS, tau=tau)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, **TOL)
    gt = logit_adjust(torch.tensor(z), COUNTS, tau=tau)
    assert isinstance(gt, torch.Tensor) and gt.dtype == torch.float64
    np.testing.assert_allclose(gt.numpy(), want, **TOL)
    assert logit_adjust(z.astype(np.float32), COUNTS).dtype == np.float32
    assert logit_adjust(torch.tensor(z, dtype=torch.float32), COUNTS).dtype == torch.float32


def test_logit_adjust_rejects_bad_counts():
    with pytest.raises(ValueError, match="class counts"):
        logit_adjust(_logits(), COUNTS[:3])
    with pytest.raises(ValueError, match="> 0"):
        logit_adjust(_logits(), [1, 0, 2, 3])


@pytest.mark.parametrize("tau", [0.0, 1.0, 0.7])
def test_pn_rebalance(tau):
    z = _logits(1)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    want = p / p.sum(axis=0, keepdims=True) ** tau
    out = pn_rebalance(z, tau)
    np.testing.assert_allclose(out, want, **TOL)
    got = pn_rebalance(torch.tensor(z), tau)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, **TOL)
    if tau == 0.0:  # plain softmax: rows sum to one
        np.testing.assert_allclose(out.sum(axis=1), 1.0, **TOL)
    else:  # every class's column mass is its softmax mass ** (1 - tau)
        np.testing.assert_allclose(out.sum(axis=0), p.sum(axis=0) ** (1 - tau), **TOL)
    if tau == 1.0:  # full re-balancing: every column sums to one
        np.testing.assert_allclose(out.sum(axis=0), 1.0, **TOL)


def test_pn_rebalance_is_transductive():
    z = _logits(2, m=40)
    full = pn_rebalance(z)
    assert not np.allclose(full[:20], pn_rebalance(z[:20]))


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0, 2.0])
def test_tau_normalize(p):
    w = np.random.default_rng(3).normal(size=(len(COUNTS), 8))
    w[0] *= 5.0
    want = np.stack([row / np.sqrt((row ** 2).sum()) ** p for row in w])
    out = tau_normalize(w, p)
    np.testing.assert_allclose(out, want, **TOL)
    got = tau_normalize(torch.tensor(w), p)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), want, **TOL)
    norms = np.linalg.norm(w, axis=1)  # the library's row norms are ||W_c|| ** (1 - p)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), norms ** (1 - p), **TOL)
    if p == 1.0:
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, **TOL)


def test_tau_normalize_zero_row_and_shape_check():
    w = np.zeros((3, 4))
    w[1] = 1.0
    out = tau_normalize(w, 1.0)
    assert np.all(out[0] == 0) and np.allclose(out[1], 0.5)
    with pytest.raises(ValueError, match="2-d"):
        tau_normalize(np.ones(4), 1.0)


@pytest.mark.parametrize("tau", [0.0, 1.0, 1.5])
def test_tau_norm_logits_with_and_without_bias(tau):
    """Kang et al.: f @ (W_c / ||W_c||^tau).T, bias dropped; BagofTricks-LT (network.py load_model): the same
    rows plus the trained bias, unchanged."""
    rng = np.random.default_rng(3)
    f, w, b = rng.normal(size=(12, 5)), rng.normal(size=(4, 5)) * [[3.0], [1.0], [0.5], [0.1]], rng.normal(size=4)
    rows = np.stack([w[c] / np.sqrt(np.sum(w[c] ** 2)) ** tau for c in range(4)])
    want_kang = np.array([[f[i] @ rows[c] for c in range(4)] for i in range(12)])
    want_bot = want_kang + b[None, :]
    np.testing.assert_allclose(tau_norm_logits(f, w, tau), want_kang, **TOL)
    np.testing.assert_allclose(tau_norm_logits(f, w, tau, bias=b), want_bot, **TOL)
    got = tau_norm_logits(torch.tensor(f), torch.tensor(w), tau, bias=torch.tensor(b))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want_bot, **TOL)
    assert (want_bot.argmax(1) != want_kang.argmax(1)).any()  # the bias changes predictions on these numbers
    # the estimator: a fixed tau, bias kept
    y = want_bot.argmax(1)
    est = TauNormalizer(w, tau=tau, bias=b).fit(f)
    assert est.tau_ == tau and est.sweep_ is None
    np.testing.assert_allclose(est.decision_function(f), want_bot, **TOL)
    assert est.score(f, y) == 1.0
    np.testing.assert_allclose(TauNormalizer(w, tau=tau).fit(f).decision_function(f), want_kang, **TOL)


# ---------------------------------------------------------------------- estimators
def _estimators():
    w = np.random.default_rng(4).normal(size=(len(COUNTS), 8))
    return [LogitAdjuster(COUNTS, tau=0.5), PNRebalancer(tau=0.5), TauNormalizer(w, tau=0.5, taus=[0.0, 1.0])]


@pytest.mark.parametrize("est", _estimators(), ids=lambda e: type(e).__name__)
def test_estimators_clone_and_params(est):
    params = est.get_params()
    assert params["tau"] == 0.5 and set(params) >= {"tau", "taus"}
    twin = clone(est)
    assert type(twin) is type(est) and twin is not est
    for key, value in params.items():
        np.testing.assert_array_equal(np.asarray(twin.get_params()[key], dtype=object), np.asarray(value, dtype=object))
    assert twin.set_params(tau=0.25) is twin and twin.tau == 0.25 and est.tau == 0.5
    assert not hasattr(twin, "tau_"), "fitted state only from fit"
    x = np.random.default_rng(5).normal(size=(12, 8 if isinstance(est, TauNormalizer) else len(COUNTS)))
    y = np.arange(12) % len(COUNTS)
    fitted = est.fit(x, y)
    assert fitted is est and hasattr(est, "tau_") and not hasattr(clone(est), "tau_")


def test_pn_ties_go_to_the_smallest_tau():
    z, y = np.zeros((6, 3)), np.array([0, 1, 2, 0, 1, 2])  # every tau scores the same accuracy
    est = PNRebalancer(taus=[2.0, 0.0, 1.0]).fit(z, y)
    assert est.tau_ == 0.0
    assert [t for t, _ in est.sweep_] == [2.0, 0.0, 1.0]


def _brute_force_tau(scores_at, taus, y):
    accs = [np.mean(np.asarray(scores_at(t)).argmax(1) == y) for t in taus]
    best = max(accs)
    return min(t for t, a in zip(taus, accs) if a == best), accs


def test_estimators_choose_tau_on_the_given_split():
    rng = np.random.default_rng(6)
    y = rng.integers(0, len(COUNTS), size=200)
    z = rng.normal(size=(200, len(COUNTS))) + 2.0 * np.eye(len(COUNTS))[y] + np.log(np.array(COUNTS) / sum(COUNTS))
    taus = [1.5, 0.0, 0.5, 1.0, 2.0]
    la = LogitAdjuster(COUNTS, taus=taus).fit(z, y)
    want, accs = _brute_force_tau(lambda t: logit_adjust(z, COUNTS, t), taus, y)
    assert la.tau_ == want and la.tau_ != 0.0  # the prior in the logits is undone by a positive tau
    np.testing.assert_allclose([a for _, a in la.sweep_], accs)
    np.testing.assert_allclose(la.decision_function(z), logit_adjust(z, COUNTS, la.tau_))
    assert la.score(z, y) == max(accs)
    pn = PNRebalancer(taus=taus).fit(z, y)
    assert pn.tau_ == _brute_force_tau(lambda t: pn_rebalance(z, t), taus, y)[0]
    w = rng.normal(size=(len(COUNTS), 8)) * np.array([4.0, 2.0, 1.0, 0.5])[:, None]
    f = rng.normal(size=(200, 8)) + w[y]
    tn = TauNormalizer(w, taus=taus).fit(f, y)
    assert tn.tau_ == _brute_force_tau(lambda t: f @ tau_normalize(w, t).T, taus, y)[0]
    np.testing.assert_allclose(tn.weight_, tau_normalize(w, tn.tau_))


def test_estimator_without_taus_keeps_tau_and_needs_fit():
    est = PNRebalancer(tau=0.7)
    with pytest.raises(ValueError, match="not fitted"):
        est.predict(_logits())
    est.fit(_logits())
    assert est.tau_ == 0.7 and est.sweep_ is None
    with pytest.raises(ValueError, match="labels y"):
        PNRebalancer(taus=[0.0, 1.0]).fit(_logits())
