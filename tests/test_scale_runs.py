"""Run directories, loading and probes at benchmark scale (issue 23): tiny synthetic runs with 1,000 classes.

Test logits stored once (per_class.npz, in ``save_logits`` precision), ``load_run`` lazy, probes
full / cheap / off, the negative gradient by source group above ``MATRIX_MAX_CLASSES``, and the
messages for what a run did not record.
"""
from __future__ import annotations

import contextlib
import io
import shutil

import numpy as np
import pytest
import torch

import ltlab
from ltlab import probes
from ltlab.runs import NpzArrays, RunFileError, load_run

C = 1000
BIG = dict(dataset="synthetic_lt", dataset_params={"num_classes": C, "n_max": 4, "n_test_per_class": 2, "image_size": 8},
           imbalance_factor=4, model="convnet_small", model_params={"width": 4}, epochs=2, batch_size=256,
           lr=0.05, device="cpu", progress=False)
# 12 classes spanning the three shot groups (150 .. 10 images): many, medium and few all non-empty
SMALL = dict(dataset="synthetic_lt", dataset_params={"num_classes": 12, "n_max": 150, "n_test_per_class": 4,
                                                     "image_size": 8},
             imbalance_factor=15, model="convnet_small", model_params={"width": 4}, epochs=2, batch_size=64,
             lr=0.05, device="cpu", progress=False)


@pytest.fixture(scope="module")
def big_runs(tmp_path_factory):
    """One 1,000-class run per probes setting (2 epochs each, a few seconds), and what each printed."""
    root = tmp_path_factory.mktemp("scale")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for mode in ("full", "cheap", "off"):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                out[mode] = ltlab.run({**BIG, "probes": mode, "run_dir": str(root / mode)}).dir
            out[mode + "_printed"] = printed.getvalue()
        return out
    finally:
        torch.set_num_threads(before)


