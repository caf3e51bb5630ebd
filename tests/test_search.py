"""The Optuna search end to end on tiny digits-LT runs: 12 trials over GCL's space with pruning, a search
killed halfway and started again, two local workers on one study, Slurm workers through the fake Slurm,
and one clear message for each kind of bad input."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

optuna = pytest.importorskip("optuna", reason="the search needs Optuna (pip install 'ltlab[search]')")

from ltlab import load_run  # noqa: E402
from ltlab.launch.search import load_search, search, search_figures, search_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# ~1 s per trial on a quiet core: digits-LT at IF 10 (a few group of two classes), a narrow convnet
BASE = {"dataset": "digits_lt", "imbalance_factor": 10, "epochs": 3, "batch_size": 128, "device": "cpu",
        "model_params": {"width": 8}}
FINISHED = ("COMPLETE", "PRUNED")


def _finished(study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED]


def _check_no_run_twice(out: Path, n: int) -> None:
    """n finished trials, n run directories, each trained once (its metrics.csv has each epoch once)."""
    study = load_search(out)
    dirs = [t.user_attrs["run_dir"] for t in _finished(study)]
    assert len(dirs) == n and len(set(dirs)) == n
    assert sorted(p.name for p in out.glob("trial_*")) == sorted(Path(d).name for d in dirs)
    for d in dirs:
        epochs = list(pd.read_csv(Path(d) / "metrics.csv").epoch)
        assert epochs == list(range(len(epochs))), d


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # trials side by side on a busy 2-core box
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_twelve_trials_over_gcl_prune_and_write_run_directories(tmp_path):
    out = tmp_path / "search"
    table = search("gcl", n_trials=12, base_params=BASE, out_root=out, startup_trials=2)
    assert len(table) == 12 and set(table.state) <= {"complete", "pruned"}
    assert (table.state == "pruned").sum() >= 1 and (table.state == "complete").sum() >= 2
    assert list(table.columns[:7]) == ["trial", "state", "objective", "s", "m", "noise_mul", "gamma"]
    pruned = table[table.state == "pruned"].iloc[0]
    marker = load_run(pruned.run_dir)
    assert (Path(pruned.run_dir) / "search.json").read_text().count('"pruned"') == 1
    assert len(marker.metrics) < BASE["epochs"]  # stopped early, cleanly: the directory loads
    best = table.iloc[0]
    assert best.state == "complete" and best.objective == pytest.approx(best.overall)
    assert load_run(best.run_dir).config["loss_params"]["noise_mul"] == pytest.approx(best.noise_mul)
    figs = search_figures(out)
    assert {"history", "intermediate", "parallel", "importance"} <= set(figs)
    _check_no_run_twice(out, 12)


@pytest.mark.flaky(reruns=2)  # timing: the search can finish before the test sees it halfway on a loaded box
@pytest.mark.slow
@pytest.mark.subprocess
def test_search_killed_halfway_then_restarted_finishes_the_missing_trials_none_twice(tmp_path, monkeypatch):
    out = tmp_path / "search"
    monkeypatch.setenv("LTLAB_SEARCH_HEARTBEAT_S", "0.3")
    monkeypatch.setenv("LTLAB_SEARCH_GRACE_S", "2")
    base = {**BASE, "epochs": 4}
    cmd = [sys.executable, "-m", "ltlab", "search", "gcl", "--trials", "12", "--out-root", str(out),
           "--startup-trials", "2", "--space", "noise_mul", "--space", "m=0,0.2"]
    for k, v in base.items():
        cmd += ["-p", k, str(v)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while True:  # halfway: several trials finished, one mid-training (its first checkpoint written)
        time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() - t0 < 240, "timed out waiting for the search to get halfway"
        try:
            trials = load_search(out).get_trials(deepcopy=False)
        except (FileNotFoundError, ValueError):  # the study is not created yet
            continue
        running = [t for t in trials if t.state.name == "RUNNING" and "run_dir" in t.user_attrs]
        if len(_finished_of(trials)) >= 5 and running and (Path(running[0].user_attrs["run_dir"]) /
                                                           "checkpoint.pt").exists():
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the trial the kill caught: the one still RUNNING in the study now (the one seen above may have been pruned
    # or finished in the moment between that look and the kill; then the next one had started)
    running = [t for t in load_search(out).get_trials(deepcopy=False)
               if t.state.name == "RUNNING" and "run_dir" in t.user_attrs]
    assert len(running) == 1, f"the kill caught {len(running)} running trials with a run directory"
    killed = running[0]
    time.sleep(2.5)  # the killed trial's heartbeat goes stale
    table = search("gcl", n_trials=12, space={"noise_mul": None, "m": [0, 0.2]}, base_params=base, out_root=out,
                   startup_trials=2)
    assert len(table) == 12 and set(table.state) <= {"complete", "pruned"}
    study = load_search(out)
    states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
    assert states[killed.number] == "FAIL"
    retry = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].user_attrs["run_dir"] == killed.user_attrs["run_dir"]
    assert retry[0].params == killed.params
    _check_no_run_twice(out, 12)


def _finished_of(trials) -> list:
    return [t for t in trials if t.state.name in FINISHED]


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_local_workers_share_one_study(tmp_path):
    out = tmp_path / "search"
    table = search("gcl", n_trials=6, space={"noise_mul": [0.0, 1.5]}, base_params={**BASE, "epochs": 1},
                   out_root=out, workers=2, pruner="none")
    assert len(table) == 6 and set(table.state) == {"complete"}
    workers = {t.user_attrs["worker"] for t in load_search(out).get_trials(deepcopy=False)}
    assert len(workers) == 2
    _check_no_run_twice(out, 6)


@pytest.mark.slow
@pytest.mark.subprocess
def test_slurm_workers_through_the_fake_scheduler_share_a_journal_study(tmp_path, monkeypatch):
    import fake_slurm

    state = tmp_path / "slurm"
    for key, value in fake_slurm.install(tmp_path / "bin", state).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FAKE_SLURM_RUN", "1")
    monkeypatch.setenv("LTLAB_SWEEP_POLL_S", "0.2")
    out = tmp_path / "search"
    table = search("gcl", n_trials=4, space=["noise_mul"], base_params={**BASE, "epochs": 2}, out_root=out,
                   workers=2, executor="slurm", slurm={"partition": "gpu", "timeout_min": 10}, pruner="none")
    assert (out / "search.journal").exists() and not (out / "search.db").exists()
    assert len(table) == 4 and set(table.state) == {"complete"}
    calls = fake_slurm.calls(state)
    sbatch = [c for c in calls if c["cmd"] == "sbatch"]
    assert len(sbatch) == 1
    script = (state / "job_1000.sh").read_text()
    assert fake_slurm.directives(script)["array"].startswith("0-1") and "partition=gpu" in script
    _check_no_run_twice(out, 4)


# ---------------------------------------------------------------------- bad input
def test_bad_input_gives_one_clear_message_each(tmp_path, monkeypatch, capsys):
    out = tmp_path / "search"
    with pytest.raises(ValueError, match="noise_mul=9.*outside its range"):
        search("gcl", n_trials=2, space={"noise_mul": [0.0, 9.0]}, base_params=BASE, out_root=out)
    with pytest.raises(ValueError, match="unknown field 'nosie_mul'.*valid:.*noise_mul"):
        search("gcl", n_trials=2, space=["nosie_mul"], base_params=BASE, out_root=out)
    with pytest.raises(ValueError, match="'few' group, which is empty.*imbalance_factor"):
        search("gcl", n_trials=2, objective="few", base_params={**BASE, "imbalance_factor": 1}, out_root=out)
    with pytest.raises(ValueError, match="unknown group"):
        search("gcl", n_trials=2, objective="tail", base_params=BASE, out_root=out)
    search("gcl", n_trials=1, space=["noise_mul"], base_params={**BASE, "epochs": 1}, out_root=out)
    with pytest.raises(ValueError, match="made for another search space"):
        search("gcl", n_trials=1, space=["m"], base_params={**BASE, "epochs": 1}, out_root=out)
    assert len(search_table(out)) == 1
    from ltlab.launch.cli import main
    assert main(["search", "gcl", "--space", "noise_mul=0,9", "-p", "dataset", "digits_lt"]) == 2
    assert "ltlab: error: search space: noise_mul=9" in capsys.readouterr().err
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(ValueError, match=r"needs Optuna: pip install optuna"):
        search("gcl", n_trials=1, base_params=BASE, out_root=out)
