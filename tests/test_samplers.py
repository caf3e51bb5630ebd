"""Samplers: probabilities against the formulas (float64), empirical draws, class-aware order, seeding."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ltlab.data import SAMPLERS, class_sampling_probs, create_sampler

COUNTS = [500, 200, 50, 10, 3]


def _targets(counts, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))


def _expected(name, n, **kw):
    n = np.asarray(n, dtype=np.float64)
    if name == "instance":
        p = n
    elif name in ("class_balanced", "class_aware"):
        p = np.ones_like(n)
    elif name == "sqrt":
        p = n ** 0.5
    elif name == "effective_number":
        beta = kw.get("beta", 0.9999)
        p = n * (1 - beta) / (1 - beta ** n)
    elif name == "cben":
        a, b = kw.get("a", 0.9999), kw.get("b", 1e-5)
        d = np.log(n.max()) - np.log(n)
        beta = a + b * (d - d.min()) / (d.max() - d.min())
        p = n * (1 - beta) / (1 - beta ** n)
    elif name == "progressive":
        lam = kw["epoch"] / (kw["num_epochs"] - 1)
        p = (1 - lam) * n / n.sum() + lam / len(n)
    return p / p.sum()


@pytest.mark.parametrize("name,kw", [("instance", {}), ("class_balanced", {}), ("sqrt", {}),
                                     ("effective_number", {}), ("effective_number", {"beta": 0.99}),
                                     ("cben", {}), ("cben", {"a": 0.999, "b": 0.0009}),
                                     ("progressive", {"epoch": 2, "num_epochs": 5}), ("class_aware", {})])
def test_probs_match_formulas(name, kw):
    p = class_sampling_probs(name, COUNTS, **kw)
    assert p.shape == (5,) and p.dtype == np.float64
    np.testing.assert_allclose(p, _expected(name, COUNTS, **kw), rtol=1e-12)
    assert abs(p.sum() - 1) < 1e-12


def test_known_values():
    np.testing.assert_allclose(class_sampling_probs("instance", [3, 1]), [0.75, 0.25])
    np.testing.assert_allclose(class_sampling_probs("sqrt", [9, 1]), [0.75, 0.25])
    np.testing.assert_allclose(class_sampling_probs("progressive", [3, 1], epoch=3, num_epochs=4), [0.5, 0.5])
    # beta = 0.9999 on counts << 1/(1-beta): per-sample weight ~ 1/n_c, so classes come out ~balanced
    assert np.ptp(class_sampling_probs("effective_number", [30, 10, 5])) < 0.01
    # cben with equal counts: beta_c = a for every class -> uniform
    np.testing.assert_allclose(class_sampling_probs("cben", [7, 7, 7]), [1 / 3] * 3)


def test_progressive_endpoints_and_errors():
    np.testing.assert_allclose(class_sampling_probs("progressive", COUNTS, epoch=0, num_epochs=10),
                               np.asarray(COUNTS) / sum(COUNTS))
    np.testing.assert_allclose(class_sampling_probs("progressive", COUNTS, epoch=9, num_epochs=10), [0.2] * 5)
    np.testing.assert_allclose(class_sampling_probs("progressive", COUNTS, epoch=0, num_epochs=1),
                               np.asarray(COUNTS) / sum(COUNTS))
    for bad in ({"epoch": 10, "num_epochs": 10}, {"epoch": -1, "num_epochs": 10}, {"epoch": 0}):
        with pytest.raises(ValueError):
            class_sampling_probs("progressive", COUNTS, **bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="instance.*class_aware"):
        class_sampling_probs("balanced", COUNTS)
    with pytest.raises(ValueError, match="cben"):
        create_sampler("square_root", _targets(COUNTS))
    with pytest.raises(ValueError, match="class_counts"):
        class_sampling_probs("sqrt", [0, 0])
    with pytest.raises(ValueError, match="beta"):
        class_sampling_probs("effective_number", COUNTS, beta=1.0)
    with pytest.raises(ValueError, match="unknown keyword"):
        class_sampling_probs("sqrt", COUNTS, gamma=2)


def test_empty_class_gets_zero_probability():
    p = class_sampling_probs("class_balanced", [5, 0, 5])
    np.testing.assert_allclose(p, [0.5, 0, 0.5])
    targets = np.array([0, 0, 2, 2, 2])
    s = create_sampler("class_balanced", targets, num_classes=3, seed=0, num_samples=200)
    np.testing.assert_allclose(s.class_probs, [0.5, 0, 0.5])
    assert set(targets[list(s)]) == {0, 2}


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n not in ("instance", "class_aware")])
def test_empirical_class_frequencies(name):
    targets = _targets(COUNTS)
    kw = {"num_epochs": 4} if name == "progressive" else {}
    s = create_sampler(name, targets, num_samples=60000, seed=1, **kw)
    if name == "progressive":
        s.set_epoch(1)
    p = _expected(name, COUNTS, epoch=1, num_epochs=4)
    np.testing.assert_allclose(s.class_probs, p, rtol=1e-12)
    idx = np.fromiter(s, dtype=np.int64)
    assert len(idx) == len(s) == 60000
    freq = np.bincount(targets[idx], minlength=5) / len(idx)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / len(idx)) + 1e-9)


def test_all_samplers_contract():
    targets = _targets(COUNTS)
    for name in SAMPLERS:
        kw = {"num_epochs": 3} if name == "progressive" else {}
        s = create_sampler(name, targets, seed=0, **kw)
        idx = list(s)
        assert len(idx) == len(s) == len(targets)
        assert all(isinstance(i, int) for i in idx) and 0 <= min(idx) and max(idx) < len(targets)
        assert s.class_probs.shape == (5,) and hasattr(s, "set_epoch")
        s.set_epoch(0)
        assert list(s) == idx, name  # set_epoch replays
        s.set_epoch(1)
        assert list(s) != idx, name


def test_instance_is_a_permutation():
    targets = _targets(COUNTS)
    s = create_sampler("instance", targets, seed=3)
    assert sorted(s) == list(range(len(targets)))
    assert len(list(create_sampler("instance", targets, num_samples=1000, seed=0))) == 1000


def test_seed_none_uses_global_torch_rng():
    """Without a seed the draws follow the global torch generator: the same global seed repeats them, another
    one changes them (a sampler with a private fixed seed would repeat them too, but not change)."""
    targets = _targets(COUNTS)
    s = create_sampler("sqrt", targets)
    torch.manual_seed(0)
    a = list(s)
    torch.manual_seed(0)
    assert list(s) == a
    torch.manual_seed(1)
    assert list(s) != a


def test_progressive_moves_with_set_epoch():
    targets = _targets(COUNTS)
    s = create_sampler("progressive", targets, num_epochs=3, seed=0)
    p0 = s.class_probs.copy()
    s.set_epoch(2)
    np.testing.assert_allclose(p0, np.asarray(COUNTS) / sum(COUNTS))
    np.testing.assert_allclose(s.class_probs, [0.2] * 5)


@pytest.mark.parametrize("k", [1, 4])
def test_class_aware_pattern(k):
    counts = [30, 9, 5, 2]
    targets = _targets(counts)
    s = create_sampler("class_aware", targets, num_samples_cls=k, num_samples=4 * k * 12, seed=0)
    labels = targets[np.fromiter(s, dtype=np.int64)]
    blocks = labels.reshape(-1, k)
    assert np.all(blocks == blocks[:, :1])  # k consecutive draws from one class
    for cycle in blocks[:, 0].reshape(-1, 4):  # every pass over the class list holds every class once
        assert sorted(cycle) == [0, 1, 2, 3]
    idx = np.fromiter(create_sampler("class_aware", targets, num_samples_cls=k, num_samples=4 * 30 * k, seed=0),
                      dtype=np.int64)
    for c, n in enumerate(counts):  # within a class: without replacement until the class is exhausted
        drawn = idx[targets[idx] == c]
        assert len(set(drawn[:n].tolist())) == n
        assert sorted(drawn[:n]) == sorted(np.flatnonzero(targets == c))


def _reference_class_aware(labels, k, n):
    """Independent rebuild of classifier-balancing's draw order (lazy shuffles with module `random`)."""
    def cycle(items):
        items = list(items)
        while True:
            random.shuffle(items)
            yield from items
    num_classes = len(set(labels))
    cls = cycle(range(num_classes))
    per = [cycle([i for i, lab in enumerate(labels) if lab == c]) for c in range(num_classes)]
    out = []
    while len(out) < n:
        it = per[next(cls)]
        out.extend([next(it) for _ in range(k)])
    return out[:n]


@pytest.mark.parametrize("k", [1, 4])
def test_class_aware_matches_reference_draws_with_random_seed(k):
    labels = _targets([12, 7, 3]).tolist()
    random.seed(0)
    ref = _reference_class_aware(labels, k, 64)
    random.seed(0)
    s = create_sampler("class_aware", labels, num_samples_cls=k, num_samples=64)
    assert list(s) == ref
    random.seed(0)
    assert list(create_sampler("class_aware", labels, num_samples_cls=k, num_samples=64)) == ref


def test_class_aware_seed_is_private_and_reproducible():
    labels = _targets([12, 7, 3])
    random.seed(123)
    state = random.getstate()
    a = list(create_sampler("class_aware", labels, num_samples_cls=2, seed=5))
    assert random.getstate() == state  # the module-level RNG is untouched
    assert list(create_sampler("class_aware", labels, num_samples_cls=2, seed=5)) == a
    with pytest.raises(ValueError, match="num_samples_cls"):
        create_sampler("class_aware", labels, num_samples_cls=0)
