"""The training loop: run directory contents, determinism, resume, errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import ltlab
from ltlab.runs import RunFileError, load_checkpoint, load_run

TINY = dict(dataset="digits_lt", imbalance_factor=10, model="convnet_small", epochs=3, batch_size=64, lr=0.05,
            lr_schedule="cosine", device="cpu", progress=False)


def _weights(run_dir):
    return load_checkpoint(run_dir)["model"]


def test_run_writes_the_run_directory(tmp_path):
    run = ltlab.run({**TINY, "run_dir": str(tmp_path / "r")})
    d = run.dir
    for name in ("config.json", "metrics.csv", "per_class.npz", "probes.npz", "checkpoint.pt"):
        assert (d / name).exists(), name
    assert not list(d.glob("*.tmp")) and not list(d.glob(".*tmp"))
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["loss"] == "ce" and cfg["ltlab_version"] and sum(cfg["class_counts"]) > 0
    m = run.metrics
    assert list(m.epoch) == [0, 1, 2]
    for col in ("epoch", "lr", "train_loss", "acc", "acc_many", "acc_medium", "acc_few", "seconds"):
        assert col in m.columns
    assert m.acc.between(0, 1).all()
    assert run.per_class["acc"].shape == (3, 10)
    assert run.per_class["test_logits"].shape == (len(run.per_class["test_labels"]), 10)
    # balanced test split: overall accuracy equals the mean of per-class accuracies
    assert np.isclose(m.acc.iloc[-1], run.per_class["acc"][-1].mean())
    assert run.probes["grad_ratio"].shape == (3, 10)


@pytest.mark.slow
def test_learns_digits_lt(tmp_path):
    run = ltlab.run({**TINY, "epochs": 12, "run_dir": str(tmp_path / "r")})
    assert run.metrics.acc.iloc[-1] > 0.5  # chance is 0.1
    assert run.metrics.train_loss.iloc[-1] < run.metrics.train_loss.iloc[0]


@pytest.mark.slow
def test_same_seed_same_weights(tmp_path):
    a = ltlab.run({**TINY, "epochs": 2, "run_dir": str(tmp_path / "a")})
    b = ltlab.run({**TINY, "epochs": 2, "run_dir": str(tmp_path / "b")})
    wa, wb = _weights(a.dir), _weights(b.dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    pd.testing.assert_frame_equal(a.metrics.drop(columns="seconds"), b.metrics.drop(columns="seconds"))


# slow: 10-40 s each on the shared 2-core box; test_mid_epoch_checkpoint_resumes_exactly keeps resume in test-fast
@pytest.mark.slow
@pytest.mark.parametrize("loss,extra", [("ce", {}), ("ce", {"mixup_alpha": 1.0, "drw_start": 2}),
                                        ("ce", {"sampler": "class_aware", "sampler_params": {"num_samples_cls": 4}}),
                                        ("ce", {"sampler": "progressive"})])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, loss, extra):
    cfg = {**TINY, "epochs": 4, "loss": loss, **extra}
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    # interrupt after epoch k = 1 (two epochs done), then resume
    part_dir = tmp_path / "part"
    part = ltlab.run({**cfg, "run_dir": str(part_dir), "epochs_per_call": 2})
    assert len(part.metrics) == 2
    resumed = ltlab.run({**cfg, "run_dir": str(part_dir), "resume": True})
    wf, wr = _weights(full.dir), _weights(resumed.dir)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    pd.testing.assert_frame_equal(full.metrics.drop(columns="seconds"), resumed.metrics.drop(columns="seconds"))


@pytest.mark.slow
def test_bf16_on_cpu_trains_under_autocast_with_float32_loss_and_probe(tmp_path):
    """precision='bf16' on CPU: the model runs under autocast (bf16 outputs), the loss and the probe see float32
    outputs, and a bf16 run's gradient statistics stay within bf16 rounding of the fp32 run's."""
    dtypes = []

    def watch_head(epoch, row, state):  # after epoch 0: record what the head gives in epoch 1 and its evaluation
        if epoch == 0:
            state.model.head.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    cfg = {**TINY, "epochs": 2, "lr_schedule": "constant"}
    fp32 = ltlab.run({**cfg, "run_dir": str(tmp_path / "fp32")})
    bf16 = ltlab.run({**cfg, "precision": "bf16", "run_dir": str(tmp_path / "bf16")}, callbacks=[watch_head])
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert np.isfinite(bf16.metrics.train_loss).all() and bf16.metrics.acc.iloc[-1] > 0.2  # chance is 0.1
    assert bf16.per_class["test_logits"].dtype == np.float32
    for k in ("grad_pos", "grad_neg"):
        np.testing.assert_allclose(bf16.probes[k][0], fp32.probes[k][0], rtol=0.05, err_msg=k)


def test_probe_sees_the_gradient_unscaled_by_the_grad_scaler(digits_ds):
    """fp16's GradScaler multiplies the loss (here by 2^10); the probe divides it out again, exactly."""
    from ltlab.data import DeviceLoader
    from ltlab.engine import TrainState, train_one_epoch
    from ltlab.losses import create_loss
    from ltlab.models import create_model
    from ltlab.probes import GradientProbe

    sums = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)):
        torch.manual_seed(0)
        model = create_model("convnet_small", 10, in_channels=1, width=8)
        state = TrainState(model=model, loss_fn=create_loss("ce", digits_ds.class_counts),
                           optimizer=torch.optim.SGD(model.parameters(), lr=0.0))
        probe = GradientProbe(10)
        train_one_epoch(state, DeviceLoader(digits_ds, 128, train=True, augment={}, seed=3), device=torch.device("cpu"),
                        probe=probe, scaler=scaler)
        sums.append(probe.summary())
    for k in ("pos", "neg"):
        np.testing.assert_allclose(sums[1][k], sums[0][k], rtol=1e-6, err_msg=k)
    assert sums[0]["pos"].sum() > 0


