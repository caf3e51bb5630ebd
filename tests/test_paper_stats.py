"""The statistics behind the paper-figure verdicts against direct computations on small arrays (issue 27)."""
from __future__ import annotations

import numpy as np
import pytest

from ltlab.viz import paper_stats as S

# 2 many (> 100), 1 medium, 2 few (< 20)
COUNTS = [500, 150, 50, 10, 5]


def test_df_is_judged_before_drw_switches_on():
    e = 6
    df = np.zeros((e, 5))
    df[:, :2] = 0.25                  # many
    df[:, 3:] = [[0.3, 0.28]] * e     # few above many ...
    df[4:, 3:] = 0.2                  # ... until DRW switches on at epoch 4
    got = S.df_before_drw(df, COUNTS, drw_start=4)
    assert got["before"].tolist() == [True] * 4 + [False] * 2
    assert np.allclose(got["few"], [0.29] * 4 + [0.2] * 2) and np.allclose(got["many"], 0.25)
    assert got["few_above_many"] and got["share"] == 1.0
    whole = S.df_before_drw(df, COUNTS, drw_start=None)  # the last epoch alone would say the opposite
    assert not whole["few_above_many"] and whole["share"] == pytest.approx(4 / 6)
    # recorded epochs that are not 0..E-1 (eval_every): the mask follows them
    sparse = S.df_before_drw(df[::2], COUNTS, drw_start=4, epochs=[0, 2, 4])
    assert sparse["before"].tolist() == [True, True, False]
    none = S.df_before_drw(df, COUNTS, drw_start=0)
    assert not none["few_above_many"] and np.isnan(none["share"])


def test_group_shares_of_the_g_distribution():
    rng = np.random.default_rng(0)
    hist = rng.integers(0, 50, size=(5, 4)).astype(float)
    hist[:, 3] = 0  # an empty bin
    got = S.g_group_shares(hist, COUNTS)
    many, few = hist[:2].sum(0), hist[3:].sum(0)
    assert got["total"]["many"] == pytest.approx(many.sum() / hist.sum())
    assert got["total"]["few"] == pytest.approx(few.sum() / hist.sum())
    assert np.allclose(got["per_bin"]["many"][:3], many[:3] / hist.sum(0)[:3])
    assert np.isnan(got["per_bin"]["few"][3])
    assert sum(got["total"].values()) == pytest.approx(1.0)


def test_class_spread_over_global_spread():
    rng = np.random.default_rng(1)
    f = np.concatenate([rng.normal(0, 2.0, (40, 3)), rng.normal(5, 0.5, (10, 3)), [[9.0, 9.0, 9.0]]])
    y = np.array([0] * 40 + [1] * 10 + [2])
    got = S.class_spread(f, y, 4)
    glob = np.sqrt(np.mean(np.sum((f - f.mean(0)) ** 2, 1)))
    for c in (0, 1):
        fc = f[y == c]
        assert got[c] == pytest.approx(np.sqrt(np.mean(np.sum((fc - fc.mean(0)) ** 2, 1))) / glob)
    assert got[2] == 0.0 and np.isnan(got[3])
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    assert S.class_spread(f, y, 4, normalize=True)[0] == pytest.approx(S.class_spread(unit, y, 4)[0])
    assert S.rarest_over_head(np.array([2.0, 1.0, 0.5]), [100, 50, 5]) == 0.25


def test_seed_summary_and_bad_shapes():
    assert S.seed_summary([0.1, 0.2, 0.3]) == "0.20 ± 0.10 (3 seeds)"
    assert S.seed_summary([0.5]) == "0.50 (1 seed)"
    with pytest.raises(ValueError, match="values must be"):
        S.group_series(np.zeros((3, 4)), COUNTS)
    with pytest.raises(ValueError, match="hist must be"):
        S.g_group_shares(np.zeros(5), COUNTS)


def test_g_histogram_counts_one_minus_p_true_per_class_and_bin():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 3, (200, 5))
    y = rng.integers(0, 5, 200)
    edges = (0.0, 0.3, 0.6, 1.0)
    got = S.g_histogram(z, y, 6, edges)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    g = 1 - p[np.arange(200), y]
    for c in range(5):
        want, _ = np.histogram(g[y == c], bins=edges)  # numpy closes the last bin at 1 too
        assert got[c].tolist() == want.tolist()
    assert got[5].sum() == 0 and got.sum() == 200
    # a confident sample sits in the first bin, a hopeless one (g = 1) in the last
    sure = S.g_histogram(np.array([[50.0, 0.0], [0.0, 800.0]]), np.array([0, 0]), 2, edges)
    assert sure[0].tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="logits must be"):
        S.g_histogram(np.zeros(3), np.zeros(3), 2)
