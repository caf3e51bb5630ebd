"""Re-sampling: per-class draw probabilities and index samplers (classifier-balancing, LDAM-DRW and GCL code).

Every sampler yields dataset indices, has ``class_probs`` (C,) and ``set_epoch(epoch)``: with a
``seed`` the draws of epoch k come from ``seed + k``, so a resumed run replays the same order; with
``seed=None`` the global RNG is used (torch's, or Python's ``random`` for ``class_aware``).
"""
from __future__ import annotations

import random
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch

from .loaders import _mix_seed

SamplerName = Literal["instance", "class_balanced", "sqrt", "effective_number", "cben", "progressive", "class_aware"]


def _probs(name: str, n: np.ndarray, beta: float = 0.9999, a: float = 0.9999, b: float = 1e-5,
           epoch: int = 0, num_epochs: int = 1) -> np.ndarray:
    """Unnormalised class weights for classes with n_c >= 1 (float64)."""
    if name == "instance":
        return n
    if name in ("class_balanced", "class_aware"):
        return np.ones_like(n)
    if name == "sqrt":
        return np.sqrt(n)
    if name == "effective_number":  # per-sample (1-beta)/(1-beta^n_c), beta = 0.9999 (LDAM-DRW "Resample")
        if not 0 <= beta < 1:
            raise ValueError(f"effective_number needs 0 <= beta < 1, got {beta}")
        return n * (1 - beta) / (1 - beta ** n) if beta > 0 else np.ones_like(n)
    if name == "cben":  # GCL Eq. 14 with delta_c - delta_min; a, b: official code constants
        delta = np.log(n.max()) - np.log(n)
        span = delta.max() - delta.min()
        beta_c = a + b * ((delta - delta.min()) / span if span > 0 else 0.0)
        if not (np.all(beta_c >= 0) and np.all(beta_c < 1)):
            raise ValueError(f"cben needs 0 <= a and a + b < 1, got a={a}, b={b}")
        return n * (1 - beta_c) / (1 - beta_c ** n)
    if name == "progressive":  # lambda = epoch / (E - 1); E == 1 -> lambda = 0 (pure instance; LIB)
        if num_epochs < 1 or not 0 <= epoch < num_epochs:
            raise ValueError(f"progressive needs 0 <= epoch < num_epochs, got epoch={epoch}, num_epochs={num_epochs}")
        lam = epoch / (num_epochs - 1) if num_epochs > 1 else 0.0
        return (1 - lam) * n / n.sum() + lam / len(n)
    raise ValueError(f"unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}")


def class_sampling_probs(name: SamplerName, class_counts: Sequence[int], **kw: Any) -> np.ndarray:
    """Probability (C,) that one draw comes from class c (float64, sums to 1).

    ``instance`` n_c/N; ``class_balanced`` / ``class_aware`` 1/C; ``sqrt`` ∝ sqrt(n_c); ``effective_number``
    ∝ n_c (1-beta)/(1-beta^n_c), beta=0.9999 (Cui et al.; LDAM-DRW code); ``cben`` ∝ n_c rho_c,
    rho_c = (1-beta_c)/(1-beta_c^n_c), beta_c = a + b (delta_c - delta_min)/(delta_max - delta_min),
    delta_c = log n_max - log n_c, a=0.9999, b=1e-5 (GCL code; paper a=0.999, b=0.0009), beta_c = a when
    all counts are equal; ``progressive`` (1-lambda) n_c/N + lambda/C, lambda = epoch/(num_epochs-1)
    (0-based epoch; Kang et al. 2020). Classes with n_c = 0 get probability 0 (LIB).
    """
    n = np.asarray(class_counts, dtype=np.float64)
    if n.ndim != 1 or len(n) == 0 or np.any(n < 0) or n.sum() <= 0:
        raise ValueError(f"class_counts must be a non-empty list of counts >= 0 with a positive sum, got {class_counts}")
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}")
    bad = set(kw) - {"beta", "a", "b", "epoch", "num_epochs"}
    if bad:
        raise ValueError(f"unknown keyword(s) {sorted(bad)} for class_sampling_probs")
    if name == "progressive" and "num_epochs" not in kw:
        raise ValueError("progressive needs num_epochs=... (and the 0-based epoch=...)")
    out = np.zeros_like(n)
    nz = n > 0
    out[nz] = _probs(name, n[nz], **kw)
    return out / out.sum()


