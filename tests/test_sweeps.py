"""ltlab.launch.sweep: two-stage plans, clear errors before anything is submitted, GPU packing, Slurm submission
(one array, directives), sweep_status, seed tables."""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fake_slurm
from ltlab import batch
from ltlab.launch.cli import main
from ltlab.launch.sweep import local, plan
from ltlab.launch.execute import HEARTBEAT_FILE, RESULT_FILE

ROOT = Path(__file__).resolve().parent.parent
TRAIN_NB = ROOT / "notebooks" / "01_train.ipynb"
GLAG = ROOT / "notebooks" / "presets" / "glag_fashion_mnist_if100.yaml"
BASE = {"dataset": "digits_lt", "epochs": 2, "batch_size": 128, "progress": False, "device": "cpu"}
# cRT on a CE stage one, shortened: stage two re-trains a reset linear classifier with class-aware sampling
CRT = {"method": "cRT", "loss": "ce", "epochs": 1, "reported": {"overall": 50.0, "few": 20.0},
       "stage_two": {"stage": "classifier", "loss": "ce", "head": "linear", "classifier_init": "reset",
                     "backbone_mode": "train", "sampler": "class_aware", "sampler_params": {"num_samples_cls": 4},
                     "epochs": 1, "lr": 0.05}}
SLURM = {"partition": "gpu", "gpus_per_node": 1, "timeout_min": 120, "mem_gb": 16, "array_parallelism": 2}


def test_two_stage_presets_expand_with_stage_grid_and_seeds(tmp_path):
    combos = plan.expand_stages([CRT, GLAG], {"stage_two.epochs": [1, 2]}, BASE, seeds=[0, 1])
    assert len(combos) == 2 * 2 * 2 and all(len(c) == 2 for c in combos)
    one, two = combos[1]
    assert (one["seed"], two["seed"]) == (1, 1) and (one["epochs"], two["epochs"]) == (1, 1)
    assert two["stage"] == "classifier" and two["dataset"] == "digits_lt" and "stage_two" not in one
    assert two["reported"] == {"overall": 50.0, "few": 20.0} and one["reported"] == {}  # the final stage's numbers
    glag_one, glag_two = combos[-1]
    assert glag_two["stage"] == "afg" and glag_two["epochs"] == 2 and glag_one["epochs"] == 15  # preset > base
    specs = plan.plan_runs(combos, tmp_path, TRAIN_NB)
    assert len({s["run_id"] for s in specs}) == 8  # stage two's epochs are part of the name
    s = specs[0]
    assert [Path(d).name for d in s["dirs"]] == [s["run_id"] + "_stage1", s["run_id"] + "_stage2"]
    assert s["stages"][1]["init_from"] == s["dirs"][0] and s["stages"][1]["run_dir"] == s["dirs"][1]
    assert s["row"]["stage_two.stage"] == "classifier" and s["row"]["stage_two.epochs"] == 1
    assert "stage_two.seed" not in s["row"]  # what stage two shares with stage one is not repeated


@pytest.mark.parametrize("presets,grid,match", [
    ([CRT], {"loss": ["ce", "gcl"]}, "combination 1.*stage two: .*loss 'gcl' takes cosine"),
    ([CRT], {"stage_two.model": ["resnet20"]}, "stage two has model='resnet20' but stage one model='convnet_small'"),
    ([{**CRT, "stage_two": {**CRT["stage_two"], "classifier_init": "stage_one"}}], {"stage_one.loss": ["ce", "gcl"]},
     "combination 1.*keeps stage one's classifier.*'linear' head.*'cosine' head"),
    ([GLAG], {"stage_one.loss": ["gcl"], "stage_one.loss_params": [{}]}, "stage='afg', which needs a stage one with "
                                                                           "a linear head"),
    ([{"loss": "ce"}, CRT], {"stage_two.epochs": [1]}, r"sets \['stage_two.epochs'\] but preset .*has one stage"),
])
def test_incompatible_stage_two_settings_refused_before_anything_runs(tmp_path, presets, grid, match):
    out = tmp_path / "runs"
    with pytest.raises(ValueError, match=match) as err:
        batch.sweep(TRAIN_NB, presets, grid, BASE, out_root=out)
    assert "nothing was run" in str(err.value) and not out.exists()