def test_resume_with_a_different_config_is_refused(tmp_path):
    d = str(tmp_path / "r")
    ltlab.run({**TINY, "epochs": 2, "run_dir": d, "epochs_per_call": 1})
    with pytest.raises(ValueError, match="different config.*lr"):
        ltlab.run({**TINY, "epochs": 2, "run_dir": d, "resume": True, "lr": 0.2})


def test_existing_run_dir_is_not_overwritten(tmp_path):
    d = str(tmp_path / "r")
    ltlab.run({**TINY, "epochs": 1, "run_dir": d})
    with pytest.raises(ValueError, match="already holds a run"):
        ltlab.run({**TINY, "epochs": 1, "run_dir": d})


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ltlab.run({**TINY, "run_dir": str(tmp_path / "empty"), "resume": True})


@pytest.mark.slow
def test_corrupt_checkpoint_falls_back_to_previous(tmp_path):
    d = tmp_path / "r"
    ltlab.run({**TINY, "epochs": 2, "run_dir": str(d)})
    (d / "checkpoint.pt").write_bytes(b"garbage")
    assert load_checkpoint(d)["epoch"] == 0


def test_nan_loss_stops_with_a_hint(tmp_path):
    with pytest.raises(FloatingPointError, match="epoch 0, batch .*Lower lr"):
        ltlab.run({**TINY, "lr": 1e30, "epochs": 1, "run_dir": str(tmp_path / "r")})


def test_load_run_errors(tmp_path):
    with pytest.raises(RunFileError, match="does not exist"):
        load_run(tmp_path / "nope")
    d = tmp_path / "r"
    ltlab.run({**TINY, "epochs": 1, "run_dir": str(d)})
    (d / "metrics.csv").write_text("epoch,lr,train_loss,acc\n0,0.1,")
    with pytest.raises(RunFileError, match="metrics.csv"):
        load_run(d)
    (d / "per_class.npz").write_bytes(b"PK\x03\x04trunc")
    (d / "metrics.csv").unlink()
    with pytest.raises(RunFileError, match="metrics.csv is missing"):
        load_run(d)


# ---------------------------------------------------------------------- mid-epoch checkpoints (issue 9)
SMALL = dict(dataset="synthetic_lt", dataset_params={"num_classes": 4, "n_max": 40}, imbalance_factor=4,
             model="convnet_small", model_params={"width": 8}, epochs=3, batch_size=16, lr=0.05, device="cpu",
             progress=False)  # 90 training images: 6 steps per epoch


def test_mid_epoch_checkpoint_resumes_exactly(tmp_path):
    """A run resumed from a mid-epoch checkpoint (mixup RNG, GALA buffers, probe, loss sums) ends bit-identical."""
    import shutil
    cfg = {**SMALL, "loss": "gala", "mixup_alpha": 1.0, "checkpoint_every_steps": 2}
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    part = tmp_path / "part"
    shutil.copytree(full.dir, part)
    # the last epoch's mid-epoch checkpoint (step 4 of epoch 2) is now the previous one: make it the newest
    shutil.copy(part / "checkpoint_prev.pt", part / "checkpoint.pt")
    ckpt = load_checkpoint(part)
    assert ckpt["epoch"] == 1 and ckpt["position"]["epoch"] == 2 and ckpt["position"]["step"] == 4
    resumed = ltlab.run({**cfg, "run_dir": str(part), "resume": True, "checkpoint_every_steps": None})
    a, b = load_checkpoint(full.dir), load_checkpoint(part)
    for key in ("model", "loss"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    pd.testing.assert_frame_equal(full.metrics.drop(columns="seconds"), resumed.metrics.drop(columns="seconds"))
    for k in full.probes:
        np.testing.assert_array_equal(full.probes[k], resumed.probes[k], err_msg=k)


def test_only_a_previous_checkpoint_still_holds_a_run(tmp_path):
    d = tmp_path / "r"
    ltlab.run({**SMALL, "epochs": 1, "run_dir": str(d)})
    (d / "checkpoint.pt").rename(d / "checkpoint_prev.pt")
    (d / "metrics.csv").unlink()
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoint_prev.pt\)"):
        ltlab.run({**SMALL, "epochs": 1, "run_dir": str(d)})


