"""Tukey transform and GLAG's TailFeatureGenerator against the formulas (GLAG 000, Sec. 3.3; DC code)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ltlab.features import TailFeatureGenerator, tukey

TOL = dict(rtol=1e-10, atol=1e-10)
COUNTS = [150, 120, 60, 9, 4]


def _data(seed=0, dim=5):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, c) for c, n in enumerate(COUNTS)])
    x = np.abs(rng.normal(size=(len(y), dim))) * (1 + 0.2 * y[:, None]) + 0.4 * y[:, None]
    x[::7, 0] = -0.3  # a few negative entries: clamped by Tukey
    return x, y


def test_tukey_numpy_and_torch():
    x = np.array([[-1.0, 0.0, 0.25, 4.0]])
    np.testing.assert_allclose(tukey(x), [[0.0, 0.0, 0.5, 2.0]], **TOL)
    np.testing.assert_allclose(tukey(x, 2.0), [[0.0, 0.0, 0.0625, 16.0]], **TOL)
    np.testing.assert_allclose(tukey(x, 0), [[np.log(1e-6), np.log(1e-6), np.log(0.25), np.log(4.0)]], **TOL)
    t = tukey(torch.tensor(x))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), tukey(x), **TOL)
    assert tukey(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("space", ["raw", "tukey"])
def test_fit_statistics(space):
    x, y = _data()
    gen = TailFeatureGenerator(stats_space=space, random_state=0)
    assert gen.fit(x, y) is gen
    xs = np.maximum(x, 0) ** 0.5 if space == "tukey" else x
    for c, n in enumerate(COUNTS):
        rows = xs[y == c]
        mu = rows.sum(axis=0) / n
        cov = (rows - mu).T @ (rows - mu) / (n - 1)
        np.testing.assert_allclose(gen.means_[c], mu, **TOL)
        np.testing.assert_allclose(gen.covs_[c], cov, **TOL)
        np.testing.assert_allclose(gen.covs_[c], np.cov(rows, rowvar=False), **TOL)
    assert gen.class_counts_.tolist() == COUNTS
    assert gen.tail_classes_.tolist() == [2, 3, 4]  # n_c <= 100
    assert TailFeatureGenerator(tail_classes=[4]).fit(x, y).tail_classes_.tolist() == [4]
    assert gen.k == 2 and gen.beta == 0.6 and gen.gamma == 0.1  # hyper-parameters stored unchanged


@pytest.mark.parametrize("k,gamma", [(2, 0.1), (3, 0.0)])
def test_calibrate_formula(k, gamma):
    x, y = _data(1)
    gen = TailFeatureGenerator(k=k, gamma=gamma).fit(x, y)
    gen.set_beta([0.9, 0.35], classes=[3, 4])
    q = np.flatnonzero(y >= 2)[::3]
    mu, cov = gen.calibrate(x[q], y[q])
    assert mu.shape == (len(q), x.shape[1]) and cov.shape == (len(q), x.shape[1], x.shape[1])
    beta = {2: 0.6, 3: 0.9, 4: 0.35}
    for r, i in enumerate(q):
        c = y[i]
        xh = np.sqrt(np.maximum(x[i], 0))
        cands = [j for j in range(len(COUNTS)) if COUNTS[j] > COUNTS[c]]
        d = {j: np.sqrt(((xh - gen.means_[j]) ** 2).sum()) for j in cands}
        support = sorted(cands, key=lambda j: d[j])[:k]
        om = np.array([COUNTS[j] / d[j] for j in support])
        b = beta[c]
        mu_want = (1 - b) * xh + b * sum(o * gen.means_[j] for o, j in zip(om, support)) / om.sum()
        support_cov = sum(o * gen.covs_[j] for o, j in zip(om, support)) / om.sum()
        cov_want = (1 - b) ** 2 * gen.covs_[c] + b ** 2 * support_cov + gamma
        np.testing.assert_allclose(mu[r], mu_want, **TOL)
        np.testing.assert_allclose(cov[r], cov_want, **TOL)


def test_calibrate_without_larger_class_uses_own_stats():
    x, y = _data(2)
    gen = TailFeatureGenerator(gamma=0.0).fit(x, y)
    mu, cov = gen.calibrate(x[:1], y[:1])  # class 0 is the largest: no candidate
    b = 0.6
    np.testing.assert_allclose(mu[0], (1 - b) * np.sqrt(np.maximum(x[0], 0)) + b * gen.means_[0], **TOL)
    np.testing.assert_allclose(cov[0], ((1 - b) ** 2 + b ** 2) * gen.covs_[0], **TOL)


def test_sample_budget_and_per_row_split():
    x, y = _data(3)
    x[y == 4] = np.array([[0.0] * 5, [4.0] * 5, [9.0] * 5, [16.0] * 5])  # Tukey: 0, 2, 3, 4 apart
    gen = TailFeatureGenerator(beta=0.0, gamma=0.0, random_state=0).fit(x, y)
    gen.covs_[4] = 0.0  # beta 0, zero own covariance: draws sit at x^_i (+1e-4 jitter)
    gx, gy = gen.sample(x, y)
    assert gx.shape == (len(gy), 5) and gy.dtype == np.int64
    assert np.bincount(gy, minlength=5).tolist() == [0, 30, 90, 141, 146]  # n_max - n_c
    rows = np.sqrt(np.maximum(x[y == 4], 0))
    drawn = gx[gy == 4]
    nearest = np.argmin(((drawn[:, None, :] - rows[None]) ** 2).sum(-1), axis=1)
    assert np.abs(drawn - rows[nearest]).max() < 0.1
    per_row = np.bincount(nearest, minlength=4)
    assert sorted(per_row.tolist()) == [36, 36, 37, 37]  # 146 = 4 * 36 + 2: floor each, remainder spread
    gx2, gy2 = gen.sample(x, y, n_max=200)
    assert np.bincount(gy2, minlength=5).tolist() == [50, 80, 140, 191, 196]
    assert not np.allclose(gx[: len(gx2)][:10], gx2[:10])  # fresh draws every call


def test_sample_reproducible_and_head_gaussian():
    x, y = _data(4)
    a = TailFeatureGenerator(random_state=7).fit(x, y).sample(x, y, n_max=3000)
    b = TailFeatureGenerator(random_state=7).fit(x, y).sample(x, y, n_max=3000)
    np.testing.assert_array_equal(a[0], b[0])
    gen = TailFeatureGenerator(random_state=7).fit(x, y)
    head = a[0][a[1] == 0]
    assert len(head) == 3000 - 150
    np.testing.assert_allclose(head.mean(axis=0), gen.means_[0], atol=0.1)
    np.testing.assert_allclose(np.cov(head, rowvar=False), gen.covs_[0] + 1e-4 * np.eye(5), atol=0.1)


def test_parameter_errors():
    x, y = _data()
    with pytest.raises(ValueError, match="stats_space"):
        TailFeatureGenerator(stats_space="log").fit(x, y)
    with pytest.raises(ValueError, match="k must"):
        TailFeatureGenerator(k=0).fit(x, y)
    with pytest.raises(ValueError, match="beta"):
        TailFeatureGenerator(beta=1.5).fit(x, y)
    with pytest.raises(ValueError, match="labels"):
        TailFeatureGenerator().fit(x, y[:-1])


def test_generator_clone_and_params():
    from sklearn.base import clone

    gen = TailFeatureGenerator(k=3, beta=[0.1, 0.2], random_state=7)
    assert gen.get_params()["k"] == 3 and gen.get_params()["beta"] == [0.1, 0.2]
    twin = clone(gen)
    assert twin.get_params() == gen.get_params() and twin is not gen
    x, y = np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 2
    gen.set_params(beta=0.5).fit(x, y)
    assert gen.beta == 0.5 and not hasattr(clone(gen), "means_")


def test_sample_with_its_own_random_state_leaves_rng_untouched():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    y = np.repeat([0, 1, 2], [40, 15, 5])
    gen = TailFeatureGenerator(random_state=0).fit(x, y)
    state = gen.rng_.bit_generator.state
    a = gen.sample(x, y, random_state=[3, 1])
    assert gen.rng_.bit_generator.state == state
    b = gen.sample(x, y, random_state=[3, 1])
    np.testing.assert_array_equal(a[0], b[0])
    c = gen.sample(x, y)  # the fitted generator, consumed
    assert gen.rng_.bit_generator.state != state and not np.array_equal(a[0], c[0])
