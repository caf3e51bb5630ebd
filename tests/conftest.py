"""Shared fixtures: full-size fake CIFAR folders (built once per session) and a small digits set."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `from fakes import ...` works with or without tests/__init__.py
from fakes import make_fake_cifar  # noqa: E402


@pytest.fixture(scope="session")
def fake_cifar10_root(tmp_path_factory):
    """A fake ``cifar-10-batches-py/`` with the real sizes (5000 / 1000 per class)."""
    return make_fake_cifar(tmp_path_factory.mktemp("cifar10"), "cifar10", 5000, 1000, seed=10)


@pytest.fixture(scope="session")
def fake_cifar100_root(tmp_path_factory):
    """A fake ``cifar-100-python/`` with the real sizes (500 / 100 per class)."""
    return make_fake_cifar(tmp_path_factory.mktemp("cifar100"), "cifar100", 500, 100, seed=100)


@pytest.fixture(scope="session")
def digits_ds():
    """sklearn digits, long-tailed train split with imbalance factor 10 (503 images, 8x8 grey)."""
    from ltlab.data import get_dataset
    return get_dataset("digits_lt", imbalance_factor=10)


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test: as fast as it gets on a loaded 2-core box, and the same
    as the worker processes these tests start."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
