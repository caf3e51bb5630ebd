"""The gradient-ratio probe, fed dL/dz by the training loop, against a direct autograd computation."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ltlab import probes
from ltlab.data import DeviceLoader
from ltlab.engine import TrainState, train_one_epoch
from ltlab.losses import create_loss
from ltlab.models import create_model


def _expected(grads: list[np.ndarray], labels: list[np.ndarray], c: int):
    """pos_c = sum_{y_i = c} |g_ic|, neg_c = sum_{y_i != c} |g_ic|, nbs[c, k] = sum_{y_i = k} |g_ic| (k != c)."""
    nbs = np.zeros((c, c))
    for g, y in zip(grads, labels):
        for i in range(len(y)):
            nbs[:, y[i]] += np.abs(g[i])
    pos = np.diag(nbs).copy()
    np.fill_diagonal(nbs, 0.0)
    return pos, nbs.sum(axis=1), nbs


@pytest.mark.parametrize("loss_name", ["ce", "gala", "gcl"])
def test_probe_matches_autograd(digits_ds, loss_name):
    torch.manual_seed(0)
    counts = digits_ds.class_counts
    loss_fn = create_loss(loss_name, counts)
    model = create_model("convnet_small", 10, head="cosine" if loss_fn.input_kind == "cosine" else "linear",
                         in_channels=1, width=8)
    ref_model, ref_loss = copy.deepcopy(model), copy.deepcopy(loss_fn)
    # lr = 0: the weights stay put, so every batch's dL/dz can be recomputed on the copy
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loader = DeviceLoader(digits_ds, 128, train=True, augment={}, seed=3)
    probe = probes.GradientProbe(10)
    torch.manual_seed(7)  # GCL draws its cloud noise from the global generator
    train_one_epoch(TrainState(model=model, loss_fn=loss_fn, optimizer=opt), loader, device=torch.device("cpu"),
                    probe=probe)
    got = probe.summary()

    loader.set_epoch(0)  # replay the same batches in the same order
    torch.manual_seed(7)
    ref_model.train()
    ref_loss.train()
    grads, labels = [], []
    for x, y in loader:
        z = ref_model(x)
        (g,) = torch.autograd.grad(ref_loss(z, y), z)
        grads.append(g.double().numpy())
        labels.append(y.numpy())
    pos, neg, nbs = _expected(grads, labels, 10)
    assert len(grads) == 4  # several batches accumulated
    np.testing.assert_allclose(got["pos"], pos, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(got["neg"], neg, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(got["neg_by_source"], nbs, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(got["ratio"], pos / neg, rtol=1e-5)
    if loss_name == "ce":  # and CE's analytic gradient (softmax - onehot) / B, in float64
        x, y = next(iter(DeviceLoader(digits_ds, 128, train=True, augment={}, seed=3)))
        z = ref_model(x).double().detach()
        analytic = (torch.softmax(z, 1) - torch.nn.functional.one_hot(y, 10).double()) / len(y)
        np.testing.assert_allclose(grads[0], analytic.numpy(), rtol=1e-4, atol=1e-7)


def test_probe_streaming_equals_one_pass():
    rng = np.random.default_rng(0)
    g = torch.tensor(rng.normal(size=(30, 5)))
    y = torch.tensor(rng.integers(0, 5, 30))
    a, b = probes.GradientProbe(5), probes.GradientProbe(5)
    a.update(g, y)
    for s in (slice(0, 7), slice(7, 20), slice(20, 30)):
        b.update(g[s], y[s])
    for k in ("pos", "neg", "neg_by_source"):
        np.testing.assert_allclose(a.summary()[k], b.summary()[k], rtol=1e-12)
    pos, neg, _ = _expected([g.numpy()], [y.numpy()], 5)
    np.testing.assert_allclose(a.summary()["pos"], pos, rtol=1e-12)
    np.testing.assert_allclose(a.summary()["neg"], neg, rtol=1e-12)


def test_probe_without_matrix_matches_matrix():
    """Above MATRIX_MAX_CLASSES the probe keeps (2, C) sums; pos, neg and ratio are the same numbers."""
    rng = np.random.default_rng(1)
    g = torch.tensor(rng.normal(size=(40, 6)))
    y = torch.tensor(rng.integers(0, 6, 40))
    full, small = probes.GradientProbe(6), probes.GradientProbe(6, by_source=False)
    assert full.matrix.shape == (6, 6) and small.matrix.shape == (2, 6)
    for s in (slice(0, 13), slice(13, 40)):
        full.update(g[s], y[s])
        small.update(g[s], y[s])
    a, b = full.summary(), small.summary()
    assert "neg_by_source" not in b
    for k in ("pos", "neg", "ratio"):
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12)
    assert not probes.GradientProbe(probes.MATRIX_MAX_CLASSES + 1).by_source


def test_unstack_epochs_round_trip():
    rng = np.random.default_rng(2)
    recs = [{"grad_pos": rng.random(3), "grad_neg_by_source": rng.random((3, 3))} if e % 2 else
            {"grad_pos": rng.random(3), "theta": rng.random(3)} for e in range(5)]
    recs[2]["grad_pos"][:] = np.nan  # a genuine all-NaN entry restacks to the same NaNs
    a = probes.stack_epochs(recs)
    assert list(a["grad_neg_by_source_epochs"]) == [1, 3]
    b = probes.stack_epochs(probes.unstack_epochs(a, 5))
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    m, e = probes.matrix_at(a, "grad_neg_by_source", -1)
    assert e == 3 and np.array_equal(m, recs[3]["grad_neg_by_source"])