def _arrays_in(obj, found: list) -> list:
    """Every tensor / array inside a checkpoint's nested dicts and lists."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        found.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _arrays_in(v, found)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _arrays_in(v, found)
    return found


# ---------------------------------------------------------------------- logits stored once
def test_test_logits_are_on_disk_once(big_runs):
    d = big_runs["full"]
    run = load_run(d)
    logits = run.per_class["test_logits"]
    assert logits.shape == (2 * C, C) and logits.dtype == np.float32
    for name in ("checkpoint.pt", "checkpoint_prev.pt"):
        assert (d / name).exists()
        ckpt = torch.load(d / name, weights_only=True)
        shapes = [tuple(a.shape) for a in _arrays_in(ckpt, [])]
        assert (2 * C, C) not in shapes, f"{name} holds the test logits again"
        assert (d / name).stat().st_size < logits.nbytes  # the checkpoint is smaller than the logits alone
    assert not list(d.glob("features_*.npz"))  # features are written on request only
    assert (d / "per_class.npz").stat().st_size < 1.2 * logits.nbytes


def test_save_logits_float16_and_none(tmp_path):
    cfg = {**SMALL, "epochs": 1, "probes": "off"}
    m = 12 * 4  # test images
    half = ltlab.run({**cfg, "save_logits": "float16", "run_dir": str(tmp_path / "half")})
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    assert half.per_class["test_logits"].dtype == np.float16
    np.testing.assert_allclose(half.per_class["test_logits"], full.per_class["test_logits"], rtol=2e-3, atol=2e-3)
    assert 2 * half.per_class["test_logits"].nbytes == full.per_class["test_logits"].nbytes
    none = ltlab.run({**cfg, "save_logits": "none", "run_dir": str(tmp_path / "none")})
    assert "test_logits" not in none.per_class and none.per_class["acc"].shape == (1, 12)
    from ltlab.posthoc import scaled_test_logits
    with pytest.raises(RunFileError, match="save_logits='none'.*save_logits='float32'"):
        scaled_test_logits(none)
    with pytest.raises(RunFileError, match="save_logits='none'"):
        none.test_logits()
    z, y = half.test_logits()
    assert z.shape == (m, 12) and y.shape == (m,)


def test_bad_settings_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"save_logits='f16'.*'float32'.*'float16'.*'none'"):
        ltlab.RunConfig(save_logits="f16")
    with pytest.raises(ValueError, match=r"probes='all'.*'full'.*'cheap'.*'off'"):
        ltlab.RunConfig(probes="all")
    with pytest.raises(ValueError, match="full, cheap, off"):
        probes.GradientProbe(3, mode="on")


# ---------------------------------------------------------------------- lazy load_run
def test_load_run_reads_no_array_until_one_is_used(big_runs, monkeypatch):
    reads = []
    real = np.lib.format.read_array
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: reads.append(1) or real(*a, **k))
    run = load_run(big_runs["full"])
    assert isinstance(run.per_class, NpzArrays) and isinstance(run.probes, NpzArrays)
    assert run.summary()["epoch"] == 2 and "Run" in run._repr_html_()  # epochs as the CLI counts them
    assert "test_logits" in run.per_class and "grad_pos" in run.probes and len(run.probes) > 10
    assert run.per_class.shape("test_logits") == (2 * C, C)
    assert reads == [] and not run.per_class.loaded and not run.probes.loaded
    acc = run.per_class["acc"]
    assert acc.shape == (2, C) and run.per_class.loaded == {"acc"} and len(reads) == 1
    logits = run.per_class["test_logits"]  # 8 MB: memory-mapped, not read
    assert len(reads) == 1 and run.per_class.mapped == {"test_logits"} and not logits.flags.writeable
    assert run.per_class.get("nope") is None and set(run.per_class) >= {"acc", "epochs", "class_counts"}
    np.testing.assert_array_equal(logits, np.load(big_runs["full"] / "per_class.npz")["test_logits"])
    run.per_class["extra"] = np.ones(2)  # a view: assignment works, the file is untouched
    assert "extra" in run.per_class and "extra" not in np.load(big_runs["full"] / "per_class.npz").files


def test_a_corrupt_member_fails_when_read(big_runs, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(big_runs["cheap"], d)
    data = bytearray((d / "probes.npz").read_bytes())
    z = NpzArrays(d / "probes.npz")
    info = z._index["grad_pos"]
    data[info[1] + 8] ^= 0xFF  # a byte of grad_pos's data, past its header: found by the CRC on reading
    (d / "probes.npz").write_bytes(bytes(data))
    run = load_run(d)
    with pytest.raises(RunFileError, match="probes.npz is corrupt"):
        run.probes["grad_pos"]


# ---------------------------------------------------------------------- probes full / cheap / off
def test_probe_settings_record_what_they_say(big_runs, capsys):
    full, cheap, off = (load_run(big_runs[m]).probes for m in ("full", "cheap", "off"))
    assert str(full["probe_mode"]) == "full" and str(cheap["probe_mode"]) == "cheap" and str(off["probe_mode"]) == "off"
    # full above MATRIX_MAX_CLASSES: by group, not by source
    assert "grad_neg_by_source" not in full and "grad_neg_by_source_cum" not in full
    assert full["grad_neg_by_group"].shape == (2, C, 3) and full["grad_neg_by_group_cum"].shape == (2, C, 3)
    assert list(full["grad_neg_by_group_epochs"]) == [0, 1]
    assert list(full["by_group_names"]) == ["many", "medium", "few"]
    assert "grad_pos_steps" in full and full["grad_ratio_cumcum"].shape == (2, C)
    # the groups split each classifier's negative gradient (own class excluded)
    np.testing.assert_allclose(full["grad_neg_by_group"].sum(-1), full["grad_neg"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(full["grad_neg_by_group_cum"].sum(-1), full["grad_neg_cum"], rtol=1e-6, atol=1e-12)
    # cheap: the sums, no step records, no matrix
    assert {"grad_pos", "grad_neg_cum", "grad_ratio_cumcum"} <= set(cheap)
    assert not [k for k in cheap if k.startswith("grad_neg_by") or k in probes.STEP_KEYS]
    np.testing.assert_allclose(cheap["grad_pos_cum"], full["grad_pos_cum"], rtol=1e-12)
    # off: no gradient statistics, the rest still there
    assert not [k for k in off if k.startswith("grad_")]
    assert {"weight_norm", "pred_count", "mean_max_prob"} <= set(off)


def test_one_line_says_what_is_recorded(big_runs):
    said = {m: [x for x in big_runs[m + "_printed"].splitlines() if x.startswith("probes:")]
            for m in ("full", "cheap", "off")}
    assert all(len(lines) == 1 for lines in said.values()), said  # once per run, not per epoch
    full, cheap, off = (said[m][0] for m in ("full", "cheap", "off"))
    assert "by source group" in full and "not by source class" in full and "1000 classes > MATRIX_MAX_CLASSES" in full
    assert "cheap" in cheap and "no negative gradient by source" in cheap
    assert "off" in off and "no gradient statistics" in off


def test_by_group_equals_the_by_source_matrix_summed_by_group(tmp_path, monkeypatch):
    """The same run (same seed) with the by-source matrix and, under a lowered class limit, by group."""
    a = ltlab.run({**SMALL, "run_dir": str(tmp_path / "source")})
    monkeypatch.setattr(probes, "MATRIX_MAX_CLASSES", 4)
    b = ltlab.run({**SMALL, "run_dir": str(tmp_path / "group")})
    counts = a.class_counts
    assert all(len(v) for v in ltlab.metrics.shot_split(counts).values())  # every group non-empty
    assert "grad_neg_by_group" not in a.probes and "grad_neg_by_source" not in b.probes
    np.testing.assert_array_equal(a.per_class["test_logits"], b.per_class["test_logits"])  # the same training
    for key in ("grad_neg_by_source", "grad_neg_by_source_cum"):
        want = probes.group_matrix(a.probes[key], counts)
        got = b.probes[key.replace("source", "group")]
        assert got.shape == want.shape == (2, 12, 3)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    assert int(b.probes["matrix_max_classes"]) == 4


def test_probe_by_group_matches_by_source_directly():
    rng = np.random.default_rng(0)
    counts = [150, 120, 90, 60, 30, 19, 12, 5]
    p_src = probes.GradientProbe(8, by_source=True)
    p_grp = probes.GradientProbe(8, class_counts=counts)
    assert not p_grp.by_group  # within the class limit: the by-source matrix
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(probes, "MATRIX_MAX_CLASSES", 2)
        p_grp = probes.GradientProbe(8, class_counts=counts)
    assert p_grp.by_group and not p_grp.by_source
    for _ in range(5):
        g = torch.from_numpy(rng.normal(size=(16, 8)))
        y = torch.from_numpy(rng.integers(0, 8, 16))
        p_src.update(g, y)
        p_grp.update(g, y)
    s, g = p_src.summary(), p_grp.summary()
    np.testing.assert_allclose(g["neg_by_group"], probes.group_matrix(s["neg_by_source"], counts), rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(g["neg_by_group"].sum(1), s["neg"], rtol=1e-12)


def test_resume_continues_the_by_group_statistics_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(probes, "MATRIX_MAX_CLASSES", 4)
    cfg = {**SMALL, "epochs": 3}
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    ltlab.run({**cfg, "epochs_per_call": 1, "run_dir": str(tmp_path / "part")})
    part = ltlab.run({**cfg, "resume": True, "run_dir": str(tmp_path / "part")})
    assert sorted(part.probes) == sorted(full.probes)
    for k in full.probes:
        np.testing.assert_array_equal(part.probes[k], full.probes[k], err_msg=k)
    np.testing.assert_array_equal(part.per_class["test_logits"], full.per_class["test_logits"])


def test_resume_after_a_kill_between_checkpoint_and_outputs_recovers_the_logits(tmp_path):
    """The checkpoint holds no logits: a kill after it and before per_class.npz leaves the older evaluation's
    on disk, and the resume evaluates the checkpoint's model again."""
    cfg = {**SMALL, "probes": "cheap"}
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    d = tmp_path / "part"
    ltlab.run({**cfg, "epochs_per_call": 1, "run_dir": str(d)})
    old = (d / "per_class.npz").read_bytes()  # epoch 0's evaluation
    ltlab.run({**cfg, "resume": True, "run_dir": str(d)})
    (d / "per_class.npz").write_bytes(old)  # as if killed before epoch 1's outputs were written
    again = ltlab.run({**cfg, "resume": True, "run_dir": str(d)})  # nothing left to train
    assert list(again.per_class["epochs"]) == [0, 1]
    np.testing.assert_array_equal(again.per_class["test_logits"], full.per_class["test_logits"])


