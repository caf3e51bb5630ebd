"""``plotting.ghm_cwap_bins``: the values each view draws, rebuilt here from the histogram by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ltlab.viz import plotting
from ltlab.runs import RunFileError


@pytest.fixture(scope="module")
def run(tiny_run_copy):
    return tiny_run_copy("ghm_cwap_bins8")  # tests/conftest.py


def _edges(w):
    e = np.concatenate([[0.0], np.cumsum(w)])
    e[-1] = 1.0
    return e


def _density_at(w, v, x):
    """N v of the bin holding x (the last bin holds g = 1), by a plain loop."""
    e = _edges(w)
    for i in range(len(w)):
        if e[i] <= x < e[i + 1] or i == len(w) - 1:
            return len(w) * v[i]


def _overlap_mean(w, v, a, b):
    """Mean samples per unit g over [a, b] of a histogram uniform inside its bins."""
    e = _edges(w)
    n = sum(len(w) * v[i] * max(0.0, min(b, e[i + 1]) - max(a, e[i])) for i in range(len(w)))
    return n / (b - a)


def _weights(w, v, alpha=0.9, empty="unit"):
    """W per bin (weight_norm="bins"): S / v**alpha / (non-empty bins); an empty bin 1 or 1/(N d)."""
    nb = max(int((v > 0).sum()), 1)
    s = sum(x ** alpha for x in v if x > 0)
    if empty == "density":
        s = max(s, 1e-12)
        return np.array([s / (x if x > 0 else 1 / (len(w) * d)) ** alpha / nb for x, d in zip(v, w)])
    return np.array([s / x ** alpha / nb if x > 0 else 1.0 for x in v])


def _panel(fig, trace):
    return trace.xaxis, trace.yaxis


def test_bins_view_draws_counts_widths_and_the_weights_of_both_rules(run):
    fig = plotting.ghm_cwap_bins(run)
    w, v = run.probes["bin_widths"][-1], run.probes["bin_counts"][-1]
    order = np.argsort(-np.asarray(run.class_counts), kind="stable")
    classes = [order[0], order[len(order) // 2], order[-1]]
    assert "epoch 2" in fig.layout.title.text and "weights" in fig.layout.title.text
    bars = [t for t in fig.data if t.type == "bar"]
    first = [t for t in fig.data if t.type == "scatter"]
    for j, c in enumerate(classes):
        counts, widths, used = bars[3 * j: 3 * j + 3]
        np.testing.assert_allclose(np.nan_to_num(np.asarray(counts.y, float)), v[c])
        np.testing.assert_allclose(widths.y, w[c])
        np.testing.assert_allclose(np.asarray(counts.x), (_edges(w[c])[:-1] + _edges(w[c])[1:]) / 2)
        np.testing.assert_allclose(used.y, _weights(w[c], v[c]), rtol=1e-12)
        np.testing.assert_allclose(first[j].y, _weights(w[c], v[c], empty="density"), rtol=1e-12)
    assert (v[classes] == 0).any()  # an empty bin is drawn: W = 1 there, the first rule's weight elsewhere


def test_bins_view_follows_the_run_options():
    counts = [40, 10, 3]
    w = np.full((3, 4), 0.25)
    v = np.array([[4.0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 16]])
    fig = plotting.ghm_cwap_bins({"bin_widths": w, "bin_counts": v, "class_counts": counts,
                                  "loss_params": {"use_weights": False}})
    used = [t for t in fig.data if t.name and t.name.startswith("W in use")]
    assert len(used) == 3 and all(np.allclose(t.y, 1.0) for t in used) and "use_weights=False" in used[0].name
    alt = [t for t in fig.data if t.type == "scatter"]  # what the weights would be: the default rules
    assert "empty_bin='unit'" in alt[0].name
    for t, c in zip(alt, (0, 1, 2)):
        np.testing.assert_allclose(t.y, _weights(w[c], v[c]), rtol=1e-12)
    fig = plotting.ghm_cwap_bins({"bin_widths": w, "bin_counts": v, "class_counts": counts,
                                  "loss_params": {"alpha": 0.5, "weight_norm": "none"}})
    used = [t for t in fig.data if t.name and t.name.startswith("W in use")]
    np.testing.assert_allclose(used[0].y, [3 / 2, 1, 3, 1])  # class 0, S = 2 + 1 (alpha 0.5)


def test_distribution_view_values(run):
    fig = plotting.ghm_cwap_bins(run, view="distribution")
    w, v = run.probes["bin_widths"][-1], run.probes["bin_counts"][-1]
    counts = np.asarray(run.class_counts)
    n_bins = w.shape[1]
    groups = {"all classes": range(len(counts)), "many": np.flatnonzero(counts > 100),
              "medium": np.flatnonzero((counts >= 20) & (counts <= 100)), "few": np.flatnonzero(counts < 20)}
    for name, idx in groups.items():
        tr = next(t for t in fig.data if t.name and t.name.startswith(name + " ("))
        want = [sum(_density_at(w[c], v[c], x) for c in idx) for x in tr.x]
        np.testing.assert_allclose(np.nan_to_num(np.asarray(tr.y, float)), want, rtol=1e-12)
        assert f"{len(idx)} classes" in tr.name
    # each sample is counted once per epoch: the histogram holds the whole training set
    total = next(t for t in fig.data if t.name and t.name.startswith("all classes")).name
    assert f"{int(counts.sum()):,} samples" in total
    head, tail = int(np.argmax(counts)), int(len(counts) - 1 - np.argmin(counts[::-1]))
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 4  # (b) URA and (c) AURA for the head and the tail class
    a = 1.0 / np.log(math.e + v)
    aura = a / a.sum(axis=1, keepdims=True)
    for bar, c, edges in ((bars[0], head, np.linspace(0, 1, n_bins + 1)), (bars[1], head, _edges(aura[head])),
                          (bars[2], tail, np.linspace(0, 1, n_bins + 1)), (bars[3], tail, _edges(aura[tail]))):
        np.testing.assert_allclose(bar.width, np.diff(edges), atol=1e-12)
        want = [_overlap_mean(w[c], v[c], lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
        np.testing.assert_allclose(bar.y, want, rtol=1e-9, atol=1e-9)
    assert "Fig. 2" in fig.layout.title.text and "g = 1 - p_y" in fig.layout.title.text


def test_synthetic_source_and_bad_input(run, tiny_run_copy):
    loss = plotting.synthetic_ghm_cwap_loss([200, 50, 10], bins=6, epochs=2)
    fig = plotting.ghm_cwap_bins(loss, view="distribution")
    assert "(3 classes, 260 samples)" in fig.data[0].name
    with pytest.raises(ValueError, match="view must be 'bins' or 'distribution'"):
        plotting.ghm_cwap_bins(loss, view="fig2")
    with pytest.raises(ValueError, match=r"classes \[7\] out of range for 3 classes"):
        plotting.ghm_cwap_bins(loss, classes=[0, 7])
    ce = tiny_run_copy("ce")
    with pytest.raises(RunFileError, match="loss='ghm_cwap'"):
        plotting.ghm_cwap_bins(ce, view="distribution")
