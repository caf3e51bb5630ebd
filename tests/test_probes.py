"""The gradient probe, fed dL/dz by the training loop, against autograd and against its statistics' definitions."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import ltlab
from ltlab import probes
from ltlab.data import DeviceLoader
from ltlab.engine import TrainState, train_one_epoch
from ltlab.losses import create_loss
from ltlab.models import create_model

SMALL = dict(dataset="synthetic_lt", dataset_params={"num_classes": 4, "n_max": 40}, imbalance_factor=4,
             model="convnet_small", model_params={"width": 8}, epochs=3, batch_size=16, lr=0.05, device="cpu",
             progress=False)  # 90 training images: 6 steps per epoch


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


@pytest.mark.parametrize("loss_name", ["ce", "gala"])
def test_neg_minus_pos_is_the_bias_gradient(digits_ds, loss_name):
    """For a softmax loss with a classifier bias dL/db_c = neg_c - pos_c, so over plain SGD steps the probe's
    neg - pos equals the summed autograd bias gradient and -(b_end - b_start) / lr (why long-run ratios -> 1)."""
    torch.manual_seed(0)
    model = create_model("convnet_small", 10, in_channels=1, width=8)
    loss_fn = create_loss(loss_name, digits_ds.class_counts)
    lr = 0.1
    opt = torch.optim.SGD(model.parameters(), lr=lr)  # no momentum, no weight decay
    b0 = model.head.bias.detach().double().clone()
    bias_grads = []
    model.head.bias.register_hook(lambda g: bias_grads.append(g.detach().double().clone()))
    probe = probes.GradientProbe(10)
    train_one_epoch(TrainState(model=model, loss_fn=loss_fn, optimizer=opt),
                    DeviceLoader(digits_ds, 128, train=True, augment={}, seed=3), device=torch.device("cpu"),
                    probe=probe)
    got = probe.summary()
    assert len(bias_grads) == 4
    np.testing.assert_allclose(got["neg"] - got["pos"], torch.stack(bias_grads).sum(0).numpy(), rtol=1e-6, atol=1e-9)
    b1 = model.head.bias.detach().double()
    np.testing.assert_allclose(got["neg"] - got["pos"], (-(b1 - b0) / lr).numpy(), rtol=1e-4, atol=1e-6)


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
    """Above MATRIX_MAX_CLASSES the probe keeps no (C, C) sums; pos, neg and the ratios are the same numbers."""
    rng = np.random.default_rng(1)
    g = torch.tensor(rng.normal(size=(40, 6)))
    y = torch.tensor(rng.integers(0, 6, 40))
    full, small = probes.GradientProbe(6), probes.GradientProbe(6, by_source=False)
    assert full.sums["by_source"].shape == (6, 6) and "by_source" not in small.sums
    for s in (slice(0, 13), slice(13, 40)):
        full.update(g[s], y[s])
        small.update(g[s], y[s])
    a, b = full.summary(), small.summary()
    assert "neg_by_source" not in b and "neg_by_source_cum" not in b
    for k in ("pos", "neg", "ratio", "pos_cumcum", "ratio_cumcum"):
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12)
    assert not probes.GradientProbe(probes.MATRIX_MAX_CLASSES + 1).by_source


def test_step_marks():
    assert probes.step_marks(4) == [1, 2, 3, 4]
    assert probes.step_marks(98) == [1, 10, 20, 30, 40, 49, 59, 69, 79, 89, 98]
    assert probes.step_marks(0) == []


def _record_steps(monkeypatch) -> list[np.ndarray]:
    """Every probe update's batch sums (2, C) [pos; neg], in order, recorded beside the real probe."""
    steps, real = [], probes.GradientProbe.update

    def update(self, grad, labels):
        g = grad.detach().abs().double()
        onehot = torch.nn.functional.one_hot(labels, self.num_classes).double()
        steps.append(torch.stack([(g * onehot).sum(0), (g * (1 - onehot)).sum(0)]).numpy())
        real(self, grad, labels)
    monkeypatch.setattr(probes.GradientProbe, "update", update)
    return steps