@pytest.mark.slow
def test_outputs_follow_evaluations_and_an_interruption(tmp_path):
    """Outputs are rewritten at evaluations and the end; the by-source matrix is kept at evaluated epochs;
    an interruption (Ctrl-C in a notebook) leaves the outputs level with the newest checkpoint."""
    run = ltlab.run({**TINY, "epochs": 5, "eval_every": 2, "run_dir": str(tmp_path / "a")})
    p = run.probes
    assert p["grad_ratio"].shape == (5, 10)
    assert list(p["grad_neg_by_source_epochs"]) == [1, 3, 4]
    assert p["grad_neg_by_source"].shape == (3, 10, 10)
    hist = torch.load(run.checkpoint_path, weights_only=False)["history"]
    assert isinstance(hist["test_labels"], torch.Tensor)  # tensors: torch.save is ~8x faster than numpy pickles
    assert "test_logits" not in hist and hist["test_logits_epoch"] == 4  # stored once: per_class.npz (issue 23)
    from ltlab.viz.plotting import gradient_ratio_heatmap
    assert "epoch 4" in gradient_ratio_heatmap(run, epoch=3).layout.title.text
    with pytest.raises(ValueError, match=r"evaluated epochs only \(\[1, 3, 4\]\)"):
        gradient_ratio_heatmap(run, epoch=2)

    def interrupt(epoch, row, state):
        if epoch == 2:  # not an evaluated epoch: without the flush probes.npz would stop at epoch 1
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        ltlab.run({**TINY, "epochs": 5, "eval_every": 2, "run_dir": str(tmp_path / "b")}, callbacks=[interrupt])
    b = load_run(tmp_path / "b")
    assert load_checkpoint(b.dir)["epoch"] == 2
    assert b.probes["grad_ratio"].shape == (3, 10)
    resumed = ltlab.run({**TINY, "epochs": 5, "eval_every": 2, "run_dir": str(tmp_path / "b"), "resume": True})
    for k in ("grad_ratio", "grad_neg_by_source", "grad_neg_by_source_epochs"):
        np.testing.assert_allclose(resumed.probes[k], p[k], rtol=1e-6, atol=1e-9, err_msg=k)


def test_many_classes_keep_per_class_ratios_without_the_matrix(tmp_path):
    """Above probes.MATRIX_MAX_CLASSES (ImageNet-LT, iNaturalist) a run records pos/neg/ratio per class but
    not the C x C matrix (8 MB and 530 MB per evaluation), and the heatmap says why."""
    from ltlab.probes import MATRIX_MAX_CLASSES
    from ltlab.viz.plotting import gradient_ratio_heatmap
    c = MATRIX_MAX_CLASSES + 4
    run = ltlab.run(dataset="synthetic_lt", dataset_params={"num_classes": c, "n_max": 4, "n_test_per_class": 1},
                    imbalance_factor=4, model="convnet_small", model_params={"width": 4}, epochs=1, batch_size=128,
                    device="cpu", progress=False, run_dir=str(tmp_path / "r"))
    assert run.probes["grad_ratio"].shape == (1, c) and "grad_neg_by_source" not in run.probes
    assert np.isfinite(run.probes["grad_pos"]).all() and (run.probes["grad_neg"] > 0).all()
    assert run.probes["grad_neg_by_group"].shape == (1, c, 3)  # by source group instead (issue 23)
    fig = gradient_ratio_heatmap(run)  # drawn by group, never C x C cells
    assert fig.data and np.asarray(fig.data[0].z).size < c * c


@pytest.mark.slow
@pytest.mark.subprocess
def test_compiled_run_matches_eager_with_one_graph_per_mode(tmp_path):
    """compile=True: the same run as eager (within float tolerance) and two static graphs (train, eval),
    with partial last batches (train and test) running eagerly instead of forcing a dynamic recompile."""
    torch._dynamo.reset()
    from torch._dynamo.utils import counters
    counters.clear()
    cfg = {**TINY, "model_params": {"width": 4}, "epochs": 2, "batch_size": 100}
    eager = ltlab.run({**cfg, "run_dir": str(tmp_path / "eager")})
    compiled = ltlab.run({**cfg, "compile": True, "run_dir": str(tmp_path / "compiled")})
    n_train, n_test = sum(eager.class_counts), len(eager.per_class["test_labels"])
    assert n_train % 100 and n_test % 256  # both loaders end with a partial batch
    assert counters["stats"]["unique_graphs"] == 2
    np.testing.assert_allclose(compiled.per_class["test_logits"], eager.per_class["test_logits"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(compiled.metrics.train_loss, eager.metrics.train_loss, rtol=1e-4)
    assert not any(k.startswith("_orig_mod") for k in _weights(compiled.dir))  # saved unwrapped
    torch._dynamo.reset()
