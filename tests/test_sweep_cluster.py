"""Sweeps through submitit, end to end on tiny digits runs: jobs as processes (submitit's LocalExecutor),
a sweep killed halfway and started again, and a fake Slurm that runs the array and requeues a preempted
job, which resumes from the run's checkpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import fake_slurm
from ltlab import batch, load_run
from ltlab.launch.sweep import plan
from ltlab.launch.execute import read_result

ROOT = Path(__file__).resolve().parent.parent
TRAIN_NB = ROOT / "notebooks" / "01_train.ipynb"
BASE = {"dataset": "digits_lt", "epochs": 1, "batch_size": 128, "progress": False, "device": "cpu"}
# a run long enough to be caught mid-training: ~0.4 s per epoch (balanced digits, batch 16); the tests stop it
# right after its first epoch (the killed sweep runs one job at a time, so nothing else has to finish first)
LONG = {"seed": 1, "epochs": 12, "imbalance_factor": 1, "batch_size": 16}
CRT = {"method": "cRT", "loss": "ce", "seed": 2,
       "stage_two": {"stage": "classifier", "loss": "ce", "head": "linear", "classifier_init": "reset",
                     "backbone_mode": "train", "sampler": "class_aware", "sampler_params": {"num_samples_cls": 4},
                     "epochs": 2, "lr": 0.05}}
SHORT = {"seed": 0}


def _wait(condition, what: str, timeout: float = 240.0, every: float = 0.2):
    t0 = time.time()
    while not condition():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def _state(run_dir: str) -> str:
    return batch.run_state(Path(run_dir))


def _stamps(run_dir: str) -> dict[str, int]:
    return {n: (Path(run_dir) / n).stat().st_mtime_ns for n in ("checkpoint.pt", "metrics.csv", "01_train.ipynb")}


@pytest.mark.subprocess
@pytest.mark.slow
def test_submitit_local_sweep_killed_halfway_then_restarted_runs_only_what_is_missing(tmp_path, monkeypatch):
    out = tmp_path / "runs"
    monkeypatch.setenv("LTLAB_SWEEP_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("LTLAB_SWEEP_POLL_S", "0.2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one torch thread per job, as in the Slurm test below
    # the two-stage run's stage two stops after one of its two epochs (epochs_per_call, not part of the run's name)
    cut = {**CRT, "stage_two": {**CRT["stage_two"], "epochs_per_call": 1}}
    # the killed sweep runs one job at a time: the long run starts once the other two have ended, so it is caught
    # right after its first epoch whatever the load (two at a time, it had to outlast the two-stage run); the
    # restarted sweep runs two at a time
    args = dict(notebook=str(TRAIN_NB), presets=[cut, SHORT, LONG], base_params=BASE, out_root=str(out),
                executor="submitit_local", parallel=1)
    code = "import json, sys\nfrom ltlab import batch\nbatch.sweep(**json.loads(sys.argv[1]))\n"
    sweep = subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], start_new_session=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    _wait(lambda: len(plan.read_manifest(out)) == 3, "the sweep's manifest")
    crt, short, long = (e["dirs"] for e in plan.read_manifest(out))
    # halfway: one run finished, the two-stage run stopped in stage two, the long run mid-training
    _wait(lambda: _state(short[0]) == "complete" and (read_result(crt[0]) or {}).get("status") == "incomplete"
          and _state(long[0]) == "partial", "a finished run, a cut stage two and a run mid-training")
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep, submitit's job controllers and jobs (kernels follow)
    sweep.wait()
    _wait(lambda: "running" not in set(batch.sweep_status(out).status), "the heartbeats to go stale")
    time.sleep(2.0)  # an orphaned kernel notices its parent is gone within a second
    assert load_run(long[0]).metrics.epoch.iloc[-1] < LONG["epochs"] - 1  # the killed run's directory loads
    first_rows = {d: pd.read_csv(Path(d) / "metrics.csv").iloc[0] for d in (long[0], crt[1])}
    before = {d: _stamps(d) for d in (short[0], crt[0])}
    status = batch.sweep_status(out).set_index("run_id")
    assert list(status.status) == ["interrupted", "done", "interrupted"]
    assert status.loc[Path(crt[0]).name[:-len("_stage1")], "stage"] == "2/2"

    again = batch.sweep(**{**args, "presets": [CRT, SHORT, LONG], "notebook": TRAIN_NB, "out_root": out,
                           "parallel": 2})
    assert list(again.status) == ["resumed", "skipped", "resumed"]
    assert all(_stamps(d) == t for d, t in before.items())  # the finished run and stage one did not run again
    for d, row in first_rows.items():  # both interrupted runs went on from their checkpoints, epoch 0 kept
        resumed = pd.read_csv(Path(d) / "metrics.csv")
        assert resumed.iloc[0]["seconds"] == row["seconds"]
        assert resumed.epoch.iloc[-1] == load_run(d).config["epochs"] - 1
    two = again.iloc[0]
    assert two.stage1_overall == pytest.approx(load_run(crt[0]).metrics.acc.iloc[-1])
    assert two.overall == pytest.approx(load_run(crt[1]).metrics.acc.iloc[-1]) and two["stage_two.epochs"] == 2
    assert load_run(crt[1]).config["init_from"] == crt[0]
    assert set(batch.sweep_status(out).status) == {"done"}
    assert list((out / ".submitit").iterdir())  # submitit's own pickles and logs


@pytest.mark.subprocess
@pytest.mark.slow
def test_slurm_array_preempted_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    import submitit

    state = tmp_path / "slurm"
    for key, value in fake_slurm.install(tmp_path / "bin", state).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FAKE_SLURM_RUN", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one torch thread per job: what the loaded 2-core CI box does best
    monkeypatch.setenv("LTLAB_SWEEP_POLL_S", "0.2")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    out = tmp_path / "runs"
    done: dict = {}

    def run_sweep():
        try:
            done["df"] = batch.sweep(TRAIN_NB, [LONG, SHORT], base_params=BASE, out_root=out,
                                     executor="slurm", slurm={"partition": "gpu", "timeout_min": 30})
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            done["error"] = exc

    thread = threading.Thread(target=run_sweep)
    thread.start()
    _wait(lambda: len(plan.read_manifest(out)) == 2 or "error" in done, "the submission")
    long_dir = plan.read_manifest(out)[0]["dirs"][0]
    _wait(lambda: _state(long_dir) == "partial" and (Path(long_dir) / "metrics.csv").exists(),
          "the first epoch of task 0")
    epoch0 = pd.read_csv(Path(long_dir) / "metrics.csv").iloc[0]
    submitit.SlurmJob(folder=out / ".submitit" / "%j", job_id="1000_0")._interrupt()  # preemption: SIGTERM, then USR2
    thread.join(timeout=300)
    assert "error" not in done and "df" in done
    df = done["df"]
    assert list(df.status) == ["resumed", "done"] and list(df.attempt) == [2, 1]
    assert list(df.job_id) == ["1000_0", "1000_1"]
    resumed = pd.read_csv(Path(long_dir) / "metrics.csv")
    assert list(resumed.epoch) == list(range(LONG["epochs"]))
    assert resumed.iloc[0]["seconds"] == epoch0["seconds"]  # epoch 0 was not trained again
    calls = fake_slurm.calls(state)
    assert [c["argv"][-1] for c in calls if c["cmd"] == "sbatch"] and sum(c["cmd"] == "sbatch" for c in calls) == 1
    assert {"cmd": "scancel", "argv": ["1000_0", "--signal", "USR2"]} in calls
    assert {"cmd": "scontrol", "argv": ["requeue", "1000_0"]} in calls  # submitit's requeue after checkpoint()
    assert any(c["cmd"] == "sacct" for c in calls)
    log = (out / ".submitit" / "1000_0" / "1000_0_0_log.out").read_text()  # submitit's log of the job
    assert "this job is preempted" in log and "Calling checkpoint method" in log and "Requeued job 1000_0" in log