# ---------------------------------------------------------------------- messages
def test_what_was_not_recorded_is_named_never_called_old(big_runs):
    full, cheap, off = (load_run(big_runs[m]).probes for m in ("full", "cheap", "off"))
    with pytest.raises(probes.NotRecordedError, match=r"1,000 classes, more than MATRIX_MAX_CLASSES = 256") as e:
        probes.matrix_at(full, "grad_neg_by_source", -1)
    assert "grad_neg_by_group" in str(e.value)
    with pytest.raises(probes.NotRecordedError, match="probes='cheap'"):
        probes.matrix_at(cheap, "grad_neg_by_group_cum", -1)
    with pytest.raises(probes.NotRecordedError, match="probes='off'"):
        probes.matrix_at(off, "grad_neg_by_source", -1)
    for arrays, key in ((full, "grad_neg_by_source"), (cheap, "grad_neg_by_source_cum"), (off, "grad_ratio_cum")):
        why = probes.not_recorded(arrays, key)
        assert not any(w in why.lower() for w in ("predates", "retrain", " old", "older")), why
    with pytest.raises(KeyError, match="MATRIX_MAX_CLASSES = 256"):  # a plain read says why too
        full["grad_neg_by_source_cum"]
    with pytest.raises(KeyError, match="probes='off'"):
        off["grad_ratio"]
    m, at = probes.matrix_at(full, "grad_neg_by_group_cum", -1)
    assert m.shape == (C, 3) and at == 1