def _counts(targets: Sequence[int], num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(targets, dtype=np.int64)
    if t.ndim != 1 or len(t) == 0 or t.min() < 0:
        raise ValueError("targets must be a non-empty 1-D array of labels >= 0")
    return t, np.bincount(t, minlength=num_classes or 0)


class _Base(torch.utils.data.Sampler):
    def __init__(self, targets: Sequence[int], num_samples: int | None, seed: int | None,
                 num_classes: int | None) -> None:
        self.targets, self.class_counts = _counts(targets, num_classes)
        self.num_samples = len(self.targets) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.seed, self.epoch = seed, 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Re-seed (seed + epoch) so epoch ``epoch`` is reproducible; no-op on the RNG when seed is None."""
        self.epoch = int(epoch)
        self.generator = None if self.seed is None else torch.Generator().manual_seed(self.seed + self.epoch)

    def __len__(self) -> int:
        return self.num_samples


class InstanceSampler(_Base):
    """Plain shuffling: a random permutation (no replacement; repeated permutations past N)."""

    def __init__(self, targets, num_samples=None, seed=None, num_classes=None):
        super().__init__(targets, num_samples, seed, num_classes)
        self.class_probs = class_sampling_probs("instance", self.class_counts)

    def __iter__(self) -> Iterator[int]:
        n = len(self.targets)
        reps = -(-self.num_samples // n)
        idx = torch.cat([torch.randperm(n, generator=self.generator) for _ in range(reps)])
        return iter(idx[: self.num_samples].tolist())


class WeightedClassSampler(_Base):
    """Draws with replacement, per-sample weight = class_probs[c] / n_c (torch.multinomial)."""

    def __init__(self, name, targets, num_samples=None, seed=None, num_classes=None, **kw):
        self.name, self.kw = name, kw
        super().__init__(targets, num_samples, seed, num_classes)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        kw = dict(self.kw, epoch=self.epoch) if self.name == "progressive" else self.kw
        self.class_probs = class_sampling_probs(self.name, self.class_counts, **kw)
        per_class = self.class_probs / np.maximum(self.class_counts, 1)
        self.weights = torch.from_numpy(per_class[self.targets])

    def __iter__(self) -> Iterator[int]:
        return iter(torch.multinomial(self.weights, self.num_samples, True, generator=self.generator).tolist())


class _Cycle:
    """Endless iterator over ``items``, shuffled by ``rng`` on first use and after each full pass."""

    def __init__(self, items: Sequence[int], rng: Any) -> None:
        self.items, self.rng, self.i = list(items), rng, len(items) - 1

    def __next__(self) -> int:
        self.i += 1
        if self.i == len(self.items):
            self.i = 0
            self.rng.shuffle(self.items)
        return self.items[self.i]


class ClassAwareSampler(_Base):
    """Classifier-balancing class-aware sampler (Kang et al. 2020; Shen et al. 2016).

    Cycles through a shuffled class list (reshuffled after each pass); for each class takes
    ``num_samples_cls`` consecutive items of that class's own cycling shuffled list. Draw order matches
    ``data/ClassAwareSampler.py`` of facebookresearch/classifier-balancing: lists are shuffled lazily on first
    use with Python's ``random`` (so ``random.seed(0)`` reproduces its draws) and the cycles persist across
    epochs; ``seed`` switches to a private ``random.Random(seed + epoch)`` rebuilt by ``set_epoch``. Length
    defaults to len(targets) (the official C * n_max is ``num_samples``).
    """

    def __init__(self, targets, num_samples_cls=1, num_samples=None, seed=None, num_classes=None):
        if int(num_samples_cls) < 1:
            raise ValueError(f"num_samples_cls must be >= 1, got {num_samples_cls}")
        self.k, self._cycles = int(num_samples_cls), None
        super().__init__(targets, num_samples, seed, num_classes)
        self.class_probs = class_sampling_probs("class_aware", self.class_counts)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.seed is not None or self._cycles is None:
            rng = random if self.seed is None else random.Random(self.seed + self.epoch)
            present = [c for c in range(len(self.class_counts)) if self.class_counts[c] > 0]
            self._cycles = (_Cycle(present, rng),
                            {c: _Cycle(np.flatnonzero(self.targets == c).tolist(), rng) for c in present})

    def __iter__(self) -> Iterator[int]:
        cls_cycle, item_cycles = self._cycles
        group: list[int] = []
        for i in range(self.num_samples):
            if i % self.k == 0:
                it = item_cycles[next(cls_cycle)]
                group = [next(it) for _ in range(self.k)]
            yield group[i % self.k]


SAMPLERS: dict[str, str] = {
    "instance": "random permutation (no re-balancing)",
    "class_balanced": "classes equally likely, with replacement",
    "sqrt": "class probability ∝ sqrt(n_c)",
    "effective_number": "class probability ∝ n_c (1-beta)/(1-beta^n_c)",
    "cben": "GCL class-based effective number",
    "progressive": "instance -> class_balanced over epochs",
    "class_aware": "classifier-balancing class-aware cycles",
}


def create_sampler(name: SamplerName, targets: Sequence[int], **kw: Any) -> torch.utils.data.Sampler:
    """A sampler over ``targets`` (N,) with the class probabilities of :func:`class_sampling_probs`.

    Common kw: ``num_samples`` (default N), ``seed`` (default None = global RNG), ``num_classes``.
    ``class_aware``: ``num_samples_cls`` (k, default 1; the configs use 4). ``progressive``: ``num_epochs``
    (required), moves with ``set_epoch``. ``effective_number``: ``beta``; ``cben``: ``a``, ``b``.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}")
    if name == "instance":
        return InstanceSampler(targets, **kw)
    if name == "class_aware":
        return ClassAwareSampler(targets, **kw)
    return WeightedClassSampler(name, targets, **kw)