def test_missing_data_stops_a_local_sweep_before_any_run(tmp_path, monkeypatch):
    """Without CIFAR on disk the sweep stops once, naming the folder, instead of starting every run to fail
    alike (before: 6 notebooks started for the documented two-preset command)."""
    monkeypatch.setenv("LTLAB_DATA", str(tmp_path / "data"))
    out = tmp_path / "runs"
    with pytest.raises(FileNotFoundError, match=r"dataset='cifar10_lt' is not on disk, nothing was run: "
                                                r"CIFAR-10 not found: expected folder \S+cifar-10-batches-py"):
        batch.sweep(TRAIN_NB, [{"dataset": "cifar10_lt", "loss": "ce"}], {"seed": [0, 1]}, BASE, out_root=out)
    assert not out.exists()


def test_gpu_packing_assigns_devices_and_threads():
    slots = local.worker_slots(["0", "1"], per_gpu=2, cores=8)
    assert [s["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "0", "1"]  # every GPU before any doubles up
    assert {s["OMP_NUM_THREADS"] for s in slots} == {"2"}
    assert [s["CUDA_VISIBLE_DEVICES"] for s in local.worker_slots(["4", "5", "6"], parallel=4, cores=2)] == \
        ["4", "5", "6", "4"]
    assert [s["CUDA_VISIBLE_DEVICES"] for s in local.worker_slots(["0", "1"], cores=2)] == ["0", "1"]  # default
    cpu = local.worker_slots([], parallel=2, cores=2)
    assert cpu == [{"OMP_NUM_THREADS": "1"}] * 2  # CPU-only: as before, no CUDA_VISIBLE_DEVICES
    assert local.worker_slots([], cores=16) == [{"OMP_NUM_THREADS": "16"}]
    with pytest.raises(ValueError, match="per_gpu=2 packs runs onto GPUs, but no GPU is visible"):
        local.worker_slots([], per_gpu=2)
    with pytest.raises(ValueError, match="per_gpu must be an integer >= 1"):
        local.worker_slots(["0"], per_gpu=0)


def test_gpu_pool_runs_at_most_per_gpu_runs_on_each_gpu():
    slots = local.worker_slots(["0", "1"], per_gpu=2, cores=4)
    lock, active, peak, seen = threading.Lock(), {}, {}, []

    def fake_launch(spec, slot):
        env = local.worker_env(slot)
        gpu = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            active[gpu] = active.get(gpu, 0) + 1
            peak[gpu] = max(peak.get(gpu, 0), active[gpu])
            seen.append((spec["run_id"], gpu, env["OMP_NUM_THREADS"], env["LTLAB_PROGRESS"]))
        time.sleep(0.05)
        with lock:
            active[gpu] -= 1
        return {"status": "done", "gpu": gpu}

    specs = [{"run_id": f"r{i}"} for i in range(10)]
    out = local.run_pool(specs, slots, fake_launch)
    assert len(out) == 10 and peak == {"0": 2, "1": 2}
    assert {g for _, g, _, _ in seen} == {"0", "1"} and {p for *_, p in seen} == {"0"}
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    assert {t for _, _, t, _ in seen} == {threads}


def test_visible_gpus_reads_injected_list_and_cuda_visible_devices(monkeypatch):
    assert local.visible_gpus([0, 1]) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert local.visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,1")
    assert local.visible_gpus() == ["0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local.visible_gpus() == []
    with pytest.raises(ValueError, match="no GPU is visible"):
        batch.sweep(TRAIN_NB, base_params=BASE, per_gpu=2, out_root="/nonexistent/never")


@pytest.fixture
def slurm_env(tmp_path, monkeypatch):
    """The fake Slurm commands on PATH (they record their arguments; sbatch does not run the job)."""
    state = tmp_path / "slurm"
    for key, value in fake_slurm.install(tmp_path / "bin", state).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FAKE_SLURM_RUN", raising=False)
    return state


@pytest.mark.subprocess
def test_slurm_submits_one_array_with_the_directives(tmp_path, slurm_env):
    out = tmp_path / "runs"
    df = batch.sweep(TRAIN_NB, [{"seed": 0}, {"seed": 1}, CRT], base_params=BASE, out_root=out, executor="slurm",
                     slurm=SLURM, wait=False)
    assert list(df.status) == ["submitted"] * 3 and list(df.job_id) == ["1000_0", "1000_1", "1000_2"]
    calls = fake_slurm.calls(slurm_env)
    sbatch = [c for c in calls if c["cmd"] == "sbatch"]
    assert len(sbatch) == 1  # one array for the whole grid
    script = (slurm_env / "job_1000.sh").read_text()
    d = fake_slurm.directives(script)
    assert (d["partition"], d["gpus-per-node"], d["time"], d["mem"]) == ("gpu", "1", "120", "16GB")
    assert d["array"] == "0-2%2" and d["job-name"] == "ltlab-sweep" and d["signal"].startswith("USR2@")
    assert "submitit.core._submit" in script and "srun" in script
    job = pickle.loads((out / ".submitit" / "1000_2" / "1000_2_submitted.pkl").read_bytes())  # submitit's pickle
    assert type(job.function).__name__ == "SweepJob" and job.function.spec["run_id"] == df.run_id[2]
    assert len(job.function.spec["stages"]) == 2  # the two-stage preset is one job
    status = batch.sweep_status(out)
    assert list(status.status) == ["missing"] * 3 and list(status.job_id) == ["1000_0", "1000_1", "1000_2"]
    assert list(status.stage) == ["1/1", "1/1", "1/2"]
    again = batch.sweep(TRAIN_NB, [{"seed": 0}, {"seed": 1}, CRT], base_params=BASE, out_root=out, executor="slurm",
                        slurm=SLURM, wait=False)  # started again while the array waits in the queue (sacct: PENDING)
    assert list(again.status) == ["queued"] * 3 and list(again.job_id) == ["1000_0", "1000_1", "1000_2"]
    assert sum(c["cmd"] == "sbatch" for c in fake_slurm.calls(slurm_env)) == 1  # nothing submitted twice


@pytest.mark.subprocess
def test_slurm_bad_inputs_fail_before_anything_is_submitted(tmp_path, slurm_env, monkeypatch):
    out = tmp_path / "runs"

    def refused(match, **kw):
        with pytest.raises(ValueError, match=match):
            batch.sweep(TRAIN_NB, base_params=BASE, out_root=out, **kw)
        assert not out.exists() and not [c for c in fake_slurm.calls(slurm_env) if c["cmd"] == "sbatch"]

    refused(r"unknown Slurm option\(s\) \['gpu'\]; valid options: .*partition.*timeout_min", executor="slurm",
            slurm={"gpu": 1})
    refused("timeout_min='2h' must be a positive number", executor="slurm", slurm={"timeout_min": "2h"})
    refused("unknown executor 'slrum'; valid executors: local, submitit_local, slurm", executor="slrum")
    refused("Slurm options were given but executor='local'", slurm={"partition": "gpu"})
    refused("per_gpu / gpus pack runs onto this machine's GPUs", executor="slurm", per_gpu=2)
    refused(r"wait=False \(--no-wait\) needs a cluster executor", wait=False)
    find_spec = importlib.util.find_spec
    with monkeypatch.context() as m:
        m.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "submitit" else find_spec(name, *a))
        refused(r"needs the submitit package: pip install submitit.*use executor='local'", executor="slurm")
    with monkeypatch.context() as m:
        m.setenv("PATH", "/usr/bin:/bin")  # no sbatch / srun here
        refused(r"needs Slurm's sbatch and srun on PATH.*executor='local'", executor="slurm", slurm=SLURM)
    with pytest.raises(RuntimeError, match="the scheduler refused the jobs: sbatch: error: invalid partition"):
        batch.sweep(TRAIN_NB, base_params=BASE, out_root=out, executor="slurm", slurm={"partition": "nope"})


def _fake_run(run_dir: Path, epochs_done: int, epochs: int = 2) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"epochs": epochs}))
    if epochs_done:
        (run_dir / "checkpoint.pt").write_bytes(b"")
        rows = "\n".join(f"{e},0.{e + 1}" for e in range(epochs_done))
        (run_dir / "metrics.csv").write_text(f"epoch,acc,acc_many,acc_medium,acc_few\n{rows}\n")


