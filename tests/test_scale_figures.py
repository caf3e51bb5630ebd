"""Figures, notebooks and the post-hoc panel at benchmark class counts (issue 23): a tiny synthetic 1,000-class
run (2 test images per class) drawn by every class-axis builder, notebooks 02-05 run with their defaults, and
the aggregated values checked against a direct computation on small arrays."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import ltlab
from ltlab.viz import plot_gradients, plotting, widgets
from ltlab.viz.style import class_axis, group_of_classes
from ltlab.runs import load_run, write_npz

NB = Path(__file__).resolve().parent.parent / "notebooks"
C = 1000
MAX_TRACES, MAX_LEGEND, MAX_CELLS, MAX_POINTS = 30, 25, 100, 2_000


# ---------------------------------------------------------------------- small arrays (no run)
def test_rank_bins_equal_a_direct_computation():
    counts = np.array([300, 150, 120, 90, 80, 50, 40, 30, 18, 10, 9, 5])  # many 0-2, medium 3-7, few 8-11
    values = np.arange(12, dtype=np.float64) ** 2
    axis = class_axis(counts, [str(c) for c in range(12)], "t", max_classes=4, bins=6)
    assert axis.mode == "bins" and sum(len(m) for m in axis.members) == 12
    groups = group_of_classes(counts)
    assert all(len(set(groups[m])) == 1 for m in axis.members)  # a bin never mixes many / medium / few
    mean, lo, hi = axis.reduce(values)
    for k, m in enumerate(axis.members):
        assert mean[k] == pytest.approx(values[m].mean())
        assert (lo[k], hi[k]) == pytest.approx(tuple(np.percentile(values[m], [25, 75])))
        assert axis.x[k] == pytest.approx(np.mean([list(np.argsort(-counts, kind="stable")).index(c) for c in m]))
    assert "rank bins" in axis.note
    small = class_axis(counts, [str(c) for c in range(12)], "t")  # 12 <= 100: every class, no note
    assert small.mode == "all" and small.note == "" and list(small.classes) == list(np.argsort(-counts, kind="stable"))


@pytest.mark.parametrize("kw,match", [
    (dict(max_classes=0), r"max_classes=0 must be a whole number >= 1.*max_classes=100.*classes=\[\.\.\.\]"),
    (dict(max_classes=2, bins=20), r"bins=20 is more than the 12 classes drawn; pass bins <= 12"),
    (dict(bins=0), r"bins=0 must be a whole number >= 1"),
    (dict(classes=[3, "nope", 99]), r"unknown classes \['nope', 99\]; pass class indices 0..11"),
])
def test_bad_axis_arguments_say_what_to_pass(kw, match):
    counts = np.array([300, 150, 120, 90, 80, 50, 40, 30, 18, 10, 9, 5])
    with pytest.raises(ValueError, match=match):
        class_axis(counts, [str(c) for c in range(12)], "t", **kw)


def test_neg_by_group_reads_recorded_groups_else_sums_the_by_source_matrix():
    counts = np.array([300, 150, 60, 30, 10, 5])  # many 0-1, medium 2-3, few 4-5
    rng = np.random.default_rng(0)
    by_group = rng.uniform(size=(2, 6, 3))
    recorded = SimpleNamespace(class_counts=counts, config={}, dir=Path("r"), probes={
        "grad_neg_by_group_cum": by_group, "grad_neg_by_group_cum_epochs": np.array([0, 4]),
        "grad_neg_by_group": by_group[:1] * 2, "grad_neg_by_group_epochs": np.array([4]),
        "by_group_names": np.array(["many", "medium", "few"])})
    m, at, names, where = plot_gradients.neg_by_group(recorded, "cumulative", -1)
    assert at == 4 and names == ["many", "medium", "few"] and "recorded" in where
    np.testing.assert_array_equal(m, by_group[1])
    m, at, _, _ = plot_gradients.neg_by_group(recorded, "epoch", -1)
    np.testing.assert_array_equal(m, by_group[0] * 2)
    src = rng.uniform(size=(1, 6, 6))
    matrix = SimpleNamespace(class_counts=counts, config={}, dir=Path("r"),
                             probes={"grad_neg_by_source_cum": src, "grad_neg_by_source_cum_epochs": np.array([3])})
    m, at, names, where = plot_gradients.neg_by_group(matrix, "cumulative", -1)
    want = src[0] * (1 - np.eye(6))  # own class excluded
    np.testing.assert_allclose(m, np.stack([want[:, :2].sum(1), want[:, 2:4].sum(1), want[:, 4:].sum(1)], 1))
    assert at == 3 and "summed" in where
    none = SimpleNamespace(class_counts=np.ones(1000, int), config={}, dir=Path("r"), probes={"grad_ratio": 1})
    why = plot_gradients.sources_missing(none)
    assert why.startswith("class count 1000 > 256: this run recorded no per-source gradient")
    assert "old" not in why and "retrain" not in why and "predates" not in why
    with pytest.raises(ltlab.runs.RunFileError, match="class count 1000 > 256"):
        plot_gradients.neg_by_group(none)


def test_posthoc_evaluator_fast_path_matches_the_library_in_float32_and_float16():
    from ltlab import posthoc

    rng = np.random.default_rng(1)
    counts = np.maximum(2, (400 * 0.01 ** (np.arange(200) / 199)).astype(int))
    labels = np.repeat(np.arange(200), 5)
    logits = rng.normal(size=(1000, 200)) * 2 + np.log(counts)[None] * 0.8
    for dtype in (np.float32, np.float16):
        z = logits.astype(dtype)
        ev = widgets.PosthocEvaluator(z, labels, counts)
        assert ev.logits.dtype == np.float32
        for la, pn in [(0, 0), (1.0, 0), (0, 1.0), (0.7, 0.4)]:
            ref = posthoc.pn_rebalance(posthoc.logit_adjust(z.astype(np.float64), counts, la), pn).argmax(1)
            assert np.mean(ev.predict(la, pn) == ref) > 0.995  # float32 vs float64: ties may flip, nothing else


# ---------------------------------------------------------------------- a tiny 1,000-class run
@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("home_1000")
    mp.setenv("LTLAB_HOME", str(root))  # nothing lands in the tracked tree; the notebooks find the run here
    ltlab.run(dataset="synthetic_lt", dataset_params={"num_classes": C, "n_max": 110, "n_test_per_class": 2},
              imbalance_factor=55, model="convnet_small", epochs=1, batch_size=256, device="cpu", progress=False,
              run_dir=str(root / "runs" / "c1000"))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def run(home):
    return load_run(home / "runs" / "c1000")


def _bounded(fig, what: str) -> None:
    traces = list(fig.data)
    legend = [t for t in traces if getattr(t, "showlegend", False) is not False and getattr(t, "name", None)]
    cells = sum(np.size(t.z) for t in traces if t.type == "heatmap")
    points = max([len(t.x) for t in traces if getattr(t, "x", None) is not None] + [0])
    assert len(traces) <= MAX_TRACES, (what, len(traces))
    assert len(legend) <= MAX_LEGEND, (what, len(legend))
    assert cells <= MAX_CELLS, (what, cells)
    assert points <= MAX_POINTS, (what, points)


@pytest.mark.slow
def test_every_class_axis_builder_is_bounded_at_1000_classes(run):
    figs = {
        "per_class_accuracy_bar": plotting.per_class_accuracy_bar(run),
        "per_class_accuracy_curve": plotting.per_class_accuracy_curve([run, run], ["a", "b"]),
        "confusion_matrix": plotting.confusion_matrix(run),
        "prediction_counts": plotting.prediction_counts(run, pn_tau=1.0),
        "true_class_probability": plotting.true_class_probability(run),
        "weight_norms": plotting.weight_norms(run),
        "class_feature_similarity": plotting.class_feature_similarity(run),
        "gradient_ratio_by_class": plotting.gradient_ratio_by_class(run),
        "gradient_ratio_curves": plotting.gradient_ratio_curves(run),
    }
    for name, fig in figs.items():
        _bounded(fig, name)
        assert "bins" in str(fig.layout.title.subtitle.text) + str(fig.layout.title.text) or name in (
            "confusion_matrix", "true_class_probability", "gradient_ratio_curves"), name
    assert "groups instead of 1000 x 1000 cells" in figs["confusion_matrix"].layout.title.subtitle.text
    assert plotting.gradient_ratio_table(run).shape[1] < 12  # no column per class above max_classes
    # the bin means drawn are the per-class values averaged over each bin
    axis = class_axis(run.class_counts, plotting.run_class_names(run), "t")
    acc = np.asarray(run.per_class["acc"])[-1]
    bars = {t.name.split(" (")[0]: t for t in figs["per_class_accuracy_bar"].data if t.type == "bar"}
    drawn = np.concatenate([bars[g].y for g in ("many", "medium", "few") if g in bars])
    np.testing.assert_allclose(np.sort(drawn), np.sort([np.nanmean(acc[m]) for m in axis.members]))
    # a chosen subset is drawn class by class
    sub = plotting.per_class_accuracy_curve(run, classes=["class_3", 500, 999])
    assert len(sub.data[-1].x) == 3 and "3 of 1000 classes" in sub.layout.title.subtitle.text


@pytest.mark.slow
def test_gradient_figures_from_by_group_arrays(run, tmp_path):
    assert plotting.sources_missing(run) == ""  # a run of today's ltlab records the by-group matrix
    bare = tmp_path / "bare"  # one without it (probes.npz of an ltlab before issue 23) says why
    shutil.copytree(run.dir, bare)
    write_npz(bare / "probes.npz", {k: v for k, v in dict(run.probes).items() if "by_group" not in k})
    assert "class count 1000 > 256" in plotting.sources_missing(load_run(bare))
    d = tmp_path / "grouped"
    shutil.copytree(run.dir, d)
    rng = np.random.default_rng(0)
    m = rng.uniform(size=(1, C, 3))
    write_npz(d / "probes.npz", {**dict(run.probes), "grad_neg_by_group": m, "grad_neg_by_group_cum": m * 3,
                                 "grad_neg_by_group_epochs": np.array([0]), "grad_neg_by_group_cum_epochs": np.array([0]),
                                 "by_group_names": np.array(["many", "medium", "few"])})
    r = load_run(d)
    assert plotting.sources_missing(r) == ""
    heat = plotting.gradient_ratio_heatmap(r)
    _bounded(heat, "heatmap")
    group = group_of_classes(r.class_counts)
    want = np.stack([m[0][group == g].sum(0) for g in ("many", "medium", "few") if (group == g).any()])
    np.testing.assert_allclose(heat.data[0].z, want / want.sum(1, keepdims=True))
    src = plotting.negative_gradient_sources(r)
    c = int(np.argsort(-np.asarray(r.class_counts), kind="stable")[-1])
    np.testing.assert_allclose(src.data[0].y, m[0][c] / m[0][c].sum())


@pytest.mark.slow
@pytest.mark.subprocess
def test_tsne_caps_points_legend_and_silhouette_text(run):
    from ltlab import features

    f = features.run_features(run, "test", extract=True)
    df = features.tsne(f["features"], f["labels"], class_counts=run.class_counts, max_per_class=2, max_points=600,
                       perplexity=10)
    assert len(df) == 600 and df["label"].value_counts().max() == 2
    fig = plotting.tsne_scatter(df)  # auto: > 20 classes coloured by group
    assert len(fig.data) <= 3 and "coloured by many / medium / few" in fig.layout.title.subtitle.text
    by_class = plotting.tsne_scatter(df, "label")
    assert sum(bool(t.showlegend) for t in by_class.data) == 20
    assert "lowest" in by_class.layout.xaxis.title.text and len(by_class.layout.xaxis.title.text) < 120
    assert len(plotting.tsne_scatter(df, classes=list(df["label"].unique()[:4])).data) == 4


@pytest.mark.slow
def test_posthoc_panel_at_1000_classes(run, tmp_path):
    panel = widgets.posthoc_panel(run, features="none")
    assert not panel.la_tau.continuous_update and not panel.pn_tau.continuous_update
    assert sum(len(t.x) for t in panel.figure.data[:3]) <= 60  # rank bins, not 1,000 bars
    panel.pn_tau.value = 1.0
    assert panel.result["per_class"].shape == (C,)
    d = tmp_path / "half"
    shutil.copytree(run.dir, d)  # logits stored as float16
    pc = dict(run.per_class)
    write_npz(d / "per_class.npz", {**pc, "test_logits": np.asarray(pc["test_logits"]).astype(np.float16)})
    assert widgets.posthoc_panel(load_run(d), features="none").evaluator.logits.dtype == np.float32
    pc.pop("test_logits")
    write_npz(d / "per_class.npz", pc)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "save_logits": "none"}))
    with pytest.raises(ValueError, match="save_logits='none'.*save_logits='float32'"):
        widgets.posthoc_panel(load_run(d))
    with pytest.raises(ltlab.runs.RunFileError, match="no test_logits.*save_logits"):
        plotting.confusion_matrix(load_run(d))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["02_tsne", "03_per_class_accuracy", "04_gradient_ratios", "05_schedules"])
@pytest.mark.subprocess
def test_notebooks_run_all_with_defaults(home, run, tmp_path, name):
    import papermill as pm

    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(NB / f"{name}.ipynb"), str(out), cwd=str(NB), progress_bar=False, log_output=False)
    assert out.stat().st_size < 3_000_000, out.stat().st_size
    text = "".join("".join(o.get("text", "")) for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", []))
    assert str(run.dir) in text or name == "05_schedules"
    if name == "04_gradient_ratios":  # the run recorded the negative gradient by source group: nothing skipped
        assert "class count 1000 > 256" not in text and "older" not in text and "retrain" not in text
