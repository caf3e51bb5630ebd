"""Baseline losses rebuilt from their formulas (papers and official code) in float64.

Every expected value is written out again here with plain tensor ops (explicit log-softmax,
sigmoid, one-hot, loops where the reference code loops) and compared with the library's value
AND gradient w.r.t. the inputs at 1e-10.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ltlab.losses import create_loss

COUNTS = [500, 200, 80, 30, 10, 3]
C = len(COUNTS)
B = 16
N = np.asarray(COUNTS, dtype=np.float64)
TOL = dict(rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------ helpers
def batch(seed=0, scale=2.0, cosine=False, labels=None):
    g = torch.Generator().manual_seed(seed)
    if cosine:
        x = (torch.rand(B, C, generator=g, dtype=torch.float64) * 2 - 1) * 0.95
    else:
        x = torch.randn(B, C, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, C, (B,), generator=g) if labels is None else labels
    y[:C] = torch.arange(C)  # every class at least once
    return x, y


def onehot(y):
    return torch.eye(C, dtype=torch.float64)[y]


def log_softmax(z):
    m = z.max(dim=1, keepdim=True).values.detach()
    return z - m - torch.log(torch.exp(z - m).sum(dim=1, keepdim=True))


def ce_rows(z, y):
    return -(onehot(y) * log_softmax(z)).sum(dim=1)


def sigmoid(z):
    return 1.0 / (1.0 + torch.exp(-z))


def bce(z, t):
    s = sigmoid(z)
    return -(t * torch.log(s) + (1 - t) * torch.log(1 - s))


def effective_weights(beta):
    w = (1 - beta) / (1 - np.power(beta, N))
    return torch.as_tensor(w / w.sum() * C)


def assert_value_and_grad(loss_fn, ref_fn, x, y):
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    va, vb = loss_fn(a, y), ref_fn(b, y)
    (ga,), (gb,) = torch.autograd.grad(va, a), torch.autograd.grad(vb, b)
    assert va.dtype == torch.float64
    assert torch.allclose(va, vb, **TOL), (va.item(), vb.item())
    assert torch.allclose(ga, gb, **TOL), (ga - gb).abs().max()


# ---------------------------------------------------------------------------------- CE
def test_ce_plain_and_weighted():
    x, y = batch(1)
    assert_value_and_grad(create_loss("ce", COUNTS), lambda z, t: ce_rows(z, t).mean(), x, y)
    w = torch.linspace(0.5, 2.0, C, dtype=torch.float64)
    assert_value_and_grad(create_loss("ce", COUNTS, weight=w.tolist()),
                          lambda z, t: (w[t] * ce_rows(z, t)).sum() / w[t].sum(), x, y)


@pytest.mark.parametrize("name", ["ce", "ldam"])
def test_drw_switch(name):
    loss = create_loss(name, COUNTS, drw_start=3)
    x, y = batch(2, cosine=name == "ldam")
    s = 30.0 if name == "ldam" else 1.0
    m = 0.5 * (N.min() / N) ** 0.25 if name == "ldam" else np.zeros(C)
    m = torch.as_tensor(m)
    w_on = effective_weights(0.9999)
    for epoch in range(5):
        loss.set_epoch(epoch, 5)
        w = w_on if epoch >= 3 else torch.ones(C, dtype=torch.float64)
        assert torch.allclose(loss.class_weight, w, rtol=1e-12, atol=0)

        def ref(z, t, w=w):
            rows = ce_rows(s * (z - onehot(t) * m[t][:, None]), t)
            return (w[t] * rows).sum() / w[t].sum()  # PyTorch weighted mean
        assert_value_and_grad(loss, ref, x, y)
    assert abs(float(w_on.sum()) - C) < 1e-12


# ------------------------------------------------------------------------------- focal
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_softmax_focal(gamma):
    x, y = batch(3)

    def ref(z, t):
        ce = ce_rows(z, t)
        return ((1 - torch.exp(-ce)) ** gamma * ce).mean()
    assert_value_and_grad(create_loss("focal", COUNTS, gamma=gamma), ref, x, y)


def test_softmax_focal_drw_quirk():
    loss = create_loss("focal", COUNTS, gamma=1.0, drw_start=1)
    x, y = batch(4)
    loss.set_epoch(0, 2)
    assert_value_and_grad(loss, lambda z, t: ((1 - torch.exp(-ce_rows(z, t))) * ce_rows(z, t)).mean(), x, y)
    loss.set_epoch(1, 2)
    w = effective_weights(0.9999)

    def ref(z, t):
        ell = w[t] * ce_rows(z, t)  # p = exp(-w CE), plain batch mean (LDAM-DRW FocalLoss)
        return ((1 - torch.exp(-ell)) * ell).mean()
    assert_value_and_grad(loss, ref, x, y)


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.0, -1.0), (1.5, 0.6)])
def test_sigmoid_focal(gamma, alpha):
    x, y = batch(5)

    def ref(z, t):
        o = onehot(t)
        p = sigmoid(z)
        p_t = torch.where(o > 0, p, 1 - p)
        loss = bce(z, o) * (1 - p_t) ** gamma
        if alpha >= 0:
            loss = torch.where(o > 0, alpha * loss, (1 - alpha) * loss)
        return loss.sum() / B
    assert_value_and_grad(create_loss("focal", COUNTS, form="sigmoid", gamma=gamma, alpha=alpha), ref, x, y)


def test_focal_defaults_per_form_and_errors():
    soft, sig = create_loss("focal", COUNTS), create_loss("focal", COUNTS, form="sigmoid")
    assert (soft.form, soft.gamma) == ("softmax", 1.0)
    assert (sig.gamma, sig.alpha) == (2.0, 0.25)
    with pytest.raises(ValueError, match="sigmoid"):
        create_loss("focal", COUNTS, alpha=0.25)
    with pytest.raises(ValueError, match="softmax"):
        create_loss("focal", COUNTS, form="sigmoid", drw_start=3)
    with pytest.raises(ValueError, match="softmax"):
        create_loss("focal", COUNTS, form="tanh")


# ------------------------------------------------------------------------ class-balanced
@pytest.mark.parametrize("beta", [0.0, 0.99, 0.9999])
@pytest.mark.parametrize("loss_type,gamma", [("softmax", 1.0), ("sigmoid", 1.0), ("focal", 0.5),
                                             ("focal", 1.0), ("focal", 2.0)])
def test_class_balanced(beta, loss_type, gamma):
    x, y = batch(6)
    w = effective_weights(beta) if beta > 0 else torch.ones(C, dtype=torch.float64)

    def ref(z, t):
        if loss_type == "softmax":
            return (w[t] * ce_rows(z, t)).mean()  # TF: divide by B, not by sum w
        o = onehot(t)
        el = bce(z, o)
        if loss_type == "focal":
            p_t = torch.where(o > 0, sigmoid(z), 1 - sigmoid(z))
            el = (1 - p_t) ** gamma * el
        return (w[t][:, None] * el).sum() / B
    loss = create_loss("class_balanced", COUNTS, beta=beta, loss_type=loss_type, gamma=gamma)
    assert torch.allclose(loss.class_weight, w, rtol=1e-12, atol=0)
    assert_value_and_grad(loss, ref, x, y)


def test_class_balanced_focal_is_stable():
    loss = create_loss("class_balanced", COUNTS, loss_type="focal", gamma=2.0)
    x = torch.tensor([[300.0, -300.0, 0.0, 40.0, -40.0, 1.0]] * B, dtype=torch.float64, requires_grad=True)
    y = torch.arange(B) % C
    out = loss(x, y)
    (g,) = torch.autograd.grad(out, x)
    assert torch.isfinite(out) and torch.isfinite(g).all()
    assert out > 0


# ---------------------------------------------------------------- logit adjustment family
@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_logit_adjusted(tau):
    x, y = batch(7)
    log_pi = torch.as_tensor(np.log(N / N.sum()))
    assert_value_and_grad(create_loss("logit_adjusted", COUNTS, tau=tau),
                          lambda z, t: ce_rows(z + tau * log_pi, t).mean(), x, y)
    adj_code = torch.as_tensor(np.log((N / N.sum()) ** tau + 1e-12))
    assert_value_and_grad(create_loss("logit_adjusted", COUNTS, tau=tau, eps=1e-12),
                          lambda z, t: ce_rows(z + adj_code, t).mean(), x, y)


def test_balanced_softmax():
    x, y = batch(8)
    log_n = torch.as_tensor(np.log(N))
    assert_value_and_grad(create_loss("balanced_softmax", COUNTS),
                          lambda z, t: ce_rows(z + log_n, t).mean(), x, y)
    la = create_loss("logit_adjusted", COUNTS, tau=1.0)
    assert torch.allclose(create_loss("balanced_softmax", COUNTS)(x, y), la(x, y), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------- LDAM
@pytest.mark.parametrize("max_m,s", [(0.5, 30.0), (0.3, 10.0)])
def test_ldam(max_m, s):
    loss = create_loss("ldam", COUNTS, max_m=max_m, s=s)
    m = loss.margins
    assert abs(float(m.max()) - max_m) < 1e-15 and int(m.argmax()) == int(np.argmin(N))
    prod = m * torch.as_tensor(N) ** 0.25  # m_c proportional to n_c^(-1/4)
    assert torch.allclose(prod, prod[0].expand(C), rtol=1e-12, atol=0)
    x, y = batch(9, cosine=True)
    assert_value_and_grad(loss, lambda z, t: ce_rows(s * (z - onehot(t) * m[t][:, None]), t).mean(), x, y)


# ------------------------------------------------------------------ label-aware smoothing
@pytest.mark.parametrize("shape", ["concave", "linear", "convex"])
def test_label_aware_smoothing(shape):
    head, tail = 0.4, 0.1
    loss = create_loss("label_aware_smoothing", COUNTS, shape=shape, smooth_head=head, smooth_tail=tail)
    eps = loss.smoothing
    assert abs(float(eps[0]) - head) < 1e-12 and abs(float(eps[-1]) - tail) < 1e-12
    r = (N - N.min()) / (N.max() - N.min())
    expect = {"concave": tail + (head - tail) * np.sin(np.pi * r / 2),
              "linear": tail + (head - tail) * r,
              "convex": head + (head - tail) * np.sin(1.5 * np.pi + np.pi * r / 2)}[shape]
    assert np.allclose(eps.numpy(), expect, rtol=0, atol=1e-15)
    assert np.all(np.diff(eps.numpy()) <= 0)  # more smoothing for frequent classes
    x, y = batch(10)

    def ref(z, t):
        e = torch.as_tensor(expect)[t]
        lp = log_softmax(z)
        return ((1 - e) * ce_rows(z, t) + e * (-lp.sum(dim=1) / C)).mean()
    assert_value_and_grad(loss, ref, x, y)


def test_label_aware_smoothing_equal_counts_and_bad_values():
    eps = create_loss("label_aware_smoothing", [7, 7, 7], smooth_head=0.3, smooth_tail=0.0).smoothing
    assert torch.allclose(eps, torch.full((3,), 0.3, dtype=torch.float64))
    with pytest.raises(ValueError, match="smooth_head"):
        create_loss("label_aware_smoothing", COUNTS, smooth_head=1.5)


# ---------------------------------------------------------------------------------- EQL
@pytest.mark.parametrize("lam", [0.00177, 0.02, 0.05])
def test_eql_sigmoid(lam):
    x, y = batch(11)
    tail = torch.as_tensor(N / N.sum() < lam, dtype=torch.float64)

    def ref(z, t):
        o = onehot(t)
        return ((1 - tail[None, :] * (1 - o)) * bce(z, o)).sum() / B
    assert_value_and_grad(create_loss("eql", COUNTS, lambda_=lam), ref, x, y)


@pytest.mark.parametrize("lam", [0.02, 0.05])
def test_eql_softmax_given_mask(lam):
    x, y = batch(12)
    g = torch.Generator().manual_seed(3)
    beta = torch.rand(B, C, generator=g) < 0.7
    tail = torch.as_tensor(N / N.sum() < lam, dtype=torch.float64)
    loss = create_loss("eql", COUNTS, lambda_=lam, form="softmax", gamma=0.7)

    def ref(z, t):  # BagofTricks-LT SEQL, literally: p = e^z / sum_k w_k e^z_k
        w = 1 - beta.double() * tail[None, :] * (1 - onehot(t))
        p = torch.exp(z) / (w * torch.exp(z)).sum(dim=1, keepdim=True)
        return -(onehot(t) * torch.log(p)).sum(dim=1).mean()
    assert_value_and_grad(lambda z, t: loss(z, t, beta_mask=beta), ref, x, y)


def test_eql_softmax_draws():
    x, y = batch(13)
    loss = create_loss("eql", COUNTS, lambda_=0.05, form="softmax")
    a = loss(x, y, generator=torch.Generator().manual_seed(5))
    b = loss(x, y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    never = create_loss("eql", COUNTS, lambda_=0.05, form="softmax", gamma=0.0)
    assert torch.allclose(never(x, y), ce_rows(x, y).mean(), **TOL)
    always = create_loss("eql", COUNTS, lambda_=0.05, form="softmax", gamma=1.0)
    ones = torch.ones(B, C, dtype=torch.bool)
    assert torch.allclose(always(x, y), always(x, y, beta_mask=ones), **TOL)


def test_eql_defaults_and_errors():
    sig, soft = create_loss("eql", COUNTS), create_loss("eql", COUNTS, form="softmax")
    assert (sig.form, sig.lambda_) == ("sigmoid", 0.00177)
    assert (soft.lambda_, soft.gamma) == (0.005, 0.9)
    x, y = batch(14)
    with pytest.raises(ValueError, match="softmax"):
        sig(x, y, beta_mask=torch.ones(B, C, dtype=torch.bool))
    with pytest.raises(ValueError, match="softmax"):
        create_loss("eql", COUNTS, gamma=0.9)
    with pytest.raises(ValueError, match="shape"):
        soft(x, y, beta_mask=torch.ones(B, C + 1, dtype=torch.bool))


# ------------------------------------------------------------------------------- Seesaw
def seesaw_ref(z, t, counts, p, q, eps):
    """mmdetection seesaw_ce_loss written out with loops; weights are constants."""
    with torch.no_grad():
        s = torch.softmax(z, dim=1)
        w = torch.ones(B, C, dtype=torch.float64)
        for i in range(B):
            yi = int(t[i])
            for j in range(C):
                if j == yi:
                    continue
                nj, ny = max(counts[j], 1.0), max(counts[yi], 1.0)
                if p > 0 and nj / ny < 1:
                    w[i, j] *= (nj / ny) ** p
                ratio = float(s[i, j] / max(float(s[i, yi]), eps))
                if q > 0 and ratio > 1:
                    w[i, j] *= ratio ** q
    return ce_rows(z + torch.log(w), t).mean()


@pytest.mark.parametrize("p,q", [(0.8, 2.0), (0.8, 0.0), (0.0, 2.0)])
def test_seesaw_streaming(p, q):
    loss = create_loss("seesaw", COUNTS, p=p, q=q)
    g = torch.Generator().manual_seed(0)
    total = np.zeros(C)
    probs = torch.as_tensor(N / N.sum())
    for step in range(4):
        y = torch.multinomial(probs, B, replacement=True, generator=g)
        x = torch.randn(B, C, generator=g, dtype=torch.float64) * 3
        total += np.bincount(y.numpy(), minlength=C)  # counts include the current batch
        snapshot = total.copy()
        a = x.clone().requires_grad_(True)
        va = loss(a, y)
        (ga,) = torch.autograd.grad(va, a)
        assert np.array_equal(loss.cum_samples.numpy(), total)
        b = x.clone().requires_grad_(True)
        vb = seesaw_ref(b, y, snapshot, p, q, 1e-2)
        (gb,) = torch.autograd.grad(vb, b)
        assert torch.allclose(va, vb, **TOL) and torch.allclose(ga, gb, **TOL)
    loss.eval()
    x, y = batch(15)
    assert_value_and_grad(loss, lambda z, t: seesaw_ref(z, t, total, p, q, 1e-2), x, y)
    assert np.array_equal(loss.cum_samples.numpy(), total)
    loss.reset_state()
    assert float(loss.cum_samples.abs().sum()) == 0.0


# -------------------------------------------------------------------------------- GHM-C
class GHMCRef:
    """mmdetection GHMC.forward, bin by bin, with Python floats for the state."""

    def __init__(self, bins, momentum):
        self.bins, self.mmt = bins, momentum
        self.edges = torch.arange(bins + 1, dtype=torch.float64) / bins
        self.edges[-1] += 1e-6
        self.acc = [0.0] * bins

    def __call__(self, z, t, update=True):
        o = onehot(t)
        g = (sigmoid(z.detach()) - o).abs()
        tot = float(B * C)
        w = torch.zeros(B, C, dtype=torch.float64)
        acc, nonempty = list(self.acc), 0
        for i in range(self.bins):
            inds = (g >= self.edges[i]) & (g < self.edges[i + 1])
            k = int(inds.sum())
            if k > 0:
                if self.mmt > 0:
                    acc[i] = self.mmt * acc[i] + (1 - self.mmt) * k
                    w[inds] = tot / acc[i]
                else:
                    w[inds] = tot / k
                nonempty += 1
        if update:
            self.acc = acc
        w = w / max(nonempty, 1)
        return (w * bce(z, o)).sum() / tot


@pytest.mark.parametrize("bins,momentum", [(10, 0.0), (30, 0.75), (10, 0.75)])
def test_ghmc_streaming(bins, momentum):
    loss = create_loss("ghm_c", COUNTS, bins=bins, momentum=momentum)
    ref = GHMCRef(bins, momentum)
    for step in range(4):
        x, y = batch(20 + step, scale=3.0)
        x[0, :3] = 0.0  # g = 0.5 exactly: on a bin edge
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        va, vb = loss(a, y), ref(b, y)
        (ga,), (gb,) = torch.autograd.grad(va, a), torch.autograd.grad(vb, b)
        assert torch.allclose(va, vb, **TOL) and torch.allclose(ga, gb, **TOL)
        assert torch.allclose(loss.acc_sum, torch.as_tensor(ref.acc, dtype=torch.float64), rtol=1e-12, atol=0)
        assert float(loss.last_counts.sum()) == B * C
    loss.eval()
    before = loss.acc_sum.clone()
    x, y = batch(30, scale=3.0)
    assert_value_and_grad(loss, lambda z, t: ref(z, t, update=False), x, y)
    assert torch.equal(loss.acc_sum, before)
    loss.reset_state()
    assert float(loss.acc_sum.abs().sum()) == 0.0


def test_ghmc_first_step_not_bias_corrected():
    loss = create_loss("ghm_c", COUNTS, bins=10, momentum=0.75)
    x, y = batch(40)
    loss(x, y)
    full = loss.last_counts > 0
    assert torch.allclose(loss.acc_sum[full], 0.25 * loss.last_counts[full], rtol=1e-15, atol=0)
    assert torch.all(loss.acc_sum[~full] == 0)


# ------------------------------------------------------------------- DDP: ranks agree
def _ddp_worker(rank, world, init_file, out_dir, x, y):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        half = slice(rank * B // world, (rank + 1) * B // world)
        result = {}
        for name, kw in (("seesaw", {}), ("ghm_c", {"bins": 10, "momentum": 0.75})):
            loss = create_loss(name, COUNTS, **kw)
            values = [loss(x[step][half], y[step][half]) for step in range(2)]
            result[name] = (values, {k: v.clone() for k, v in loss.state_dict().items()})
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.subprocess
def test_ddp_ranks_share_state(tmp_path):
    """Two gloo ranks on two halves of each batch == one process on the whole batch."""
    import torch.multiprocessing as mp
    xs, ys = zip(*(batch(50 + s, scale=3.0) for s in range(2)))
    # spawn, not fork: a forked child can deadlock on the parent's OpenMP/gloo threads.
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path), xs, ys), nprocs=2,
                       join=True, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, kw in (("seesaw", {}), ("ghm_c", {"bins": 10, "momentum": 0.75})):
        single = create_loss(name, COUNTS, **kw)
        for step in range(2):
            full = single(xs[step], ys[step])
            mean_of_ranks = (ranks[0][name][0][step] + ranks[1][name][0][step]) / 2
            assert torch.allclose(mean_of_ranks, full, **TOL), name
        for r in range(2):
            for k, v in single.state_dict().items():
                assert torch.allclose(ranks[r][name][1][k], v, rtol=1e-12, atol=0), (name, k)