@pytest.mark.parametrize("loss_name", ["ce", "gala"])
def test_accumulated_and_gala_code_statistics_follow_their_definitions(tmp_path, monkeypatch, loss_name):
    """From the recorded per-step sums x_t: per epoch sum_{t in epoch} x_t, accumulated S_T = sum_{t<=T} x_t,
    GALA code D_T = sum_{t<=T} S_t, epoch 1 after its marked steps; for GALA, D_pos is the loss's own theta."""
    steps = _record_steps(monkeypatch)
    run = ltlab.run({**SMALL, "loss": loss_name, "eval_every": 2, "run_dir": str(tmp_path / "r")})
    x = np.stack(steps)  # (T, 2, C): 3 epochs x 6 steps
    assert x.shape == (18, 2, 4)
    s = np.cumsum(x, axis=0)
    d = np.cumsum(s, axis=0)
    ends = [5, 11, 17]
    p = run.probes
    tol = dict(rtol=1e-10, atol=1e-14)
    for name, i in (("pos", 0), ("neg", 1)):
        np.testing.assert_allclose(p[f"grad_{name}"], x.reshape(3, 6, 2, 4).sum(1)[:, i], **tol)
        np.testing.assert_allclose(p[f"grad_{name}_cum"], s[ends, i], **tol)
        np.testing.assert_allclose(p[f"grad_{name}_cumcum"], d[ends, i], **tol)
        np.testing.assert_allclose(p[f"grad_{name}_steps"][0], s[:6, i], **tol)  # 6 steps: every one marked
        np.testing.assert_allclose(p[f"grad_{name}_cumcum_steps"][0], d[:6, i], **tol)
    np.testing.assert_allclose(p["grad_ratio_cumcum"], d[ends, 0] / d[ends, 1], **tol)
    np.testing.assert_allclose(p["grad_steps"][0], np.arange(1, 7) / 6)
    assert list(p["grad_steps_epochs"]) == [0]
    # the accumulated by-source matrix sums the per-epoch ones; kept at evaluated epochs (1, 2) only
    assert list(p["grad_neg_by_source_cum_epochs"]) == [1, 2]
    np.testing.assert_allclose(p["grad_neg_by_source_cum"][-1].sum(1), p["grad_neg_cum"][-1], **tol)
    if loss_name == "gala":
        np.testing.assert_allclose(p["grad_pos_cumcum"], p["theta"], rtol=1e-6)


@pytest.mark.slow
def test_resume_mid_epoch_one_gives_the_uninterrupted_statistics(tmp_path, monkeypatch):
    """Killed right after the step-2 checkpoint of epoch 1 (0-based 0), resumed: every probe array, the step
    records included, equals the uninterrupted run's."""
    import ltlab.engine.trainer as trainer

    cfg = {**SMALL, "loss": "gala", "mixup_alpha": 1.0, "checkpoint_every_steps": 2}
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    real = trainer.save_checkpoint

    def save_then_die(run_dir, state, config, *, position=None, scaler=None):
        real(run_dir, state, config, position=position, scaler=scaler)
        if position is not None and (position["epoch"], position["step"]) == (0, 2):
            raise KeyboardInterrupt
    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        ltlab.run({**cfg, "run_dir": str(tmp_path / "part")})
    monkeypatch.setattr(trainer, "save_checkpoint", real)
    resumed = ltlab.run({**cfg, "run_dir": str(tmp_path / "part"), "resume": True})
    assert sorted(full.probes) == sorted(resumed.probes)
    for k in full.probes:
        np.testing.assert_array_equal(full.probes[k], resumed.probes[k], err_msg=k)


def test_older_records_and_positions():
    """A record without the accumulated keys (an older checkpoint) gives NaN statistics, not wrong ones;
    an older mid-epoch position (one tensor) restores the per-epoch sums."""
    g = torch.tensor(np.random.default_rng(3).normal(size=(12, 3)))
    y = torch.tensor([0, 1, 2, 0] * 3)
    old = probes.GradientProbe(3, start={"grad_pos": np.ones(3)})
    old.update(g, y)
    out = old.summary()
    assert np.isfinite(out["ratio"]).all() and np.isnan(out["ratio_cum"]).all() and np.isnan(out["ratio_cumcum"]).all()
    ref = probes.GradientProbe(3)
    ref.update(g, y)
    for by_source in (True, False):
        legacy = ref.sums["by_source"] if by_source else torch.stack([ref.sums["pos_neg"][0], ref.sums["pos_neg"].sum(0)])
        p = probes.GradientProbe(3, by_source=by_source)
        p.load_sums(probes.position_sums(legacy, p), steps=1)
        np.testing.assert_allclose(p.summary()["ratio"], ref.summary()["ratio"], rtol=1e-12)
