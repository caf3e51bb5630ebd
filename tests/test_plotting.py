"""Figure builders (ltlab.plotting) on tiny runs, rebuilt values, class-set checks, and static export."""
from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import plotly.graph_objects as go
import pytest

import ltlab
from ltlab import plotting
from ltlab.export import find_chromium, save_figures, slug
from ltlab.features import tsne
from ltlab.runs import RunFileError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot_runs")
    kw = dict(dataset="digits_lt", epochs=2, batch_size=64, device="cpu", progress=False)
    out = {name: ltlab.run(loss=name, run_dir=str(root / name), **kw) for name in ("ce", "gala", "ghm_cwap")}
    out["ce_if10"] = ltlab.run(loss="ce", imbalance_factor=10, run_dir=str(root / "ce_if10"), **kw)
    return out


def _has_data(fig: go.Figure) -> bool:
    def size(tr, key):
        v = getattr(tr, key, None)
        return 0 if v is None else np.asarray(v, dtype=object).size
    return isinstance(fig, go.Figure) and any(size(t, "y") or size(t, "z") for t in fig.data)


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_every_builder_returns_a_figure_with_data(runs):
    ce, gala, ghm = runs["ce"], runs["gala"], runs["ghm_cwap"]
    counts = ce.class_counts
    f = ce.per_class["test_logits"]  # any (N, C) array will do for the scatter
    df = tsne(f, ce.per_class["test_labels"], class_counts=counts, preds=f.argmax(1), perplexity=10, n_jobs=1)
    figs = [
        plotting.tsne_scatter(df), plotting.tsne_scatter({"a": df, "b": df}, color="group"),
        plotting.per_class_accuracy_curve([ce, gala, ghm]), plotting.accuracy_over_epochs([ce, gala, runs["ce_if10"]]),
        plotting.gradient_ratio_curves([ce, gala]), plotting.gradient_ratio_by_class([ce, gala]),
        plotting.gradient_ratio_heatmap(ce), plotting.weight_norms([ce, gala]), plotting.gala_theta_phi(gala),
        plotting.confusion_matrix(ce), plotting.per_class_accuracy_bar(ce),
        plotting.glag_schedule(20, beta=ce), plotting.glag_schedule(20, c=[2.0, 3.0]),
        plotting.ala_factors(counts), plotting.gcl_cloud_widths(counts), plotting.drw_weights(counts, 5, 10),
        plotting.ghm_cwap_bins(ghm), plotting.ghm_cwap_bins(plotting.synthetic_ghm_cwap_loss(counts, epochs=2)),
    ]
    for fig in figs:
        assert _has_data(fig), fig.layout.title.text
        assert fig.layout.font.size >= 14


def test_per_class_curve_values_sorted_by_count(runs):
    ce, gala = runs["ce"], runs["gala"]
    fig = plotting.per_class_accuracy_curve([ce, gala], labels=["CE", "GALA"])
    counts = np.asarray(ce.per_class["class_counts"])
    order = sorted(range(len(counts)), key=lambda c: -counts[c])
    for name, run in (("CE", ce), ("GALA", gala)):
        tr = next(t for t in fig.data if t.name.startswith(name + " "))
        np.testing.assert_allclose(tr.y, np.asarray(run.per_class["acc"])[-1][order])
    bars = _trace(fig, "train count")
    np.testing.assert_array_equal(bars.y, counts[order])
    axis = fig.layout.yaxis if bars.yaxis in (None, "y") else fig.layout[bars.yaxis.replace("y", "yaxis")]
    assert axis.type == "log"


def test_gradient_ratio_by_class_values(runs):
    ce = runs["ce"]
    fig = plotting.gradient_ratio_by_class(ce)
    counts = np.asarray(ce.class_counts)
    order = np.argsort(-counts, kind="stable")
    pos, neg = ce.probes["grad_pos"][-1], ce.probes["grad_neg"][-1]
    np.testing.assert_allclose(_trace(fig, "ce").y, (pos / neg)[order], rtol=1e-12)
    assert fig.layout.yaxis.type == "log"


