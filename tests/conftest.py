"""Shared fixtures: full-size fake CIFAR folders and tiny trained runs (each built once per session), a small
digits set, and the check that keeps the process markers honest."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# OpenMP threads that wait for work sleep instead of spinning: the test workers on 2 cores, plus the notebook
# kernels and JupyterLab kernels they start (which inherit this), leave no core idle, and a spinning thread
# steals the core its partner needs. openTSNE's Barnes-Hut gradient (2 threads) took 8 s of CPU and ~30 s
# of wall time for a 200-point t-SNE on the loaded box instead of 0.5 s. Set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: F401 - imported before any test: its first import starts a process (the marker check below
#               would refuse it inside a test that happens to import torch first)

if os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs three pytest workers on 2 cores: one torch thread each
    torch.set_num_threads(1)              # (two threads each would oversubscribe the cores), and so does every
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # process a test starts (kernels, CLI runs, torchrun ranks):
    #   OpenMP threads spinning on a core the other worker holds cost ~1.6x the CPU time of one thread

# ltlab's bytecode, compiled once per test run before the workers start: every process a test starts reads it
# (with PYTHONDONTWRITEBYTECODE set, each would compile ltlab again, 0.25 s of CPU; the docs test copies it)
if not os.environ.get("PYTEST_XDIST_WORKER"):
    import compileall

    compileall.compile_dir(Path(__file__).resolve().parent.parent / "ltlab", quiet=1)

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


# tiny digits-LT runs (2 epochs of convnet_small, a few seconds each) that several test modules read
TINY_DIGITS = dict(dataset="digits_lt", epochs=2, batch_size=64, device="cpu", progress=False)
SHARED_RUNS = {
    "ce": dict(loss="ce"),
    "gala": dict(loss="gala"),
    "ghm_cwap": dict(loss="ghm_cwap"),
    "ala": dict(loss="ala"),
    "ce_if10": dict(loss="ce", imbalance_factor=10),
    "ghm_cwap_bins8": dict(loss="ghm_cwap", loss_params={"bins": 8}),
}


@pytest.fixture(scope="session")
def tiny_run_copy(tmp_path_factory):
    """``tiny_run_copy(name, dest=None) -> Run``: a private copy (``dest``, or a new temporary folder) of the
    shared run ``name`` of ``SHARED_RUNS``, trained once per test session on first use. A copy, so a test may
    write into it (features, post-hoc files) without another module seeing it."""
    import shutil

    import ltlab
    from ltlab.runs import load_run

    root = tmp_path_factory.mktemp("shared_runs")
    trained: dict[str, Path] = {}

    def copy(name: str, dest: Path | None = None):
        if name not in trained:
            trained[name] = root / name
            ltlab.run(**TINY_DIGITS, **SHARED_RUNS[name], run_dir=str(trained[name]))
        dest = Path(dest) if dest is not None else tmp_path_factory.mktemp(name) / name
        shutil.copytree(trained[name], dest)
        return load_run(dest)

    return copy


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test: as fast as it gets on a loaded 2-core box, and the same
    as the worker processes these tests start."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- markers (pyproject.toml) kept honest
_PROCESS_MARKERS = ("subprocess", "browser")


@pytest.fixture(autouse=True)
def _processes_need_a_marker(request, monkeypatch):
    """A test that starts a process (``subprocess``, ``multiprocessing``, ``os.fork``) must carry the
    ``subprocess`` (or ``browser``) marker, so ``make test-fast`` (``-m "not slow and not subprocess and not
    browser"``) never starts one; without the marker the attempt fails the test with what to add."""
    if any(request.node.get_closest_marker(m) for m in _PROCESS_MARKERS):
        yield
        return
    import multiprocessing.util
    import os
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a process: mark it @pytest.mark.subprocess "
                             "(make test-fast leaves such tests out)")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(multiprocessing.util, "spawnv_passfds", refuse)
    yield


# the files that take longest (minutes of processes, browsers and heartbeats) are handed to the workers first, so
# the run does not end with one worker alone on one of them (longest first, by wall time on a loaded box; a file's
# tests keep their order). The Makefile passes --no-loadscope-reorder: xdist's default hands out the files with the
# most tests first instead, and the 1-test workbench file started last, 9 minutes in.
LONGEST_FIRST = ("test_docs.py", "test_browser.py", "test_sweep_cluster.py", "test_browser_workbench.py",
                 "test_analysis_notebooks.py", "test_interactive_notebooks.py", "test_workbench.py", "test_batch.py",
                 "test_search.py", "test_scale_figures.py", "test_notebooks.py", "test_engine.py", "test_launch.py",
                 "test_presets.py", "test_adversarial.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
