"""The five seed-method losses rebuilt from their papers' formulas in float64: values and gradients.

Expected values are written out again here in plain numpy (no call into the code under test).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ltlab.losses import create_loss
from ltlab.losses import functional as F

TOL = dict(rtol=1e-10, atol=1e-10)
COUNTS = [500, 200, 80, 30, 10, 5]
C = len(COUNTS)


def _np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_ce(z, y):
    """Per-sample CE -z_y + logsumexp(z)."""
    m = z.max(axis=1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    return lse - z[np.arange(len(y)), y]


def _onehot(y, c=C):
    out = np.zeros((len(y), c))
    out[np.arange(len(y)), y] = 1.0
    return out


def _batch(b=12, seed=0, cosine=False, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, C, generator=g, dtype=torch.float64) * 2 - 1
    x = x * (0.99 if cosine else scale)
    y = torch.randint(0, C, (b,), generator=g)
    return x.requires_grad_(True), y


def _grad(loss, x):
    (gx,) = torch.autograd.grad(loss, x)
    return gx.numpy()


# ----------------------------------------------------------------------------- GraLoss
def test_graloss_value_gradient_and_alpha_from_set_epoch():
    loss = create_loss("graloss", COUNTS)
    z, y = _batch(seed=1)
    zn, yn = z.detach().numpy(), y.numpy()
    prior = np.array(COUNTS, float) / sum(COUNTS)
    # alpha = 0 before any set_epoch: plain CE
    np.testing.assert_allclose(loss(z, y).item(), _np_ce(zn, yn).mean(), **TOL)
    loss.set_epoch(50, 200)
    alpha = 1.0 * (2.0 ** (50 / 200) - 1.0)
    assert loss.state_summary()["alpha"].item() == pytest.approx(alpha, abs=1e-15)
    f = zn + alpha * np.log(prior)[None, :]
    val = loss(z, y)
    np.testing.assert_allclose(val.item(), _np_ce(f, yn).mean(), **TOL)
    np.testing.assert_allclose(_grad(val, z), (_np_softmax(f) - _onehot(yn)) / len(yn), **TOL)
    loss2 = create_loss("graloss", COUNTS, s=0.5, c=3.0)
    loss2.set_epoch(7, 10)
    a2 = 0.5 * (3.0 ** 0.7 - 1.0)
    np.testing.assert_allclose(loss2(z, y).item(), _np_ce(zn + a2 * np.log(prior), yn).mean(), **TOL)


def test_head_distillation_value_gradient_and_empty_mask():
    s, _ = _batch(seed=2)
    t, _ = _batch(seed=3)
    mask = torch.tensor([True, False, True, True, False, False, True, False, False, True, False, False])
    val = F.head_distillation(s, t, mask)
    sn, tn, mn = s.detach().numpy(), t.detach().numpy(), mask.numpy()
    p, q = _np_softmax(tn), _np_softmax(sn)
    kl = (p * (np.log(p) - np.log(q))).sum(axis=1)
    np.testing.assert_allclose(val.item(), kl[mn].mean(), **TOL)
    gs, gt = torch.autograd.grad(val, (s, t), allow_unused=True)
    np.testing.assert_allclose(gs.numpy(), (q - p) * mn[:, None] / mn.sum(), **TOL)
    assert gt is None or torch.all(gt == 0)  # teacher is frozen
    empty = F.head_distillation(s, t, torch.zeros(12, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.dtype == torch.float64
    assert torch.all(torch.autograd.grad(empty, s)[0] == 0)


# ----------------------------------------------------------------------------- GCL
def _gcl_expected(cos, y, noise, s, m, noise_mul, gamma):
    delta = np.log(max(COUNTS)) - np.log(np.array(COUNTS, float))
    dhat = delta / delta.max()
    eps = np.abs(np.clip(noise, -1, 1))
    z = s * (cos - noise_mul * eps * dhat[None, :] - m * _onehot(y))
    ce = _np_ce(z, y)
    factor = (1 - np.exp(-ce)) ** gamma
    value = (factor * ce).mean()
    grad = factor[:, None] * s * (_np_softmax(z) - _onehot(y)) / len(y)  # factor is detached
    return value, grad


@pytest.mark.parametrize("kw", [dict(), dict(s=20.0, m=0.1, gamma=1.0), dict(s=15.0, m=0.1, noise_mul=1.0, gamma=2.0)],
                         ids=["stage1", "stage2_cifar", "stage2_gamma2"])
def test_gcl_with_given_noise(kw):
    params = dict(s=30.0, m=0.0, noise_mul=0.5, gamma=0.0) | kw
    loss = create_loss("gcl", COUNTS, **kw)
    cos, y = _batch(seed=4, cosine=True)
    noise = torch.randn(12, C, generator=torch.Generator().manual_seed(9), dtype=torch.float64) / 3.0 * 2.5
    val = loss(cos, y, noise=noise)
    ev, eg = _gcl_expected(cos.detach().numpy(), y.numpy(), noise.numpy(), **params)
    np.testing.assert_allclose(val.item(), ev, **TOL)
    np.testing.assert_allclose(_grad(val, cos), eg, **TOL)
    dhat = (np.log(500) - np.log(np.array(COUNTS, float))) / np.log(100)
    np.testing.assert_allclose(loss.state_summary()["cloud_width"].numpy(), dhat * params["noise_mul"], **TOL)


def test_gcl_draws_noise_inside_and_balanced_guard():
    loss = create_loss("gcl", COUNTS)
    cos, y = _batch(seed=5, cosine=True)
    drawn = loss(cos, y, generator=torch.Generator().manual_seed(3))
    raw = torch.randn(cos.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) / 3.0
    assert drawn.item() == pytest.approx(loss(cos, y, noise=raw).item(), abs=1e-12)
    assert loss(cos, y).item() != loss(cos, y).item()  # fresh draw per call
    flat = create_loss("gcl", [7] * C)
    ce = _np_ce(30 * cos.detach().numpy(), y.numpy()).mean()
    np.testing.assert_allclose(flat(cos, y).item(), ce, **TOL)  # max delta = 0 -> no cloud


# ----------------------------------------------------------------------------- ALA
@pytest.mark.parametrize("qf", ["paper", "code"])
def test_ala_both_quantity_factors_with_and_without_drw(qf):
    loss = create_loss("ala", COUNTS, qf=qf, drw_start=3)
    cos, y = _batch(seed=6, cosine=True)
    cn, yn = cos.detach().numpy(), y.numpy()
    n = np.array(COUNTS, float)
    qfv = 1.0 / np.log(n / n.min() + 1.0) * (math.log(2) if qf == "code" else 1.0)
    df = (1.0 - cn[np.arange(12), yn]) / 2.0
    z = 30.0 * (cn - _onehot(yn) * (df * qfv[yn])[:, None])
    for epoch, weighted in [(2, False), (3, True)]:
        loss.set_epoch(epoch, 10)
        w = (1 - 0.9999) / (1 - 0.9999 ** n)
        w = w / w.sum() * C if weighted else np.ones(C)
        wy = w[yn]
        val = loss(cos, y)
        np.testing.assert_allclose(val.item(), (wy * _np_ce(z, yn)).sum() / wy.sum(), **TOL)
        # DF detached: d z_y / d cos_y = s, so the gradient is the weighted CE gradient times s
        want_grad = 30.0 * wy[:, None] * (_np_softmax(z) - _onehot(yn)) / wy.sum()
        np.testing.assert_allclose(_grad(val, cos), want_grad, **TOL)
    summ = loss.state_summary()
    np.testing.assert_allclose(summ["quantity_factor"].numpy(), qfv, **TOL)
    for c in range(C):
        want = df[yn == c].mean() if np.any(yn == c) else np.nan
        np.testing.assert_allclose(summ["difficulty_factor"][c].item(), want, **TOL)


def test_ala_rejects_unknown_qf():
    with pytest.raises(ValueError, match="qf"):
        create_loss("ala", COUNTS, qf="log2")


# ----------------------------------------------------------------------------- GALA
def _gala_np(z, y, theta, phi, l1, l2, variant, eps=1e-3):
    adj = l1 * np.log(theta + eps)[None, :] - l2 * np.log(phi[y] + eps)[:, None]
    if variant == "paper":
        adj = adj * (1 - _onehot(y, z.shape[1]))
    return z + adj


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_gala_logits_formula(variant):
    z, y = _batch(seed=7)
    rng = np.random.default_rng(0)
    theta, phi = rng.uniform(0, 3, C), rng.uniform(0, 3, C)
    theta[2] = 0.0
    got = F.gala_logits(z, y, torch.tensor(theta), torch.tensor(phi), 1.2, 0.9, variant)
    want = _gala_np(z.detach().numpy(), y.numpy(), theta, phi, 1.2, 0.9, variant)
    np.testing.assert_allclose(got.detach().numpy(), want, **TOL)
    if variant == "paper":
        rows = np.arange(12), y.numpy()
        np.testing.assert_allclose(got.detach().numpy()[rows], z.detach().numpy()[rows], **TOL)
    with pytest.raises(ValueError, match="variant"):
        F.gala_logits(z, y, torch.tensor(theta), torch.tensor(phi), variant="both")


@pytest.mark.parametrize("l1,l2", [(1.0, 1.0), (1.2, 0.9)])
def test_gala_streaming_state_matches_cumulative_of_cumulative(l1, l2):
    loss = create_loss("gala", COUNTS, lambda1=l1, lambda2=l2)
    loss.set_epoch(0, 2)
    A, P, N = (np.zeros((C, C)) for _ in range(3))
    eye = np.eye(C)
    for t in range(6):
        z, y = _batch(b=10, seed=20 + t)
        zn, yn = z.detach().numpy(), y.numpy()
        theta, phi = np.diag(P).copy(), (N * (1 - eye)).sum(axis=0)
        f = _gala_np(zn, yn, theta, phi, l1, l2, "code")
        val = loss(z, y)
        np.testing.assert_allclose(val.item(), _np_ce(f, yn).mean(), **TOL)
        np.testing.assert_allclose(_grad(val, z), (_np_softmax(f) - _onehot(yn)) / len(yn), **TOL)
        gabs = np.abs(_np_softmax(f) - _onehot(yn)) / len(yn)
        for i in range(len(yn)):  # A[j, k] += |dL/dz_ij| for samples i of class k
            A[:, yn[i]] += gabs[i]
        P += A * eye
        N += A * (1 - eye)
        np.testing.assert_allclose(loss.A.numpy(), A, **TOL)
        np.testing.assert_allclose(loss.P.numpy(), P, **TOL)
        np.testing.assert_allclose(loss.N.numpy(), N, **TOL)
    np.testing.assert_allclose(loss.theta.numpy(), np.diag(P), **TOL)
    np.testing.assert_allclose(loss.phi.numpy(), N.sum(axis=0) - np.diag(N), **TOL)
    np.testing.assert_allclose(loss.theta.numpy(), loss.phi.numpy(), rtol=1e-9, atol=1e-12)  # CE: theta == phi
    assert loss.theta.abs().sum() > 0
    summ = loss.state_summary()
    np.testing.assert_allclose(summ["theta"].numpy(), np.diag(P), **TOL)
    # evaluation mode: same adjusted loss, state untouched
    loss.eval()
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    z, y = _batch(b=10, seed=99)
    f = _gala_np(z.detach().numpy(), y.numpy(), np.diag(P), N.sum(axis=0) - np.diag(N), l1, l2, "code")
    np.testing.assert_allclose(loss(z, y).item(), _np_ce(f, y.numpy()).mean(), **TOL)
    for k, v in loss.state_dict().items():
        assert torch.equal(v, before[k]), k
    loss.reset_state()
    assert loss.A.abs().sum() == 0 and loss.theta.abs().sum() == 0


def test_gala_paper_variant_formula_and_epoch_restart():
    loss = create_loss("gala", COUNTS, variant="paper")
    loss.set_epoch(0, 3)
    z, y = _batch(seed=30)
    loss(z, y)  # accumulate one batch
    theta, phi = loss.theta.numpy().copy(), loss.phi.numpy().copy()
    z2, y2 = _batch(seed=31)
    f = _gala_np(z2.detach().numpy(), y2.numpy(), theta, phi, 1.0, 1.0, "paper")
    val = loss(z2, y2)
    np.testing.assert_allclose(val.item(), _np_ce(f, y2.numpy()).mean(), **TOL)
    np.testing.assert_allclose(_grad(val, z2), (_np_softmax(f) - _onehot(y2.numpy())) / 12, **TOL)
    state = loss.A.clone()
    loss.set_epoch(0, 3)  # repeated call (resume): keeps the epoch's accumulation
    assert torch.equal(loss.A, state)
    loss.set_epoch(1, 3)  # new epoch: restart
    assert loss.A.abs().sum() == 0 and loss.P.abs().sum() == 0 and loss.N.abs().sum() == 0
    code = create_loss("gala", COUNTS)
    code(z, y)
    code.set_epoch(1, 3)
    assert code.A.abs().sum() > 0  # the code variant never resets


def test_gala_increment_matches_loop():
    g = torch.rand(9, C, dtype=torch.float64)
    y = torch.tensor([0, 2, 2, 5, 1, 0, 3, 3, 3])
    want = np.zeros((C, C))
    for i in range(9):
        want[:, y[i]] += g[i].numpy()
    np.testing.assert_allclose(F.gala_increment(g, y, C).numpy(), want, **TOL)


# GHM-CWAP: tests/test_loss_ghm_cwap.py


@pytest.mark.parametrize("name,stateful", [("graloss", False), ("gcl", False), ("ala", True), ("gala", True),
                                           ("ghm_cwap", True)])
def test_seed_losses_state_dict_roundtrip(name, stateful):
    """A loss loaded from another's ``state_dict`` mid-epoch (as a resumed run: ``set_epoch`` of the same epoch
    again) continues as that one does: the same value and gradient on the next batch and the same state after
    it. For the stateful losses a fresh loss does not, so the state that travels is the state that matters."""
    a, b, fresh = (create_loss(name, COUNTS) for _ in range(3))
    for e in range(2):
        a.set_epoch(e, 4)
        for seed in (50, 51):
            a(*_batch(seed=seed, cosine=True))
    b.load_state_dict(a.state_dict())
    x, y = _batch(seed=60, cosine=True)
    out = {}
    for key, loss in (("a", a), ("b", b), ("fresh", fresh)):
        loss.set_epoch(1, 4)
        torch.manual_seed(0)  # GCL draws its cloud noise from the global generator
        xi = x.detach().clone().requires_grad_(True)
        value = loss(xi, y)
        out[key] = (value.item(), _grad(value, xi), {k: v.clone() for k, v in loss.state_dict().items()})
    assert out["b"][0] == out["a"][0]
    np.testing.assert_array_equal(out["b"][1], out["a"][1])
    assert all(torch.equal(v, out["b"][2][k]) for k, v in out["a"][2].items())
    differs = out["fresh"][0] != out["a"][0] or not all(torch.equal(v, out["fresh"][2][k])
                                                         for k, v in out["a"][2].items())
    assert differs == stateful


def test_ala_difficulty_factor_is_the_epoch_mean_per_class():
    """DF is recorded as the mean over the epoch's training samples of each class (ALA Fig. 4): several
    batches count, evaluation does not, a new epoch starts afresh and a repeated set_epoch (resume) keeps it."""
    loss = create_loss("ala", COUNTS)
    loss.set_epoch(0, 4)
    batches = [_batch(seed=s, cosine=True) for s in (11, 12)]
    for cos, y in batches:
        loss(cos, y)
    loss.eval()
    loss(*_batch(seed=13, cosine=True))  # not counted
    loss.train()
    loss.set_epoch(0, 4)  # resume of the same epoch: nothing reset
    cos = np.concatenate([c.detach().numpy() for c, _ in batches])
    y = np.concatenate([y.numpy() for _, y in batches])
    df = (1.0 - cos[np.arange(len(y)), y]) / 2.0
    got = loss.state_summary()["difficulty_factor"].numpy()
    want = np.array([df[y == c].mean() if np.any(y == c) else np.nan for c in range(C)])
    np.testing.assert_allclose(got, want, **TOL)
    loss.set_epoch(1, 4)
    assert np.isnan(loss.state_summary()["difficulty_factor"].numpy()).all()
