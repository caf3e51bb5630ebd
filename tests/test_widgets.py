"""ltlab.widgets: post-hoc maths against the formulas, schedule curves, and the panels built headless."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from ltlab import posthoc, widgets
from ltlab.runs import load_run, write_npz

COUNTS = [500, 300, 180, 110, 60, 35, 19, 12, 7, 4]  # many 0-3, medium 4-6, few 7-9


def _expected(logits, labels, counts, la_tau, pn_tau):
    """Independent float64 rebuild: z - tau*log(pi) -> softmax / colsum**tau -> argmax -> per-class/group means."""
    z = np.asarray(logits, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    z = z - la_tau * np.log(n / n.sum())[None, :]
    e = np.exp(z - z.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    pred = np.argmax(p / p.sum(0, keepdims=True) ** pn_tau, axis=1)
    acc = np.array([np.mean(pred[labels == c] == c) for c in range(len(n))])
    groups = {"many": n > 100, "medium": (n >= 20) & (n <= 100), "few": n < 20}
    return acc, {k: acc[m].mean() for k, m in groups.items()}, np.mean(pred == labels)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(10), 40)
    logits = rng.normal(size=(400, 10)) * 2 + np.eye(10)[labels] * 1.5 + np.log(np.asarray(COUNTS))[None, :] * 0.8
    return logits, labels


@pytest.mark.parametrize("la_tau,pn_tau", [(0, 0), (1.0, 0), (0, 1.0), (0.7, 0.4), (2.0, 1.5)])
def test_evaluator_matches_formula_and_posthoc(data, la_tau, pn_tau):
    logits, labels = data
    r = widgets.PosthocEvaluator(logits, labels, COUNTS).evaluate(la_tau, pn_tau)
    acc, shots, overall = _expected(logits, labels, COUNTS, la_tau, pn_tau)
    np.testing.assert_allclose(r["per_class"], acc, atol=1e-12)
    assert r["overall"] == pytest.approx(overall)
    for k in ("many", "medium", "few"):
        assert r[k] == pytest.approx(shots[k])
    # the library's post-hoc functions agree prediction by prediction
    ref = posthoc.pn_rebalance(posthoc.logit_adjust(logits, COUNTS, la_tau), pn_tau).argmax(1)
    assert np.array_equal(widgets.PosthocEvaluator(logits, labels, COUNTS).predict(la_tau, pn_tau), ref)


def test_adjustment_moves_accuracy_towards_tail(data):
    logits, labels = data
    ev = widgets.PosthocEvaluator(logits, labels, COUNTS)
    base, adj = ev.evaluate(), ev.evaluate(la_tau=1.0)
    assert adj["few"] > base["few"] and adj["many"] < base["many"]


def test_tau_normalisation_matches_formula():
    rng = np.random.default_rng(0)
    feats, w, b = rng.random((200, 6)), rng.normal(size=(10, 6)) * np.linspace(3, 0.3, 10)[:, None], rng.normal(size=10)
    labels = rng.integers(0, 10, 200)
    ev = widgets.PosthocEvaluator(feats @ w.T + b, labels, COUNTS, features=feats, weight=w, bias=b)
    for p in (0.0, 0.5, 1.0):
        z = feats @ (w / np.linalg.norm(w, axis=1, keepdims=True) ** p).T + b
        assert np.array_equal(ev.predict(tn_p=p), z.argmax(1))
        assert np.array_equal(ev.predict(tn_p=p), (feats @ posthoc.tau_normalize(w, p).T + b).argmax(1))
    with pytest.raises(ValueError, match="features"):
        widgets.PosthocEvaluator(feats @ w.T, labels, COUNTS).predict(tn_p=1.0)


def test_evaluator_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not agree"):
        widgets.PosthocEvaluator(np.zeros((5, 3)), np.zeros(4, int), [3, 2, 1])
    assert widgets.benchmark_posthoc(300, 10, repeats=2) > 0


# ---------------------------------------------------------------------- schedules
def test_schedule_curves_follow_the_formulas():
    n = np.asarray(widgets.longtail_counts(500, 10, 100), dtype=np.float64)
    a = widgets.schedule_curves("glag_alpha", epochs=20, s=0.5, c=3.0)
    np.testing.assert_allclose(a["left"][0]["y"], [0.5 * (3.0 ** (t / 20) - 1) for t in range(20)])
    q = widgets.schedule_curves("ala", qf="paper")["right"][0]["y"]
    np.testing.assert_allclose(q, 1 / np.log(n / n.min() + 1))
    g = widgets.schedule_curves("gcl", noise_mul=0.7)["right"][0]["y"]
    delta = np.log(n.max()) - np.log(n)
    np.testing.assert_allclose(g, 0.7 * delta / delta.max())
    d = widgets.schedule_curves("drw", epochs=10, drw_start=6, cb_beta=0.999)
    w = (1 - 0.999) / (1 - 0.999 ** n)
    np.testing.assert_allclose(d["right"][1]["y"], w / w.sum() * 10)
    assert d["left"][1]["y"][:6] == [1.0] * 6 and d["left"][1]["y"][6] == pytest.approx(w[-1] / w.sum() * 10)
    b = widgets.schedule_curves("glag_beta", epochs=30, beta0=0.6, step=0.05, p_improve=1.0)
    assert b["right"][0]["y"] == pytest.approx([1.0] * len(b["right"][0]["y"]))  # always improving -> clipped at 1
    with pytest.raises(ValueError, match="glag_alpha"):
        widgets.schedule_curves("nope")


def test_mean_abs_clamped_normal_against_sampling():
    eps = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 3
    assert widgets._mean_abs_clamped_normal(1 / 3) == pytest.approx(eps.clamp(-1, 1).abs().mean().item(), abs=1e-3)
    assert widgets._mean_abs_clamped_normal(10.0) == pytest.approx(1.0, abs=0.1)  # almost always clamped


def test_schedule_explorer_redraws_on_method_change():
    ex = widgets.schedule_explorer(num_classes=8)
    names = {}
    for m in widgets.SCHEDULE_METHODS:
        ex.method.value = m
        names[m] = tuple(t.name for t in ex.figure.data)
        shown = {k for k, v in ex.controls.items() if v.layout.display != "none"}
        assert shown == {"num_classes", "imbalance_factor", "epochs", *widgets._SCHED_SLIDERS[m]}
    assert len(set(names.values())) == len(names)
    ex.method.value = "gcl"
    before = list(ex.figure.data[-1].y)
    ex.controls["noise_mul"].value = 1.0
    assert list(ex.figure.data[-1].y) != before


# ---------------------------------------------------------------------- panels on a tiny run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import ltlab
    d = tmp_path_factory.mktemp("widgets") / "tiny"
    return ltlab.run(dataset="digits_lt", epochs=2, lr=0.05, batch_size=64, progress=False, device="cpu",
                     run_dir=str(d))


def test_posthoc_panel_updates_live(tiny_run):
    panel = widgets.posthoc_panel(tiny_run, features="extract")
    ev = panel.evaluator
    # p = 0 rebuilds the saved logits from checkpoint features and weights
    np.testing.assert_allclose(ev.features @ ev.weight.T + ev.bias, tiny_run.per_class["test_logits"], atol=1e-4)
    assert not panel.tn_p.disabled
    first = dict(panel.result)
    assert first["overall"] == pytest.approx(tiny_run.metrics.acc.iloc[-1])
    panel.pn_tau.value = 1.0
    panel.la_tau.value = 1.0
    r = panel.result
    assert r["few"] != first["few"] or r["many"] != first["many"]
    exp = ev.evaluate(1.0, 1.0)
    bars = {int(x): y for t in panel.figure.data[:3] for x, y in zip(t.x, t.y)}
    np.testing.assert_allclose([bars[c] for c in range(10)], exp["per_class"])
    assert f"{exp['many']:.4f}" in panel.shots.value and f"{exp['few']:.4f}" in panel.shots.value
    panel.tn_p.value = 1.0
    assert panel.result["overall"] == pytest.approx(ev.evaluate(1.0, 1.0, 1.0)["overall"])


def test_posthoc_panel_without_features_disables_tau_norm(tiny_run):
    panel = widgets.posthoc_panel(tiny_run.dir, features="auto")
    assert panel.tn_p.disabled and "features='extract'" in panel.note_text


def test_posthoc_panel_without_logits_says_how_to_produce_them(tiny_run, tmp_path):
    import shutil
    d = tmp_path / "old"
    shutil.copytree(tiny_run.dir, d)
    pc = dict(tiny_run.per_class)
    pc.pop("test_logits"), pc.pop("test_labels")
    write_npz(d / "per_class.npz", pc)
    with pytest.raises(ValueError, match=r"lacks 'test_logits'.*resume=True"):
        widgets.posthoc_panel(load_run(d))


def _wait_for(cond, timeout=60.0):
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    return cond()


def test_training_panel_runs_and_plots_each_epoch(tmp_path):
    tp = widgets.training_panel(epochs=2, run_root=tmp_path, device="cpu", batch_size=64)
    tp.start()
    run = tp.wait(timeout=120)
    assert run is not None and len(run.metrics) == 2 and "finished" in tp.status.value
    assert list(tp.loss_fig.data[0].x) == [0, 1]
    np.testing.assert_allclose(tp.loss_fig.data[0].y, run.metrics.train_loss)
    np.testing.assert_allclose(tp.acc_fig.data[3].y, run.metrics.acc_few)
    assert not tp.start_button.disabled and tp.stop_button.disabled


def test_training_panel_stop_ends_cleanly_with_checkpoint(tmp_path):
    tp = widgets.training_panel(epochs=40, run_root=tmp_path, device="cpu", batch_size=64)
    tp.start()
    assert _wait_for(lambda: tp.epochs_done >= 1)
    tp.stop()
    run = tp.wait(timeout=120)
    assert len(run.metrics) < 40 and "stopped" in tp.status.value
    ckpt = torch.load(run.checkpoint_path, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == run.metrics.epoch.iloc[-1] == tp.epochs_done - 1


def test_training_panel_reports_errors(tmp_path):
    tp = widgets.training_panel(dataset="cifar10_lt", epochs=1, run_root=tmp_path, root=str(tmp_path / "none"))
    tp.start()
    with pytest.raises(FileNotFoundError):
        tp.wait(timeout=60)
    assert "failed" in tp.status.value and "CIFAR-10 not found" in tp.status.value
    bad = widgets.training_panel(epochs=1, run_root=tmp_path, batch_size=0)
    bad.start()
    assert not bad.running and "batch_size" in bad.status.value
