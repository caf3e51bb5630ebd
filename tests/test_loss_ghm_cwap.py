"""GHM-CWAP (paper 004) rebuilt in float64 from our written rules (docs/ghm_cwap.md): every option, values and
gradients, a frozen histogram with empty bins, a class absent for a whole epoch, bad options, and a run
resumed from a mid-epoch checkpoint with the non-default options.

The expected values are written out again here in plain numpy (no call into the code under test).
"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import ltlab
from ltlab.runs import load_checkpoint
from ltlab.losses import create_loss
from ltlab.losses import functional as F
from test_losses_seed import COUNTS, TOL, _batch, _grad, _np_ce, _np_softmax, _onehot

C = len(COUNTS)
# (weight_norm, empty_bin, reduction, use_weights); None = left unset
OPTIONS = [("bins", "unit", "weighted", True), ("none", "unit", "weighted", True), ("bins", "unit", "mean", True),
           ("bins", "density", "mean", True), ("none", "density", "weighted", True), (None, None, None, False)]


class _GhmRef:
    """Independent per-sample numpy re-implementation of the rules in the loss docstring."""

    def __init__(self, c, n, alpha, gamma, norm="bins", empty="unit", reduction="weighted", use_weights=True):
        self.c, self.n, self.alpha, self.gamma = c, n, alpha, gamma
        self.norm, self.empty, self.reduction, self.use_weights = norm, empty, reduction, use_weights
        self.d = np.full((c, n), 1.0 / n)
        self.v = np.zeros((c, n))
        self.dbar, self.vbar, self.frozen = self.d.copy(), self.v.copy(), False
        self.empty_hits = 0  # samples of a present class whose frozen bin was empty

    def close(self):
        self.vbar, self.dbar = self.v.copy(), self.d.copy()
        w = 1.0 / np.log(np.e + self.v)
        self.d = w / w.sum(axis=1, keepdims=True)
        self.v = np.zeros_like(self.v)
        self.frozen = True

    def _bin(self, widths, c, g):
        edges = np.cumsum(widths[c])[:-1]
        return min(int(np.sum(edges <= g)), self.n - 1)

    def S(self):
        s = np.array([sum(v ** self.alpha for v in row if v > 0) for row in self.vbar])
        return np.maximum(s, 1e-12) if self.empty == "density" else s

    def margins(self):
        S, M = self.S(), np.zeros((self.c, self.c))
        for m in range(self.c):
            for k in range(self.c):
                if self.frozen and S[m] > 0 and S[k] > 0:
                    M[m, k] = self.gamma * math.log(min(1.0, S[k] / S[m]))
        return M

    def weight(self, c, g):
        S, k = self.S(), self._bin(self.dbar, c, g)
        nb = int(np.sum(self.vbar[c] > 0))
        vb = self.vbar[c, k]
        if vb == 0:
            self.empty_hits += nb > 0
            if self.empty == "unit":
                return 1.0
            vb = 1.0 / (self.n * self.dbar[c, k])
        w = S[c] / vb ** self.alpha
        return w / max(nb, 1) if self.norm == "bins" else w

    def batch(self, z, y):
        b = len(y)
        f = z + self.margins()[y]
        p = _np_softmax(f)
        g = 1.0 - p[np.arange(b), y]
        on = self.frozen and self.use_weights
        w = np.array([self.weight(y[i], g[i]) if on else 1.0 for i in range(b)])
        for i in range(b):
            k = self._bin(self.d, y[i], g[i])
            self.v[y[i], k] += 1.0 / (self.n * self.d[y[i], k])
        denom = w.sum() if self.reduction == "weighted" else b
        return (w * _np_ce(f, y)).sum() / denom, w[:, None] * (p - _onehot(y, self.c)) / denom


def _kw(opts):
    return {k: v for k, v in zip(("weight_norm", "empty_bin", "reduction", "use_weights"), opts) if v is not None}


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(str(x) for x in o))
def test_three_epochs_against_reference(opts):
    """Epoch 0 plain CE; class 4 absent for all of epoch 1, so neutral in epoch 2; empty frozen bins hit."""
    bins, absent = 6, 4
    loss = create_loss("ghm_cwap", COUNTS, bins=bins, alpha=0.9, gamma=0.8, **_kw(opts))
    ref = _GhmRef(C, bins, 0.9, 0.8, *(o if o is not None else d for o, d in zip(opts, ("bins", "unit", "weighted"))),
                  opts[3])
    rng = np.random.default_rng(5)
    loss.set_epoch(0, 3)  # nothing counted yet: no-op
    assert not bool(loss.has_frozen)
    for epoch in range(3):
        loss.set_epoch(epoch, 3)
        if epoch > 0:
            ref.close()
            loss.set_epoch(epoch, 3)  # idempotent (resume calls it again)
        for name, want in (("frozen_counts", ref.vbar), ("frozen_widths", ref.dbar), ("widths", ref.d)):
            np.testing.assert_allclose(getattr(loss, name).numpy(), want, **TOL, err_msg=name)
        for _ in range(4):
            yn = rng.choice(C, size=16, p=np.array(COUNTS) / sum(COUNTS))
            yn[:C] = np.arange(C)  # every class seen ...
            if epoch == 1:
                yn[yn == absent] = 0  # ... except the absent one in epoch 1
            zn = rng.normal(scale=rng.uniform(0.3, 4.0), size=(16, C))
            z = torch.tensor(zn, requires_grad=True)
            val = loss(z, torch.tensor(yn))
            ev, eg = ref.batch(zn, yn)
            np.testing.assert_allclose(val.item(), ev, **TOL)
            np.testing.assert_allclose(_grad(val, z), eg, **TOL)
            if epoch == 0:  # first epoch: plain CE
                np.testing.assert_allclose(val.item(), _np_ce(zn, yn).mean(), **TOL)
        np.testing.assert_allclose(loss.counts.numpy(), ref.v, **TOL)
        np.testing.assert_allclose(loss.state_summary()["S"].numpy(), ref.S(), **TOL)
    m = loss.margins().numpy()
    if opts[1] == "density":  # the first rules: S clamped at 1e-12, margins of about -22 towards the absent class
        assert m[0, absent] < -20
    else:  # absent class neutral: no margin to or from it
        assert not m[absent].any() and not m[:, absent].any() and (m < 0).any()
    # the scenario is not trivial: empty frozen bins of present classes were hit, widths moved from 1/N
    assert ref.empty_hits > 0 or not opts[3]
    assert not torch.allclose(loss.widths, torch.full_like(loss.widths, 1 / bins))


def test_frozen_histogram_by_hand():
    """A frozen histogram with empty bins and an absent class, alpha 0.5: every weight and margin in numbers."""
    d = torch.full((3, 4), 0.25, dtype=torch.float64)
    v = torch.tensor([[4.0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 16]], dtype=torch.float64)  # S = 3, 0, 4
    np.testing.assert_allclose(F.ghm_cwap_class_sum(v, 0.5).numpy(), [3, 0, 4], **TOL)
    one = np.ones(4)
    cases = {("bins", "unit"): [[3 / 2 / 2, 1, 3 / 1 / 2, 1], one, one],
             ("none", "unit"): [[3 / 2, 1, 3, 1], one, [1, 1, 1, 4 / 4]],
             ("bins", "density"): [[3 / 2 / 2, 3 / 2, 3 / 2, 3 / 2], 1e-12 * one, [4, 4, 4, 4 / 4]],
             ("none", "density"): [[3 / 2, 3, 3, 3], 1e-12 * one, [4, 4, 4, 1]]}
    for (norm, empty), want in cases.items():  # density: an empty bin counts as 1/(N * 0.25) = 1
        got = F.ghm_cwap_bin_weights(d, v, 0.5, norm, empty).numpy()
        np.testing.assert_allclose(got, np.array(want, dtype=np.float64), rtol=1e-12, atol=0, err_msg=f"{norm} {empty}")
    g = torch.tensor([0.1, 0.3, 0.6, 0.9, 0.5, 0.99], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 1, 2])
    np.testing.assert_allclose(F.ghm_cwap_sample_weight(g, y, d, v, 0.5).numpy(), [0.75, 1, 1.5, 1, 1, 1], **TOL)
    gm = 0.8
    want = np.array([[0, 0, 0], [0, 0, 0], [gm * math.log(3 / 4), 0, 0]])
    np.testing.assert_allclose(F.ghm_cwap_margins(torch.tensor([3.0, 0, 4], dtype=torch.float64), gm).numpy(),
                               want, **TOL)
    clamped = torch.tensor([3.0, 1e-12, 4], dtype=torch.float64)
    want[0, 1], want[2, 1] = gm * math.log(1e-12 / 3), gm * math.log(1e-12 / 4)
    np.testing.assert_allclose(F.ghm_cwap_margins(clamped, gm).numpy(), want, **TOL)
    rows = torch.tensor([2, 0])
    np.testing.assert_allclose(F.ghm_cwap_margins(clamped, gm, rows).numpy(), want[[2, 0]], **TOL)


def test_loss_uses_the_frozen_state_it_holds():
    """Buffers set by hand (the histogram above, padded to C classes): the loss equals sum W CE(z + M) / sum W."""
    loss = create_loss("ghm_cwap", [50, 20, 5], bins=4, alpha=0.5)
    loss.frozen_counts.copy_(torch.tensor([[4.0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 16]]))
    loss.has_frozen.fill_(True)
    z, y = _batch(b=12, seed=3)
    z = z[:, :3].detach().requires_grad_(True)
    y = y % 3
    zn, yn = z.detach().numpy(), y.numpy()
    f = zn + np.array([[0, 0, 0], [0, 0, 0], [0.8 * math.log(3 / 4), 0, 0]])[yn]
    p = _np_softmax(f)
    g = 1 - p[np.arange(12), yn]
    table = np.array([[0.75, 1, 1.5, 1], [1, 1, 1, 1], [1, 1, 1, 1]])  # test_frozen_histogram_by_hand
    w = table[yn, np.minimum(np.floor(g / 0.25).astype(int), 3)]
    val = loss.eval()(z, y)
    np.testing.assert_allclose(val.item(), (w * _np_ce(f, yn)).sum() / w.sum(), **TOL)
    np.testing.assert_allclose(_grad(val, z), w[:, None] * (p - _onehot(yn, 3)) / w.sum(), **TOL)


@pytest.mark.parametrize("kw,match", [
    ({"use_weights": False, "weight_norm": "bins"},
     r"use_weights=False.*weight_norm='bins'.*weight_norm, empty_bin, reduction unset"),
    ({"use_weights": False, "empty_bin": "density", "reduction": "mean"}, r"empty_bin='density', reduction='mean'"),
    ({"empty_bin": "zero"}, r"empty_bin must be one of 'unit', 'density', got 'zero'"),
    ({"reduction": "sum"}, r"reduction must be one of 'weighted', 'mean', got 'sum'"),
    ({"weight_norm": "class"}, r"weight_norm must be one of 'bins', 'none', got 'class'"),
    ({"use_weights": "no"}, r"use_weights must be True or False"),
])
def test_bad_options_name_the_option_and_the_allowed_values(kw, match):
    with pytest.raises(ValueError, match=match):
        create_loss("ghm_cwap", COUNTS, **kw)


def test_bad_option_fails_before_a_run_writes_anything(tmp_path):
    with pytest.raises(ValueError, match="empty_bin must be one of 'unit', 'density'"):
        ltlab.run(dataset="synthetic_lt", dataset_params={"num_classes": 4, "n_max": 40}, imbalance_factor=4,
                  model="convnet_small", loss="ghm_cwap", loss_params={"empty_bin": "zero"}, epochs=1, device="cpu",
                  progress=False, run_dir=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()  # no run directory at all


def test_eval_mode_does_not_count_and_reset():
    loss = create_loss("ghm_cwap", COUNTS)
    z, y = _batch(seed=40)
    loss.eval()
    loss(z, y)
    assert loss.counts.sum() == 0
    loss.train()
    loss(z, y)
    assert loss.counts.sum() > 0
    loss.set_epoch(1, 2)
    assert bool(loss.has_frozen)
    loss.reset_state()
    assert loss.counts.sum() == 0 and loss.frozen_counts.sum() == 0 and not bool(loss.has_frozen)


def test_bin_index_edges():
    widths = torch.tensor([[0.25, 0.25, 0.5], [0.5, 0.3, 0.2]], dtype=torch.float64)
    g = torch.tensor([0.0, 0.25, 0.49, 0.5, 1.0, 0.79, 0.8, 1.0], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    assert F.ghm_cwap_bin_index(g, y, widths).tolist() == [0, 1, 1, 2, 2, 1, 2, 2]


SMALL = dict(dataset="synthetic_lt", dataset_params={"num_classes": 4, "n_max": 40}, imbalance_factor=4,
             model="convnet_small", model_params={"width": 8}, epochs=3, batch_size=16, lr=0.05, device="cpu",
             progress=False, loss="ghm_cwap", checkpoint_every_steps=2)  # 90 training images: 6 steps per epoch


@pytest.mark.parametrize("params", [{"bins": 5}, {"bins": 5, "empty_bin": "density", "reduction": "mean"},
                                    {"bins": 5, "use_weights": False}], ids=["full", "old_rules", "margins"])
def test_mid_epoch_resume_is_exact(tmp_path, params):
    """Killed at step 4 of the last epoch and resumed: histogram buffers, weights and metrics as uninterrupted."""
    cfg = {**SMALL, "loss_params": params}
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    part = tmp_path / "part"
    shutil.copytree(full.dir, part)
    shutil.copy(part / "checkpoint_prev.pt", part / "checkpoint.pt")  # newest = epoch 2, step 4
    pos = load_checkpoint(part)["position"]
    assert (pos["epoch"], pos["step"]) == (2, 4)
    resumed = ltlab.run({**cfg, "run_dir": str(part), "resume": True, "checkpoint_every_steps": None})
    a, b = load_checkpoint(full.dir)["loss"], load_checkpoint(part)["loss"]
    assert a.keys() == b.keys() and bool(a["has_frozen"]) and float(a["frozen_counts"].sum()) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(full.metrics.drop(columns="seconds"), resumed.metrics.drop(columns="seconds"))
