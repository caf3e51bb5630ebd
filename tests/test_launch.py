"""ltlab.launch: one owner for each launch concern (stage execution, the papermill call, the run identity, the
command line), and the launch-layer bugs of issue 24 (and issue 25's sweep items), each with its test."""
from __future__ import annotations

import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ltlab.launch import execute as ex
from ltlab.launch.cli import main
from ltlab.launch.identity import run_name
from ltlab.launch.sweep import local, plan

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "ltlab"
BASE = {"dataset": "digits_lt", "epochs": 1, "batch_size": 128, "progress": False, "device": "cpu"}


# ---------------------------------------------------------------------- one owner each
def _sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for p in PKG.rglob("*.py")}


def test_one_executor_one_papermill_call_one_identity():
    """Acceptance 1 of issue 24: the duplicates are gone, and each concern has one module."""
    src = _sources()
    assert not [f for f, t in src.items() if re.search(r"python -m ltlab\.batch|_run_stages|_resume_plan", t)]
    assert [f for f, t in src.items() if "pm.execute_notebook(" in t] == ["ltlab/launch/notebook.py"]
    assert [f for f, t in src.items() if "hashlib.sha1(" in t and "run_key" in t] == ["ltlab/launch/identity.py"]
    assert [f for f, t in src.items() if "argparse.ArgumentParser(" in t] == ["ltlab/launch/cli.py"]
    assert [f for f, t in src.items() if re.search(r"^def execute\(", t, re.M)] == ["ltlab/launch/execute.py"]
    unfinished = [f for f, t in src.items() if "stage one is unfinished" in t]
    assert unfinished == ["ltlab/runs/state.py"]  # the one check; stages/base.py and the launchers call it
    assert "check_finished(" in src["ltlab/stages/base.py"] and "check_finished(" in src["ltlab/launch/execute.py"]
    batch = src["ltlab/batch.py"]
    assert "__getattr__" not in batch and "__main__" not in batch


@pytest.mark.subprocess
def test_no_module_runs_as_main_inside_a_package_that_imports_it():
    """No import cycle through a ``__main__`` block: only ltlab/__main__.py and the worker have one, nothing
    imports the worker, and ``python -m`` of each loads it once (no RuntimeWarning about sys.modules)."""
    src = _sources()
    mains = sorted(f for f, t in src.items() if re.search(r'^if __name__ == "__main__"', t, re.M))
    assert mains == ["ltlab/launch/worker.py"]
    assert not [f for f, t in src.items() if re.search(r"^\s*(from \S*worker import|from \S+ import .*\bworker\b|import \S*\.worker\b)", t, re.M)]
    assert "import" not in src["ltlab/launch/__init__.py"].split('"""')[-1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args, code in ((["-m", "ltlab.launch.worker"], 2), (["-m", "ltlab", "--help"], 0)):
        p = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", *args], capture_output=True, text=True,
                           env=env, timeout=120)
        assert p.returncode == code and "RuntimeWarning" not in p.stderr, p.stderr


@pytest.mark.parametrize("old,new", [("ltlab.cli", "ltlab.launch.cli"), ("ltlab.presets", "ltlab.launch.presets"),
                                     ("ltlab.notebook_runner", "ltlab.launch.notebook")])
