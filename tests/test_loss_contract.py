"""The shared contract every entry of ``LOSSES`` must meet (STYLE.md "Tests").

Generic on purpose: it knows nothing about a particular loss beyond ``input_kind`` and the
hyper-parameter names reported by ``loss_hparams``.
"""
from __future__ import annotations

import pytest
import torch

from ltlab.losses import LOSSES, create_loss, loss_hparams

COUNTS = [50, 20, 10, 5, 2]
C = len(COUNTS)
B = 8
NAMES = sorted(LOSSES)


def make_inputs(loss, dtype=torch.float64, seed=0, batch=B):
    """Inputs of the kind the loss takes: logits, or cosine strictly inside [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    if loss.input_kind == "cosine":
        x = (torch.rand(batch, C, generator=g, dtype=torch.float64) * 2 - 1) * 0.95
    else:
        x = torch.randn(batch, C, generator=g, dtype=torch.float64) * 2
    labels = torch.arange(batch) % C  # every class present, the rarest ones too
    return x.to(dtype), labels


def call(loss, x, y, seed=123):
    """Call with a fixed global RNG so losses that draw noise inside are reproducible."""
    torch.manual_seed(seed)
    return loss(x, y)


def buffers(loss):
    return {k: v.clone() for k, v in loss.state_dict().items()}


def test_input_kind_declared():
    for name in NAMES:
        assert create_loss(name, COUNTS).input_kind in ("logits", "cosine"), name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scalar_finite_backward_dtype(name, dtype):
    loss = create_loss(name, COUNTS)  # buffers stay as built: the loss must follow the input dtype
    x, y = make_inputs(loss, dtype)
    x.requires_grad_(True)
    out = call(loss, x, y)
    assert out.shape == () and out.dtype == dtype
    assert torch.isfinite(out)
    (grad,) = torch.autograd.grad(out, x)
    assert grad.shape == x.shape and grad.dtype == dtype
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_module_to_dtype(name):
    loss = create_loss(name, COUNTS).to(torch.float32)
    x, y = make_inputs(loss, torch.float32)
    out = call(loss, x, y)
    assert out.dtype == torch.float32 and torch.isfinite(out)


@pytest.mark.parametrize("name", NAMES)
def test_none_hparams_take_defaults(name):
    a = create_loss(name, COUNTS, **{h: None for h in loss_hparams(name)})
    b = create_loss(name, COUNTS)
    x, y = make_inputs(b)
    assert torch.equal(call(a, x, y), call(b, x, y))


@pytest.mark.parametrize("name", NAMES)
def test_set_epoch_runs(name):
    kw = {"drw_start": 2} if "drw_start" in loss_hparams(name) else {}
    loss = create_loss(name, COUNTS, **kw)
    x, y = make_inputs(loss)
    for epoch in range(4):
        loss.set_epoch(epoch, 4)
        for step in range(2):
            out = call(loss, x, y, seed=epoch * 10 + step)
            assert torch.isfinite(out)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    a = create_loss(name, COUNTS)
    a.set_epoch(1, 4)
    for seed in (1, 2, 3):
        x, y = make_inputs(a, seed=seed)
        call(a, x, y, seed=seed)
    b = create_loss(name, COUNTS)
    b.set_epoch(1, 4)
    b.load_state_dict(a.state_dict())  # strict: same keys
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    x, y = make_inputs(a, seed=7)
    a.eval(), b.eval()
    assert torch.equal(call(a, x, y), call(b, x, y))
    a.train(), b.train()
    assert torch.equal(call(a, x, y), call(b, x, y))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_keeps_state(name):
    loss = create_loss(name, COUNTS)
    loss.set_epoch(1, 4)
    x, y = make_inputs(loss, seed=1)
    call(loss, x, y)
    before = buffers(loss)
    loss.eval()
    for seed in (2, 3):
        x, y = make_inputs(loss, seed=seed)
        call(loss, x, y)
    after = buffers(loss)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), f"{name}: buffer {k} changed in eval mode"


@pytest.mark.parametrize("name", NAMES)
def test_reset_state_restores_fresh_state(name):
    loss = create_loss(name, COUNTS)
    for seed in (1, 2):
        x, y = make_inputs(loss, seed=seed)
        call(loss, x, y)
    loss.reset_state()
    fresh = create_loss(name, COUNTS).state_dict()
    for k, v in loss.state_dict().items():
        assert torch.equal(v, fresh[k]), f"{name}: reset_state left buffer {k} changed"
    assert isinstance(loss.state_summary(), dict)


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError) as err:
        create_loss("no_such_loss", COUNTS)
    for name in NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hparam_lists_valid(name):
    with pytest.raises(ValueError) as err:
        create_loss(name, COUNTS, not_a_hparam=1.0)
    msg = str(err.value)
    assert "not_a_hparam" in msg
    for h in loss_hparams(name):
        assert h in msg


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("counts", [[5, 0, 3], [5, -1, 3]])
def test_bad_counts(name, counts):
    with pytest.raises(ValueError):
        create_loss(name, counts)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [-1, C])
def test_labels_out_of_range(name, bad):
    loss = create_loss(name, COUNTS)
    x, y = make_inputs(loss)
    y = y.clone()
    y[3] = bad
    with pytest.raises(ValueError):
        call(loss, x, y)


@pytest.mark.parametrize("name", NAMES)
def test_nan_input(name):
    loss = create_loss(name, COUNTS)
    x, y = make_inputs(loss)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError):
        call(loss, x, y)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_shapes(name):
    loss = create_loss(name, COUNTS)
    x, y = make_inputs(loss)
    with pytest.raises(ValueError):
        call(loss, x[:, :-1], y)
    with pytest.raises(ValueError):
        call(loss, x, y[:-1])


@pytest.mark.parametrize("name", [n for n in NAMES if LOSSES[n].input_kind == "cosine"])
def test_cosine_loss_rejects_logits(name):
    loss = create_loss(name, COUNTS)
    x = torch.randn(B, C, dtype=torch.float64) * 5
    with pytest.raises(ValueError, match="cosine"):
        call(loss, x, torch.arange(B) % C)