class ShardedSampler(torch.utils.data.Sampler):
    """Rank ``rank``'s share of the single-process index order (keeps the base sampler's class probabilities).

    The global order of an epoch is ``list(base)`` after ``base.set_epoch(epoch)`` or, with ``base=None``,
    the permutation :class:`~ltlab.data.DeviceLoader` draws itself (``torch.randperm`` seeded from
    (seed, epoch) on ``device``). Global batch t = ``order[t*B:(t+1)*B]`` (B = global ``batch_size``) is
    cut into ``world_size`` contiguous blocks of ``len(batch) // world_size`` and rank r takes block r.
    Every rank thus takes the same number of steps with equal local batches; only the last, partial
    batch of an epoch loses its ``len % world_size`` trailing items (LIB).
    """

    def __init__(self, base: torch.utils.data.Sampler | None, num_items: int, *, rank: int, world_size: int,
                 batch_size: int, seed: int = 0, device: str | torch.device = "cpu",
                 targets: np.ndarray | None = None) -> None:
        if batch_size % world_size:
            raise ValueError(f"global batch_size={batch_size} must be divisible by world_size={world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in 0..{world_size - 1}, got {rank}")
        self.base, self.num_items, self.rank, self.world_size = base, int(num_items), int(rank), int(world_size)
        self.batch_size, self.seed, self.device, self.epoch = int(batch_size), int(seed), torch.device(device), 0
        self._targets = targets

    @property
    def class_probs(self) -> np.ndarray:
        """The base sampler's class probabilities (instance sampling n_c / N without a base)."""
        if self.base is not None:
            return self.base.class_probs
        return class_sampling_probs("instance", np.bincount(np.asarray(self._targets)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.base is not None and hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def global_order(self) -> torch.Tensor:
        """The single-process order of this epoch (int64, on CPU)."""
        if self.base is not None:
            return torch.as_tensor(list(self.base), dtype=torch.int64)
        g = torch.Generator(device=self.device).manual_seed(_mix_seed(self.seed, self.epoch))
        return torch.randperm(self.num_items, device=self.device, generator=g).cpu()

    def _total(self) -> int:
        return len(self.base) if self.base is not None else self.num_items

    def __len__(self) -> int:
        full, last = divmod(self._total(), self.batch_size)
        return full * (self.batch_size // self.world_size) + last // self.world_size

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        out = []
        for start in range(0, len(order), self.batch_size):
            chunk = len(order[start:start + self.batch_size]) // self.world_size
            out.append(order[start + self.rank * chunk:start + (self.rank + 1) * chunk])
        return iter(torch.cat(out).tolist() if out else [])