def test_schedule_figures_follow_the_formulas():
    counts = [500, 200, 80, 30, 10, 5]
    n = np.asarray(counts, dtype=np.float64)
    fig = plotting.glag_schedule(10, s=0.5, c=3.0)
    alpha = np.asarray(fig.data[0].y)
    np.testing.assert_allclose(alpha[:10], [0.5 * (3.0 ** (e / 10) - 1) for e in range(10)], rtol=1e-12)
    fig = plotting.ala_factors(counts)
    np.testing.assert_allclose(_trace(fig, "QF (paper)").y, 1 / np.log(n / n.min() + 1), rtol=1e-12)
    np.testing.assert_allclose(_trace(fig, "QF (code)").y, math.log(2) / np.log(n / n.min() + 1), rtol=1e-12)
    fig = plotting.gcl_cloud_widths(counts, noise_mul=0.7)
    delta = np.log(n.max()) - np.log(n)
    np.testing.assert_allclose(fig.data[0].y, 0.7 * delta / delta.max(), rtol=1e-12)
    fig = plotting.drw_weights(counts, drw_start=3, num_epochs=6, beta=0.999)
    w = (1 - 0.999) / (1 - 0.999 ** n)
    np.testing.assert_allclose(_trace(fig, "after epoch 3").y, w / w.sum() * len(n), rtol=1e-12)
    head = _trace(fig, "head (n=500)").y
    np.testing.assert_allclose(head, [1, 1, 1] + [w[0] / w.sum() * len(n)] * 3, rtol=1e-12)


def test_replay_glag_beta_rule():
    acc = np.array([[0.5, 0.2, 0.1], [0.6, 0.2, 0.0], [0.55, 0.3, 0.0]])
    beta = plotting.replay_glag_beta(acc, [1, 2], beta0=0.6, step=0.05)
    np.testing.assert_allclose(beta, [[0.6, 0.6], [0.6, 0.55], [0.65, 0.55]])


def test_runs_over_different_classes_are_not_drawn_together(runs):
    ce = runs["ce"]
    with pytest.raises(ValueError, match="different long-tailed splits"):
        plotting.per_class_accuracy_curve([ce, runs["ce_if10"]])
    other = dataclasses.replace(ce, config={**ce.config, "classes": list("abcdefghij"), "dataset": "other"})
    for builder in (plotting.per_class_accuracy_curve, plotting.accuracy_over_epochs,
                    plotting.gradient_ratio_curves, plotting.weight_norms):
        with pytest.raises(ValueError, match="different class sets"):
            builder([ce, other])


def test_missing_run_files_name_their_producer(runs, tmp_path):
    with pytest.raises(RunFileError, match="loss='gala'"):
        plotting.gala_theta_phi(runs["ce"])
    with pytest.raises(RunFileError, match="loss='ghm_cwap'"):
        plotting.ghm_cwap_bins(runs["ce"])
    bare = dataclasses.replace(runs["ce"], probes={})
    with pytest.raises(RunFileError, match="01_train"):
        plotting.gradient_ratio_by_class(bare)
    with pytest.raises(ValueError, match="color"):
        plotting.tsne_scatter(None, color="loss")
    with pytest.raises(ValueError, match="2 runs"):
        plotting.run_labels([runs["ce"], runs["gala"]], ["only one"])


def test_slug_and_export_errors(tmp_path, monkeypatch):
    assert slug("tsne_ce (run 1)/x") == "tsne_ce_run_1_x"
    with pytest.raises(ValueError, match="formats"):
        save_figures({"a": go.Figure()}, tmp_path, formats=("jpg",))
    with pytest.raises(ValueError, match="plain file stem"):
        save_figures({"a/b": go.Figure()}, tmp_path, formats=("png",))
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="apt-get install chromium"):
        find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium for kaleido: apt-get install chromium")
def test_export_png_svg_pdf(runs, tmp_path):
    figs = {"per_class": plotting.per_class_accuracy_curve([runs["ce"], runs["gala"]]),
            "alpha": plotting.glag_schedule(20)}
    paths = save_figures(figs, tmp_path / "out", ("png", "svg", "pdf"), width=700, height=400)
    assert sorted(p.name for p in paths) == sorted(f"{n}.{f}" for n in figs for f in ("png", "svg", "pdf"))
    magic = {"png": b"\x89PNG", "svg": b"<svg", "pdf": b"%PDF"}
    for p in paths:
        assert p.read_bytes()[:4] == magic[p.suffix[1:]], p
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files
    png = (tmp_path / "out" / "alpha.png").read_bytes()
    assert int.from_bytes(png[16:20], "big") == 1400  # width 700 at scale 2


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium for kaleido: apt-get install chromium")
def test_demo_figures_extracts_missing_features(runs, tmp_path):
    from ltlab.export import demo_figures

    run = runs["gala"]
    assert not (run.dir / "features_test.npz").exists()
    paths = demo_figures(run.dir, tmp_path / "demo", formats=("png",))
    assert sorted(p.name for p in paths) == ["demo_per_class_accuracy.png", "demo_tsne.png"]
    assert (run.dir / "features_test.npz").exists()
