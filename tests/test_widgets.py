"""ltlab.viz.widgets: post-hoc maths against the formulas, schedule curves, and the panels built headless."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from ltlab import posthoc
from ltlab.viz import widgets
from ltlab.data import longtail_counts
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
    """Scores f @ (W_c / ||W_c||^p)^T with the classifier bias dropped (Kang et al. 2020; official code)."""
    rng = np.random.default_rng(0)
    feats, w, b = rng.random((200, 6)), rng.normal(size=(10, 6)) * np.linspace(3, 0.3, 10)[:, None], rng.normal(size=10)
    labels = rng.integers(0, 10, 200)
    ev = widgets.PosthocEvaluator(feats @ w.T + b, labels, COUNTS, features=feats, weight=w)
    assert np.array_equal(ev.predict(), (feats @ w.T + b).argmax(1))  # tau-normalisation off: the saved logits
    for p in (0.0, 0.5, 1.0):
        z = feats @ (w / np.linalg.norm(w, axis=1, keepdims=True) ** p).T
        assert np.array_equal(ev.predict(tn_p=p), z.argmax(1))
    with pytest.raises(ValueError, match="features"):
        widgets.PosthocEvaluator(feats @ w.T, labels, COUNTS).predict(tn_p=1.0)


def test_evaluator_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not agree"):
        widgets.PosthocEvaluator(np.zeros((5, 3)), np.zeros(4, int), [3, 2, 1])
    with pytest.raises(ValueError, match="> 0"):
        widgets.PosthocEvaluator(np.zeros((4, 3)), np.zeros(4, int), [3, 0, 1])


# ---------------------------------------------------------------------- schedules
def test_schedule_explorer_draws_the_plotting_figures():
    """The explorer shows ltlab.viz.plotting's figure of the method for its slider values (the builders are checked
    against the formulas in test_plotting.py); each method shows its own sliders."""
    ex = widgets.schedule_explorer(num_classes=8)
    counts = longtail_counts(500, 8, 100)
    for m in widgets.SCHEDULE_METHODS:
        ex.method.value = m
        shown = {k for k, v in ex.controls.items() if v.layout.display != "none"}
        assert shown == {"num_classes", "imbalance_factor", "epochs", *widgets._SCHED_SLIDERS[m]}
        want = widgets.schedule_figure(m, num_classes=8)
        assert [t.name for t in ex.figure.data] == [t.name for t in want.data], m
        assert ex.figure.layout.title.text == want.layout.title.text
    ex.method.value = "gcl"
    ex.controls["noise_mul"].value = 1.0
    delta = np.log(max(counts)) - np.log(np.sort(counts)[::-1])
    np.testing.assert_allclose(ex.figure.data[0].y, 1.0 * delta / delta.max(), rtol=1e-12)
    ex.method.value = "glag_alpha"
    ex.controls["c"].value = 3.0
    assert ex.figure.data[0].y[10] == pytest.approx(3.0 ** (10 / 200) - 1)
    with pytest.raises(ValueError, match="glag_alpha"):
        widgets.schedule_figure("nope")


def test_mean_abs_clamped_normal_against_sampling():
    from ltlab.viz.plotting import _mean_abs_clamped_normal
    eps = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 3
    assert _mean_abs_clamped_normal(1 / 3) == pytest.approx(eps.clamp(-1, 1).abs().mean().item(), abs=1e-3)
    assert _mean_abs_clamped_normal(10.0) == pytest.approx(1.0, abs=0.1)  # almost always clamped


# ---------------------------------------------------------------------- panels on a tiny run
@pytest.fixture(scope="module")
def tiny_run(tiny_run_copy):
    return tiny_run_copy("ce")  # tests/conftest.py


def test_posthoc_panel_updates_live(tiny_run):
    panel = widgets.posthoc_panel(tiny_run, features="extract")
    ev = panel.evaluator
    z, labels = tiny_run.per_class["test_logits"], tiny_run.per_class["test_labels"]
    # the checkpoint's features through its classifier rows give the saved logits, up to the bias
    bias = z - ev.features @ ev.weight.T
    np.testing.assert_allclose(bias, np.broadcast_to(bias[:1], bias.shape), atol=1e-4)
    assert not panel.tn_p.disabled and not panel.tn_on.value
    assert panel.result["overall"] == pytest.approx(tiny_run.metrics.acc.iloc[-1])
    panel.pn_tau.value = 1.0
    panel.la_tau.value = 1.0
    r = panel.result
    n = np.asarray(tiny_run.class_counts, dtype=np.float64)
    adjusted = z - np.log(n / n.sum())[None, :]  # independent float64 rebuild of LA then PN
    p = np.exp(adjusted - adjusted.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = posthoc.shot_scores((p / p.sum(0, keepdims=True)).argmax(1), labels, tiny_run.class_counts)
    for k in ("overall", "many", "medium", "few"):
        assert r[k] == pytest.approx(want[k], nan_ok=True), k
    bars = {int(x): y for t in panel.figure.data[:3] for x, y in zip(t.x, t.y)}
    np.testing.assert_allclose([bars[c] for c in range(10)], r["per_class"])
    assert f"{r['many']:.4f}" in panel.shots.value and f"{r['few']:.4f}" in panel.shots.value
    panel.tn_on.value = True
    assert panel.result["overall"] == pytest.approx(ev.evaluate(1.0, 1.0, panel.tn_p.value)["overall"])


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
def test_posthoc_panel_and_the_stage_functions_give_the_same_numbers(tiny_run, tau):
    """One slider at a time, the panel shows what the post-hoc steps compute for the run and tau (before issue 15
    the panel kept the bias in tau-normalisation and the stage dropped it: 0.176 vs 0.100 at tau 0)."""
    panel = widgets.posthoc_panel(tiny_run, features="extract")
    keys = ("overall", "many", "medium", "few")

    def same(result):
        assert [panel.result[k] for k in keys] == pytest.approx([result[k] for k in keys], nan_ok=True)
    panel.tn_p.value, panel.tn_on.value = tau, True
    same(posthoc.tau_normalization(tiny_run, taus=[tau], select_on="test", save=False))
    panel.tn_on.value = False
    panel.pn_tau.value = tau
    same(posthoc.pn_accuracy(tiny_run, tau=tau))
    panel.pn_tau.value, panel.la_tau.value = 0.0, tau
    same(posthoc.logit_adjust_accuracy(tiny_run, tau=tau))


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
