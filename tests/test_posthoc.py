"""Post-hoc adjustments (ltlab.posthoc) against their formulas, numpy and torch, float64."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ltlab.posthoc import TauNormalizer, logit_adjust, pn_rebalance, tau_norm_logits, tau_normalize

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
    np.testing.assert_allclose(pn_rebalance(z, tau), want, **TOL)
    got = pn_rebalance(torch.tensor(z), tau)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, **TOL)
    if tau == 0.0:
        np.testing.assert_allclose(want.sum(axis=1), 1.0, **TOL)
    else:  # every class gets the same total score mass ** (1 - tau)
        np.testing.assert_allclose(want.sum(axis=0), p.sum(axis=0) ** (1 - tau), **TOL)


def test_pn_rebalance_is_transductive():
    z = _logits(2, m=40)
    full = pn_rebalance(z)
    assert not np.allclose(full[:20], pn_rebalance(z[:20]))


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0, 2.0])
def test_tau_normalize(p):
    w = np.random.default_rng(3).normal(size=(len(COUNTS), 8))
    w[0] *= 5.0
    want = np.stack([row / np.sqrt((row ** 2).sum()) ** p for row in w])
    np.testing.assert_allclose(tau_normalize(w, p), want, **TOL)
    got = tau_normalize(torch.tensor(w), p)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), want, **TOL)
    if p == 1.0:
        np.testing.assert_allclose(np.linalg.norm(want, axis=1), 1.0, **TOL)


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
