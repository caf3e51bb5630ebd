"""Crash safety (issue 9): a stop after any single output file, SIGKILL at random points, NaN guard, disk full /
unwritable run directories."""
from __future__ import annotations

import errno
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

import ltlab
from ltlab.launch.cli import main
from ltlab.runs import CHECKPOINTS, RunFileError, load_checkpoint, load_run

TINY = dict(dataset="synthetic_lt", dataset_params={"num_classes": 4, "n_max": 40}, imbalance_factor=4,
            model="convnet_small", model_params={"width": 8}, epochs=4, batch_size=16, lr=0.05, device="cpu",
            progress=False, loss="gala", mixup_alpha=1.0, checkpoint_every_steps=1)  # 6 steps per epoch


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _train(cfg: dict) -> None:  # runs in a forked child
    torch.set_num_threads(1)
    ltlab.run(cfg)


def _has_checkpoint(d: Path) -> bool:
    return any((d / n).exists() for n in CHECKPOINTS)


def _assert_readable(d: Path, model_keys: set[str]) -> None:
    """After a kill: the run loads (or has no metrics yet) and a checkpoint loads (or none was written yet)."""
    try:
        load_run(d)
    except RunFileError as exc:
        assert any(s in str(exc) for s in ("metrics.csv is missing", "config.json is missing", "does not exist")), exc
    if _has_checkpoint(d):
        assert set(load_checkpoint(d)["model"]) == model_keys


def _write_then_stop(cfg: dict, k: int) -> None:  # runs in a forked child
    """Train ``cfg``; stop the process right after its k-th file write into the run directory (``os._exit``:
    no ``finally``, no flush, as a kill); exit code 3 when the run finished with fewer writes."""
    torch.set_num_threads(1)
    import ltlab.runs
    import ltlab.runs.files as files  # the run files are written through write_json / save_torch ... there
    real, written = files.atomic_write_bytes, []

    def write(path, data, **kw):
        out = real(path, data, **kw)
        if Path(path).parent == Path(cfg["run_dir"]):
            written.append(Path(path).name)
            if len(written) == k:
                os._exit(0)
        return out
    files.atomic_write_bytes = ltlab.runs.atomic_write_bytes = write
    ltlab.run(cfg)
    os._exit(3)


def _forkserver():
    import multiprocessing as mp
    ctx = mp.get_context("forkserver")  # a clean parent (no OpenMP threads) that has imported ltlab once
    ctx.set_forkserver_preload(["ltlab.engine", "torch._dynamo", "tqdm"])
    return ctx


@pytest.mark.subprocess
def test_a_stop_after_any_single_output_file_leaves_a_run_that_loads_and_resumes(tmp_path):
    """Stopped right after its k-th file write, for every k (by count, not timing): the directory loads, or
    holds no run yet (no metrics.csv, which is written last), and resuming ends with the uninterrupted
    weights. Before issue 15 metrics.csv came before per_class.npz: k = 3 left a directory load_run refused
    ("per_class.npz is missing")."""
    cfg = {**TINY, "epochs": 2, "mixup_alpha": 0.0, "checkpoint_every_steps": None}
    ref = load_checkpoint(ltlab.run({**cfg, "run_dir": str(tmp_path / "ref")}).dir)["model"]
    ctx, k = _forkserver(), 0
    while True:
        k += 1
        d = tmp_path / f"stop{k}"
        p = ctx.Process(target=_write_then_stop, args=({**cfg, "run_dir": str(d)}, k))
        p.start()
        p.join()
        if p.exitcode == 3:
            break
        assert p.exitcode == 0 and k < 40
        try:
            load_run(d)
        except RunFileError as exc:
            assert not (d / "metrics.csv").exists(), f"stopped after file {k}: {exc}"
        if _has_checkpoint(d):
            done = ltlab.run({**cfg, "run_dir": str(d), "resume": True})
            assert list(done.metrics.epoch) == [0, 1]
            got = load_checkpoint(d)["model"]
            assert all(torch.equal(ref[n], got[n]) for n in ref), f"resumed after file {k}"
    assert k == 10  # config.json, then per epoch: checkpoint.pt, per_class.npz, probes.npz, metrics.csv