def test_sweep_status_from_run_directories(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTLAB_SWEEP_HEARTBEAT_S", "10")
    names = ["done", "running", "failed", "killed", "queued", "two"]
    specs = [{"run_id": n, "dirs": [str(tmp_path / n)], "row": {}, "notebook": "nb.ipynb"} for n in names[:5]]
    specs.append({"run_id": "two", "dirs": [str(tmp_path / "two_stage1"), str(tmp_path / "two_stage2")], "row": {},
                  "notebook": "nb.ipynb"})
    plan.update_manifest(tmp_path, specs, {"queued": "77_4"})
    _fake_run(tmp_path / "done", 2)
    _fake_run(tmp_path / "running", 1)
    (tmp_path / "running" / HEARTBEAT_FILE).write_text(json.dumps({"host": "node7", "job_id": "77_1", "attempt": 2}))
    _fake_run(tmp_path / "failed", 0)
    (tmp_path / "failed" / RESULT_FILE).write_text(json.dumps({"status": "failed", "error": "ValueError: bad",
                                                               "notebook": "x/01_train.ipynb"}))
    _fake_run(tmp_path / "killed", 1)
    stale = tmp_path / "killed" / HEARTBEAT_FILE
    stale.write_text("{}")
    os.utime(stale, (time.time() - 60, time.time() - 60))  # six beats ago: the job died
    _fake_run(tmp_path / "two_stage1", 2)
    _fake_run(tmp_path / "two_stage2", 1, epochs=3)
    status = batch.sweep_status(tmp_path).set_index("run_id")
    assert list(status.status) == ["done", "running", "failed", "interrupted", "missing", "interrupted"]
    assert status.loc["running", ["host", "job_id", "attempt"]].tolist() == ["node7", "77_1", 2]
    assert status.loc["failed", "error"] == "ValueError: bad" and status.loc["queued", "job_id"] == "77_4"
    assert status.loc["two", ["stage", "epochs_done", "epochs"]].tolist() == ["2/2", 1, 3]
    assert status.loc["done", "overall"] == pytest.approx(0.2)
    assert main(["sweep", "--status", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "done 1 | running 1 | failed 1 | interrupted 2 | missing 1" in captured.out
    assert "FAILED failed: ValueError: bad" in captured.err


def test_seed_table_has_reported_numbers_and_finished_seeds(tmp_path):
    rep = json.dumps({"overall": 51.7, "few": 33.9})
    df = pd.DataFrame({"loss": ["ce"] * 3 + ["glag"] * 3, "seed": [0, 1, 2] * 2, "reported": ["{}"] * 3 + [rep] * 3,
                       "status": ["done", "done", "failed", "done", "resumed", "skipped"],
                       "overall": [0.4, 0.5, np.nan, 0.5, 0.52, 0.54], "many": [0.9] * 6, "medium": [0.5] * 6,
                       "few": [0.1] * 6, "stage1_overall": [np.nan] * 3 + [0.45, 0.47, 0.49],
                       "stage1_many": [np.nan] * 6, "stage1_medium": [np.nan] * 6, "stage1_few": [np.nan] * 6})
    s = batch.summarise(df).set_index("loss")
    assert s.loc["ce", ["n", "n_runs"]].tolist() == [2, 3] and s.loc["glag", ["n", "n_runs"]].tolist() == [3, 3]
    assert s.loc["glag", "reported_overall"] == pytest.approx(0.517) and np.isnan(s.loc["ce", "reported_overall"])
    assert s.loc["glag", "stage1_overall_mean"] == pytest.approx(0.47) and "stage1_many_mean" not in s
    assert "reported_many" not in s  # no preset reported it
    t = batch.format_table(s.reset_index()).set_index("loss")
    assert t.loc["glag", "overall"] == "52.0 ± 2.0" and t.loc["glag", "overall (reported)"] == "51.7"
    assert t.loc["ce", "overall (reported)"] == "–" and t.loc["ce", "seeds"] == "2/3"
    assert t.loc["glag", "stage1_overall"] == "47.0 ± 2.0"
    paths = batch.export_tables(s.reset_index(), tmp_path / "tab")
    tex = paths["tex"].read_text()
    assert "overall (reported)" in tex and "52.0 $\\pm$ 2.0 & 51.7" in tex and "2/3" in tex
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), s.reset_index())