def test_old_paths_warn_once_naming_the_version(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{re.escape(old)} moved to {re.escape(new)}.*removed in ltlab 0\.3"):
        mod = importlib.import_module(old)
    assert mod.__name__ == old and hasattr(importlib.import_module(new), "__file__")
    assert not (PKG / "sweeps").exists()  # internal: gone, not shimmed


# ---------------------------------------------------------------------- the command line: one error line
@pytest.mark.parametrize("argv,names", [
    (["train", "-p", "loss_params", "{s: [1, 2"], "-p loss_params"),
    (["sweep", "-p", "lr", "[0.1", "--out-root", "OUT"], "-p lr"),
    (["sweep", "--grid", "lr=[0.1,0.2", "--out-root", "OUT"], "--grid 'lr=[0.1,0.2'"),
    (["train", "--preset", "PRESET"], "preset "),
])
def test_malformed_yaml_is_one_error_line_naming_the_option(argv, names, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss: [ce\n")
    argv = [str(bad) if a == "PRESET" else str(tmp_path / "o") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ltlab: error: ") and names in err and "invalid YAML" in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------- execute: always finalised
def _spec(tmp_path: Path, **kw) -> dict:
    return ex.spec([{**BASE}], [str(tmp_path / "r")], **kw)


@pytest.mark.parametrize("raised,kind", [(ZeroDivisionError("boom"), "ZeroDivisionError: boom")])
def test_a_crashing_stage_still_writes_its_result_and_frees_its_heartbeat(tmp_path, monkeypatch, raised, kind):
    def crash(params):
        assert (tmp_path / "r" / ex.HEARTBEAT_FILE).exists()  # beating while it runs
        raise raised
    monkeypatch.setattr("ltlab.engine.run", crash)
    (tmp_path / "r").mkdir()
    with pytest.raises(type(raised)):
        ex.execute(_spec(tmp_path), errors="raise" if isinstance(raised, Exception) else "record")
    res = ex.read_result(tmp_path / "r")
    assert res["status"] == "failed" and res["error"] == kind and not (tmp_path / "r" / ex.HEARTBEAT_FILE).exists()
    assert ex.execute(_spec(tmp_path))["error"] == kind  # a sweep records it and goes on (no raise)


def test_a_run_refused_by_hand_before_writing_leaves_no_directory(tmp_path, monkeypatch):
    """From the command line (errors="raise"), a stage that fails before writing anything leaves nothing behind
    (the error line says why); its bookkeeping files are not a run."""
    monkeypatch.setattr("ltlab.engine.run", lambda params: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ex.execute(_spec(tmp_path), errors="raise")
    assert not (tmp_path / "r").exists()


def test_ctrl_c_is_recorded_and_raised(tmp_path, monkeypatch):
    def interrupted(params):
        raise KeyboardInterrupt
    monkeypatch.setattr("ltlab.engine.run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.execute(_spec(tmp_path))
    assert ex.read_result(tmp_path / "r")["error"] == "KeyboardInterrupt"
    assert ex.read_result(tmp_path / "r")["status"] == "incomplete"  # interrupted, not failed: resumable
    assert not (tmp_path / "r" / ex.HEARTBEAT_FILE).exists()


def test_a_timed_out_run_records_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr("ltlab.engine.run", lambda params: time.sleep(30))
    t0 = time.monotonic()
    res = ex.execute(_spec(tmp_path, timeout=0.5))
    assert time.monotonic() - t0 < 20
    assert res["status"] == "failed" and res["error"] == "timed out after 0.5 s"
    assert ex.read_result(tmp_path / "r")["error"] == "timed out after 0.5 s"
    assert not (tmp_path / "r" / ex.HEARTBEAT_FILE).exists()


# ---------------------------------------------------------------------- bug 2: the run's identity
def test_run_identity_includes_posthoc_and_folds_aliases():
    """Bug 2: PN and logit adjustment on the same training are two runs (before: one directory, "skipped",
    the PN number reported for both); flat classifier_init and stage_params give one run (before: two)."""
    one = {**BASE, "loss": "ce"}
    assert run_name({**one, "posthoc": {"method": "pn"}}) != run_name({**one, "posthoc": {"method": "logit_adjust"}})
    flat = [one, {"stage": "classifier", "classifier_init": "reset", "epochs": 1}]
    nested = [one, {"stage": "classifier", "stage_params": {"classifier_init": "reset"}, "epochs": 1}]
    default = [one, {"stage": "classifier", "epochs": 1}]  # classifier_init's default is stage_one
    assert run_name(flat) == run_name(nested) != run_name(default)
    assert run_name(one) == run_name({**one, "device": "cuda", "progress": True, "run_dir": "x"})  # resume-free
    with pytest.raises(ValueError, match="combinations repeat"):
        plan.plan_runs([flat, nested], Path("/tmp/nowhere"), Path("01_train.ipynb"))


# ---------------------------------------------------------------------- bug 4
def test_replace_a_stage_keyword_of_a_folded_config():
    """Bug 4: before, the folded stage_params was fed back with the alias: "give it once"."""
    from ltlab.config import RunConfig
    c = RunConfig(stage="classifier", init_from="x", classifier_init="stage_one")
    assert c.replace(classifier_init="reset").stage_params == {"classifier_init": "reset"}
    assert c.replace(lr=0.1).stage_params == {"classifier_init": "stage_one"}
    with pytest.raises(ValueError, match="give it once"):
        c.replace(classifier_init="reset", stage_params={"classifier_init": "stage_one"})


# ---------------------------------------------------------------------- bug 5
def test_gpus_index_the_parents_visible_gpus(monkeypatch):
    """Bug 5: --gpus 0,1 under CUDA_VISIBLE_DEVICES=2,3 are physical 2 and 3 (before: 0 and 1, outside the set)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert local.visible_gpus(["0", "1"]) == ["2", "3"]
    assert [s["CUDA_VISIBLE_DEVICES"] for s in local.worker_slots(local.visible_gpus([1]), per_gpu=2)] == ["3", "3"]
    with pytest.raises(ValueError, match=r"gpus \['2'\] are not among the 2 GPU\(s\)"):
        local.visible_gpus([0, 2])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert local.visible_gpus([0, 1]) == ["0", "1"]


# ---------------------------------------------------------------------- status of a dead run
@pytest.mark.subprocess
def test_status_never_shows_a_dead_run_as_running(tmp_path, capsys):
    """A fresh heartbeat whose process is gone (same host) is not "running"; --status prints no None."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (("dead", dead.pid), ("live", os.getpid())):
        d = tmp_path / name
        d.mkdir()
        (d / ex.HEARTBEAT_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    plan.update_manifest(tmp_path, [{"run_id": n, "dirs": [str(tmp_path / n)], "row": {}, "notebook": "nb.ipynb"}
                                    for n in ("dead", "live", "never")])
    from ltlab.batch import sweep_status
    status = sweep_status(tmp_path).set_index("run_id").status
    assert status.to_dict() == {"dead": "interrupted", "live": "running", "never": "missing"}
    assert main(["sweep", "--status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "interrupted 1" in out and "running 1" in out


# ---------------------------------------------------------------------- notebooks: bug 3, bug 1, parent killed
def _fake_training_notebook(folder: Path, body: str) -> Path:
    """A notebook with 01_train's kind of parameters cell (RunConfig fields) and ``body`` as its code."""
    import nbformat
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('loss = "ce"\nepochs = 1\nrun_dir = None\ndataset = "digits_lt"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "fake_train.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
@pytest.mark.subprocess
def test_run_notebook_resolves_run_dir_against_the_cwd_and_returns_it(tmp_path, monkeypatch):
    """Bug 3: from another folder, run_dir runs/x is <cwd>/runs/x (before: <notebook folder>/runs/x), and the
    run directory is returned (before: the executed notebook's path)."""
    from ltlab.launch.notebook import run_notebook
    nb = _fake_training_notebook(tmp_path / "nbs", "import pathlib\npathlib.Path(run_dir).mkdir(parents=True)\n"
                                                   "pathlib.Path(run_dir, 'made').write_text('yes')")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path / "home"))
    got = run_notebook(nb, {"run_dir": "runs/x"}, quiet=True)
    assert got == tmp_path / "runs/x" and (got / "made").read_text() == "yes" and (got / nb.name).is_file()
    assert not (tmp_path / "nbs/runs").exists()


# the kernel's PID goes beside the sweep's folder (a file of ours inside the run directory would make it a folder
# that is not ltlab's, which the next sweep then refuses)
SLEEPER = ("import os, pathlib, time\nrd = pathlib.Path(run_dir)\nrd.mkdir(parents=True, exist_ok=True)\n"
           "(rd.parent.parent / 'pids').mkdir(exist_ok=True)\n"
           "(rd.parent.parent / 'pids' / rd.name).write_text(str(os.getpid()))\ntime.sleep(300)")


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _wait(cond, what: str, limit: float = 120.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # the conditions are a few file reads: look often, each wait ends soon after its event


@pytest.mark.subprocess
@pytest.mark.slow
def test_timed_out_sweep_run_records_it_and_is_not_running(tmp_path, monkeypatch):
    """Bug 1: a local run past its timeout records "timed out after N s" and frees its heartbeat (before: no
    result, the heartbeat left, status "running"); the next sweep runs it again instead of refusing it."""
    from ltlab import batch
    monkeypatch.setenv("LTLAB_SWEEP_HEARTBEAT_S", "1")
    nb = _fake_training_notebook(tmp_path / "nbs", SLEEPER)
    out = tmp_path / "out"
    for _ in range(2):
        df = batch.sweep(nb, base_params=BASE, out_root=out, timeout=4)
        row = df.iloc[0]
        assert row.status == "failed" and row.error == "timed out after 4 s", row.error
        run_dir = Path(row.run_dir)
        assert not (run_dir / ex.HEARTBEAT_FILE).exists() and ex.read_result(run_dir)["error"] == row.error
        assert batch.sweep_status(out).status.tolist() == ["failed"]
        pid = tmp_path / "pids" / run_dir.name
        if pid.exists():  # the kernel had started: it ended with its worker
            _wait(lambda: _dead(int(pid.read_text())), "the kernel to end", 30)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
@pytest.mark.subprocess
def test_killing_the_sweep_ends_its_workers_and_kernels(tmp_path, sig):
    """Issue 25: killing a sweep's parent (SIGTERM, or SIGKILL) ends its worker and the worker's kernel; the
    run records how it ended and is not shown running (before: both went on running)."""
    nb = _fake_training_notebook(tmp_path / "nbs", SLEEPER)
    out = tmp_path / "out"
    code = ("import json, sys\nfrom ltlab import batch\n"
            "batch.sweep(sys.argv[1], base_params=json.loads(sys.argv[2]), out_root=sys.argv[3])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LTLAB_SWEEP_HEARTBEAT_S": "1"}
    parent = subprocess.Popen([sys.executable, "-c", code, str(nb), json.dumps(BASE), str(out)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: any((tmp_path / "pids").glob("*")), "the kernel to start")
        pid = next((tmp_path / "pids").glob("*"))
        run_dir = out / pid.name
        worker = ex.heartbeat(run_dir)[0]["pid"]
        kernel = int(pid.read_text())
        parent.send_signal(sig)
        parent.wait(timeout=60)
        _wait(lambda: _dead(worker) and _dead(kernel), "the worker and kernel to end", 60)
    finally:
        parent.kill()
    _wait(lambda: ex.read_result(run_dir) is not None, "the result")
    res = ex.read_result(run_dir)  # SIGKILL: the worker's parent-death signal is SIGTERM
    assert res["error"] == "stopped by SIGTERM" and res["status"] == "incomplete"
    assert not (run_dir / ex.HEARTBEAT_FILE).exists()
    from ltlab.batch import sweep_status
    assert sweep_status(out).status.tolist() == ["interrupted"]  # the next sweep resumes it


@pytest.mark.subprocess
def test_a_run_another_process_holds_is_skipped_and_left_alone(tmp_path):
    """Issue 25: a sweep skips a run another process (another sweep) is writing, naming the holder, and writes
    nothing into it (the holder's heartbeat and result stay its own); by hand the same run is refused."""
    from ltlab.launch.execute import RESULT_FILE, execute, spec
    from ltlab.runs import RunDirLockedError

    d = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from ltlab.runs import lock_run_dir; "
                               f"lock_run_dir({str(d)!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in d.iterdir())
        one = spec([{"dataset": "digits_lt", "epochs": 1, "progress": False}], [str(d)])
        res = execute(one)
        assert res["status"] == "skipped" and f"PID {holder.pid}" in res["error"]
        assert sorted(p.name for p in d.iterdir()) == before and not (d / RESULT_FILE).exists()
        with pytest.raises(RunDirLockedError, match=f"PID {holder.pid}"):
            execute(one, errors="raise")
    finally:
        holder.kill()
        holder.wait()
    assert execute(spec([{"dataset": "digits_lt", "epochs": 1, "progress": False, "model": "convnet_small"}],
                        [str(d)]))["status"] == "done"  # the lock died with its holder


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_refused_sweep_run_says_why(tmp_path):
    """A sweep run whose folder holds a file that is not ltlab's is refused by its worker, which writes nothing
    there; the sweep's table gives the refusal (before: "worker exited with code 0:" and nothing else)."""
    from ltlab import batch
    nb = _fake_training_notebook(tmp_path / "nbs", "raise RuntimeError('must not run')")
    out = tmp_path / "out"
    df = batch.sweep(nb, base_params=BASE, out_root=out, timeout=60)
    run_dir = Path(df.iloc[0].run_dir)
    (run_dir / "notes.txt").write_text("a user's file")
    row = batch.sweep(nb, base_params=BASE, out_root=out, timeout=60).iloc[0]
    assert row.status == "failed" and "worker exited with code 1" in row.error, row.error
    assert "not ltlab's (notes.txt)" in row.error and (run_dir / "notes.txt").read_text() == "a user's file"