@pytest.mark.subprocess
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_weights(tmp_path):
    """Forked training processes are SIGKILLed after seeded random delays (mid-step, mid-write, ...);
    each time the run directory stays readable, and resuming until done gives bit-identical weights."""
    ctx = _forkserver()
    warm = ctx.Process(target=int)  # boot the fork server before timing anything
    warm.start()
    warm.join()
    ref_dir = tmp_path / "ref"
    t0 = time.perf_counter()
    p = ctx.Process(target=_train, args=({**TINY, "run_dir": str(ref_dir)},))
    p.start()
    p.join()
    duration = time.perf_counter() - t0
    assert p.exitcode == 0
    ref = load_checkpoint(ref_dir)
    rnd = random.Random(9)
    d, kills = tmp_path / "killed", 0
    for _ in range(20):
        p = ctx.Process(target=_train, args=({**TINY, "run_dir": str(d), "resume": _has_checkpoint(d)},))
        p.start()
        if kills < 4:
            p.join(timeout=rnd.uniform(0.05, 0.6) * duration)
            if p.exitcode is None:
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
        p.join()
        assert p.exitcode in (0, -signal.SIGKILL), f"training failed with exit code {p.exitcode}"
        _assert_readable(d, set(ref["model"]))
        if p.exitcode == 0:
            break
    assert kills >= 1, "no kill landed before the run finished"
    assert p.exitcode == 0, "the run did not finish after 20 resumptions"
    done = load_checkpoint(d)
    assert done["epoch"] == TINY["epochs"] - 1 and done["position"] is None
    for key in ("model", "loss"):
        assert all(torch.equal(ref[key][k], done[key][k]) for k in ref[key]), key
    assert not list(d.glob(".*.tmp")), "temporary files of killed writers are cleaned on resume"
    assert list(load_run(d).metrics.epoch) == list(range(TINY["epochs"]))


# ---------------------------------------------------------------------- NaN guard
def test_nan_loss_stops_and_leaves_a_readable_checkpoint(tmp_path, monkeypatch):
    """The loss turns NaN at epoch 1, batch 3: the error names both; the step-2 checkpoint is intact."""
    import ltlab.stages.base as base
    real = base.create_loss

    def poisoned(*a, **k):
        loss = real(*a, **k)
        forward, calls = loss.forward, []

        def fwd(logits, labels):
            calls.append(1) if loss.training else None
            out = forward(logits, labels)
            return out * float("nan") if loss.epoch == 1 and loss.training and len(calls) == 6 + 4 else out
        loss.forward = fwd
        return loss

    monkeypatch.setattr(base, "create_loss", poisoned)
    d = tmp_path / "r"
    cfg = {**TINY, "mixup_alpha": 0.0, "checkpoint_every_steps": 2}
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 3 .*checkpoint.pt \(epoch 1, step 2\).*Lower lr"):
        ltlab.run({**cfg, "run_dir": str(d)})
    ckpt = load_checkpoint(d)
    assert ckpt["epoch"] == 0 and (ckpt["position"]["epoch"], ckpt["position"]["step"]) == (1, 2)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert list(load_run(d).metrics.epoch) == [0]


# ---------------------------------------------------------------------- disk full, unwritable paths
def test_disk_full_names_the_path_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    d = tmp_path / "r"
    ltlab.run({**TINY, "epochs": 2, "epochs_per_call": 1, "checkpoint_every_steps": None, "run_dir": str(d)})
    real = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("checkpoint.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match=rf"cannot write {d / 'checkpoint.pt'}: No space left on device") as err:
        ltlab.run({**TINY, "epochs": 2, "checkpoint_every_steps": None, "run_dir": str(d), "resume": True})
    assert err.value.errno == errno.ENOSPC
    assert load_checkpoint(d)["epoch"] == 0 and not list(d.glob(".*.tmp"))
    # the command line reports it in one line, exit code 1
    rc = main(["train", "-p", "dataset", "synthetic_lt", "-p", "dataset_params", "{num_classes: 4, n_max: 40}",
               "-p", "imbalance_factor", "4", "-p", "model_params", "{width: 8}", "-p", "epochs", "1",
               "-p", "device", "cpu", "-p", "progress", "False", "-p", "run_dir", str(tmp_path / "cli")])
    assert rc == 1 and "ltlab: error: cannot write" in capsys.readouterr().err


def test_run_dir_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=rf"cannot create the run directory {blocker / 'sub'}"):
        ltlab.run({**TINY, "epochs": 1, "run_dir": str(blocker / "sub")})


def test_truncated_newest_checkpoint_resumes_from_the_previous_one(tmp_path):
    cfg = {**TINY, "epochs": 3, "mixup_alpha": 0.0, "checkpoint_every_steps": None}
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    d = tmp_path / "part"
    ltlab.run({**cfg, "run_dir": str(d), "epochs_per_call": 2})
    data = (d / "checkpoint.pt").read_bytes()
    (d / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # epoch 1 truncated: epoch 0 is used
    ltlab.run({**cfg, "run_dir": str(d), "resume": True})
    a, b = load_checkpoint(full.dir), load_checkpoint(d)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    (d / "checkpoint.pt").write_bytes(b"")
    (d / "checkpoint_prev.pt").write_bytes(b"\x80\x02junk")
    with pytest.raises(ValueError, match="no readable checkpoint: .*checkpoint.pt.*checkpoint_prev.pt"):
        load_checkpoint(d)
