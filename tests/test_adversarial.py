"""What a user or a collaborator passes or shares never runs code, loses a run or hangs ltlab (issue 25).

Every payload here would create a marker file if it ran; each case asserts the exact outcome: the marker
never appears, nothing of a user's is overwritten, no run is lost (both writers' outcomes checked), and the
failure is one ``ltlab: error:`` line naming the field or the file. Per-test timeouts (pytest-timeout) turn
a hang into a failure. The sweep cases (timeouts, heartbeat, process group) are tested with the launch layer.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ltlab
from ltlab.config import RunConfig, check_plain, load_yaml, parse_value
from ltlab.runs import CHECKPOINTS, load_checkpoint
from ltlab.engine.divergence import divergence_threshold
from ltlab.runs import (LOCK_FILE, RunDirLockedError, RunDirRefusedError, RunFileError, atomic_write_bytes,
                        claim_run_dir, load_run, lock_run_dir, remove_stale_temps, write_json)

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(dataset="synthetic_lt", dataset_params={"num_classes": 4, "n_max": 40}, imbalance_factor=4,
            model="convnet_small", model_params={"width": 8}, epochs=2, batch_size=16, lr=0.05, device="cpu",
            progress=False)
TINY_FLAGS = ["-p", "dataset", "synthetic_lt", "-p", "dataset_params", "{num_classes: 4, n_max: 40}",
              "-p", "imbalance_factor", "4", "-p", "model_params", "{width: 8}", "-p", "batch_size", "16",
              "-p", "device", "cpu", "-p", "progress", "false"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _payload(marker: Path) -> str:
    """Text that, written unescaped into a notebook's parameters cell, closes the string and creates ``marker``."""
    return f'x"\nopen({str(marker)!r}, "w").write("pwned")\ny = "'


def _cli(args: list[str], home: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LTLAB_HOME": str(home), "LTLAB_PROGRESS": "0",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ltlab", *args], capture_output=True, text=True, env=env,
                          cwd=home, timeout=timeout)


@pytest.fixture
def cli(request, monkeypatch, capsys):
    """``cli(args, home)``: the command ``python -m ltlab ARGS`` run from ``home`` with ``LTLAB_HOME=home``, as a
    CompletedProcess. A test (or case) marked ``subprocess`` starts that interpreter (:func:`_cli`); any other runs
    :func:`ltlab.launch.cli.main` in this process, what ``ltlab/__main__.py`` exits with, with the same
    environment and folder: a check on its exit status, stdout and stderr fails for the same bug either way (an
    exception main lets escape fails the test, as it would print a traceback and exit 1)."""
    if request.node.get_closest_marker("subprocess"):
        return _cli

    def in_process(args: list[str], home: Path) -> subprocess.CompletedProcess:
        from ltlab.launch.cli import main

        monkeypatch.setenv("LTLAB_HOME", str(home))
        monkeypatch.setenv("LTLAB_PROGRESS", "0")
        monkeypatch.chdir(home)
        capsys.readouterr()
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's own refusals exit
            code = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["python", "-m", "ltlab", *args], code, out, err)
    return in_process


def _one_error_line(proc: subprocess.CompletedProcess, *needles: str, prefix: str = "ltlab: error: ") -> str:
    """The single error line of a failed command; asserts no traceback and that it names every needle."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("adv") / "run"
    ltlab.run({**TINY, "run_dir": str(d)})
    return d


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    d = tmp_path / "shared_run"
    shutil.copytree(trained, d)
    return d


# ---------------------------------------------------------------------- parameters are data
@pytest.mark.timeout(120)
def test_binary_parameter_cannot_break_out_of_the_notebook(tmp_path, cli):
    """Issue row 1: ``-p labels "!!binary ..."`` gave bytes that papermill wrote unescaped. In this process: a
    papermill kernel started by mistake fails the test (tests/conftest.py refuses the process)."""
    marker = tmp_path / "PWNED"
    raw = "!!binary " + base64.b64encode(_payload(marker).encode()).decode()
    proc = cli(["run", str(ROOT / "notebooks/03_per_class_accuracy.ipynb"), "-p", "labels", raw], tmp_path)
    _one_error_line(proc, "-p labels", "!!binary", "not allowed")
    assert proc.returncode == 2 and not marker.exists()
    assert not (tmp_path / "runs").exists()  # nothing executed, nothing kept


@pytest.mark.timeout(120)
@pytest.mark.parametrize("tag", ["!!binary", pytest.param("!!python/object/apply:os.system",
                                                          marks=pytest.mark.subprocess)])  # one through the interpreter
def test_preset_with_a_tag_is_refused_naming_the_file(tmp_path, cli, tag):
    marker = tmp_path / "PWNED"
    value = (base64.b64encode(_payload(marker).encode()).decode() if tag == "!!binary"
             else f"[touch {marker}]")
    preset = tmp_path / "shared.yaml"
    preset.write_text(f"loss: ce\nmethod: {tag} {value}\n")
    proc = cli(["run", str(ROOT / "notebooks/01_train.ipynb"), "--preset", str(preset)], tmp_path)
    _one_error_line(proc, f"preset {preset}", tag.split(":")[0], "line 2")
    assert proc.returncode == 2 and not marker.exists() and not (tmp_path / "runs").exists()


def test_only_plain_data_reaches_papermill(tmp_path):
    """The check in front of both papermill calls (``python -m ltlab run`` and a sweep's run)."""
    from ltlab.launch.execute import execute, spec
    from ltlab.launch.notebook import run_notebook

    marker = tmp_path / "PWNED"
    with pytest.raises(ValueError, match=r"^labels: a bytes value .* is not allowed; parameters are plain data"):
        run_notebook(ROOT / "notebooks/03_per_class_accuracy.ipynb", {"labels": _payload(marker).encode()})
    res = execute(spec([{**TINY, "method": _payload(marker).encode()}], [str(tmp_path / "r")],
                       notebook=ROOT / "notebooks/01_train.ipynb"))
    assert res["status"] == "failed" and "method: a bytes value" in res["error"]
    assert not marker.exists() and not (tmp_path / "r" / "01_train.ipynb").exists()
    for bad, where in (({"a": {1, 2}}, "a"), ({"a": [1, object()]}, "a[1]"), ({"a": {3: 1}}, "a"),
                       ({"a": (1, b"x")}, "a[1]")):
        with pytest.raises(ValueError, match=rf"^{re.escape(where)}: "):
            check_plain(bad)
    assert check_plain({"a": (1, np.float64(2.5)), "b": [None, True, "x", {"c": np.int64(3)}]}) == {
        "a": [1, 2.5], "b": [None, True, "x", {"c": 3}]}


@pytest.mark.parametrize("field,value,needle", [
    ("method", b"GCL", "RunConfig.method: a bytes value"),
    ("method", 3, "RunConfig.method=3: must be text or None, not int"),
    ("run_id", 10, "RunConfig.run_id=10: must be text or None, not int (quote it"),
    ("run_id", "../../x", "RunConfig.run_id='../../x': must be one folder name"),
    ("run_id", "a/b", "RunConfig.run_id='a/b': must be one folder name"),
    ("run_dir", "../elsewhere", "RunConfig.run_dir='../elsewhere': a relative path may not climb out"),
    ("preset", ["x"], "RunConfig.preset=['x']: must be text or None"),
    ("dataset", None, "RunConfig.dataset=None: must be text"),
    ("epochs", 99999999999999999999999, "RunConfig.epochs: the integer 99999999999999999999999 is too large"),
    ("epochs", 10 ** 6, "RunConfig.epochs=1000000: must be at most 100000"),
    ("batch_size", 1 << 30, "RunConfig.batch_size=1073741824: must be at most"),
    ("imbalance_factor", 1e9, "RunConfig.imbalance_factor=1000000000.0: must be at most"),
    ("seed", 2 ** 40, "RunConfig.seed=1099511627776: must be at most 4294967295 (numpy and torch seeds"),
    ("lr", "abc", "RunConfig.lr='abc': must be a number, not str"),
    ("lr", 0, "RunConfig.lr=0: must be > 0"),
    ("augment", "yes", "RunConfig.augment='yes': must be True or False"),
    ("milestones", "10", "RunConfig.milestones='10': must be a list"),
    ("dataset_params", {"root": "x"}, "RunConfig.dataset_params={'root': 'x'}: ['root'] are RunConfig fields"),
])
def test_every_field_is_type_checked_and_bounded(field, value, needle):
    with pytest.raises(ValueError) as info:
        RunConfig(**{field: value})
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("params,needle", [
    ({"loss": "ldam", "loss_params": {"s": "abc"}}, "s='abc' must be a number (the default of loss 'ldam' is 30"),
    ({"loss": "ldam", "loss_params": {"s": [1, 2]}}, "s=[1, 2] must be a number"),
    ({"loss": "ldam", "loss_params": "{s: [1, 2]}"}, "s=[1, 2] must be a number"),
    ({"loss": "focal", "loss_params": {"form": 3}}, "form=3 must be text"),
    ({"loss": "ldam", "loss_params": {"drw_start": -1}}, "drw_start=-1 must be an epoch"),
])
def test_loss_params_values_are_type_checked(params, needle):
    with pytest.raises(ValueError, match="RunConfig.loss_params=") as info:
        RunConfig(**params)
    assert needle in str(info.value)


@pytest.mark.parametrize("raw,field,value", [
    ("010", None, 10), ("0o10", None, 8), ("0x10", None, 16), ("no", None, "no"), ("on", None, "on"),
    ("yes", None, "yes"), ("12:30", None, "12:30"), ("'1e-3'", None, "1e-3"), ("1e-3", None, 1e-3),
    ("5e-4", None, 5e-4), ("1E3", None, 1000.0), (".5", None, 0.5), ("true", None, True), ("False", None, False),
    ("null", None, None), ("~", None, None), ("None", None, None), ("2024-01-01", None, "2024-01-01"),
    (".inf", None, float("inf")), ("[010, no]", None, [10, "no"]), ("{a: 010}", None, {"a": 10}),
    ("010", "run_id", "010"), ("'010'", "run_id", "010"), ("true", "method", "true"), ("1e-3", "method", "1e-3"),
    ("null", "run_id", None), ("010", "stage_two.run_id", "010"), ("3", "epochs", 3),
])
def test_command_line_values_follow_yaml_1_2(raw, field, value):
    got = parse_value(raw, field)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text,needle", [
    ("a: &x [1]\nb: *x\n", "line 2, column 4: the alias *x is not allowed"),
    ("a: 1\nb: 2\na: 3\n", "line 3, column 1: duplicate key 'a' (first at line 1)"),
    ("a: !!set {x}\n", "the tag !!set is not allowed"),
    ("a: !!timestamp 2024-01-01\n", "the tag !!timestamp is not allowed"),
    ("a: !!python/name:os.system\n", "the tag !!python/name:os.system is not allowed"),
    ("a: [1, 2\n", "invalid YAML"),
    ("? [1, 2]\n: x\n", "a list cannot be a key"),
])
def test_yaml_refusals_name_the_place(text, needle):
    with pytest.raises(ValueError) as info:
        load_yaml(text, "preset shared.yaml")
    assert str(info.value).startswith("preset shared.yaml: ") and needle in str(info.value)


@pytest.mark.timeout(30)
def test_billion_laughs_preset_is_refused_at_once(tmp_path):
    from ltlab.launch.presets import read_preset

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\nloss_params: {s: *a9}\n")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=rf"^preset {path}: invalid YAML at line 2, column \d+: the alias \*a0"):
        read_preset(path)
    assert time.perf_counter() - t0 < 5
    big = [[["x"] * 100] * 100] * 100  # the same through the Python API: bounded, not walked for minutes
    with pytest.raises(ValueError, match=r"RunConfig.loss_params: more than 100000 values"):
        RunConfig(loss="ldam", loss_params={"s": big})


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "folder"])
def test_preset_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    from ltlab.launch.presets import read_preset

    path = tmp_path / "p.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(ValueError, match=rf"^preset {path} is not a regular file"):
        read_preset(path)


def _case(flags: list[str], needles: list[str], *marks) -> pytest.param:
    return pytest.param(flags, needles, marks=marks, id=" ".join(flags)[:40])


# one refusal of each kind goes through the interpreter (RunConfig's checks, the YAML reader of -p values);
# the rest run main() in this process (the `cli` fixture)
CLI_CASES = [
    _case(["-p", "epochs", "99999999999999999999999"], ["-p epochs: the integer 99999999999999999999999 is too large"]),
    _case(["-p", "epochs", "1000000"], ["RunConfig.epochs=1000000: must be at most 100000"], pytest.mark.subprocess),
    _case(["-p", "loss_params", "{s: [1, 2"], ["-p loss_params: invalid YAML at line 1"]),
    _case(["-p", "loss", "ldam", "-p", "loss_params", "{s: [1, 2]}"], ["RunConfig.loss_params=", "s=[1, 2] must be"]),
    _case(["-p", "loss", "ldam", "-p", "loss_params", "{s: abc}"], ["s='abc' must be a number"]),
    _case(["-p", "lr", "abc"], ["RunConfig.lr='abc': must be a number"]),
    _case(["-p", "epochs", "a"], ["RunConfig.epochs='a': must be an integer"]),
    _case(["-p", "seed", "99999999999999999999"], ["-p seed: the integer 99999999999999999999 is too large"]),
    _case(["-p", "run_id", "../../x"], ["RunConfig.run_id='../../x': must be one folder name"]),
    _case(["-p", "method", "!!python/object/apply:os.system [touch PWNED]"], ["-p method", "!!python/object"],
          pytest.mark.subprocess),
    _case(["-p", "labels", "x"], ["unknown parameter(s) ['labels']"]),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("flags,needles", CLI_CASES)
def test_cli_refusals_are_one_line(tmp_path, cli, flags, needles):
    proc = cli(["train", *TINY_FLAGS, *flags], tmp_path)
    _one_error_line(proc, *needles)
    assert proc.returncode == 2 and not (tmp_path / "runs").exists() and not (tmp_path / "PWNED").exists()
    assert not (tmp_path.parent / "x").exists()


@pytest.mark.timeout(300)
def test_preset_and_sweep_yaml_errors_are_one_line(tmp_path, cli):
    """In this process (the `cli` fixture): a sweep that started a worker by mistake fails the test."""
    preset = tmp_path / "dup.yaml"
    preset.write_text("loss: ce\nepochs: 3\nloss: focal\n")
    _one_error_line(cli(["train", "--preset", str(preset)], tmp_path),
                    f"preset {preset}: invalid YAML at line 3", "duplicate key 'loss'")
    ok = tmp_path / "ok.yaml"
    ok.write_text("loss: ce\n")
    proc = cli(["sweep", str(ok), "--grid", "lr=[1", "--out-root", str(tmp_path / "sw")], tmp_path)
    _one_error_line(proc, "invalid YAML", prefix="ltlab: error: ")
    proc = cli(["sweep", str(ok), "-p", "epochs", "!!binary eA==", "--out-root", str(tmp_path / "sw")], tmp_path)
    _one_error_line(proc, "-p epochs", "!!binary", prefix="ltlab: error: ")
    preset.write_text("loss: ce\nrun_dir: ../../elsewhere\n")
    _one_error_line(cli(["train", "--preset", str(preset)], tmp_path), "run_dir='../../elsewhere'", "climb out")
    assert not (tmp_path / "sw").exists() and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------- one writer per run directory
@pytest.mark.timeout(300)
@pytest.mark.subprocess
def test_a_second_writer_is_refused_with_the_holders_host_and_pid(tmp_path):
    d = tmp_path / "run"
    with lock_run_dir(d):
        proc = _cli(["train", *TINY_FLAGS, "-p", "epochs", "1", "-p", "run_dir", str(d)], tmp_path)
        _one_error_line(proc, f"{d} is being written by another process (host {socket.gethostname()}, "
                              f"PID {os.getpid()}, since ")
        assert proc.returncode == 2 and sorted(p.name for p in d.iterdir()) == [LOCK_FILE]
        with pytest.raises(RunDirLockedError):  # what a sweep catches to skip a busy run
            _lock_in_child(d)
    assert issubclass(RunDirLockedError, RunFileError)
    ltlab.run({**TINY, "epochs": 1, "run_dir": str(d)})  # released: the run goes ahead
    assert load_run(d).metrics.epoch.tolist() == [0]


def _lock_in_child(d: Path) -> None:
    """Try the lock from another process (a second claim by this process shares its lock)."""
    code = ("import sys; from ltlab.runs import lock_run_dir, RunDirLockedError\n"
            f"try:\n    lock_run_dir({str(d)!r})\nexcept RunDirLockedError as e:\n    print(e); sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode == 3:
        raise RunDirLockedError(proc.stdout.strip())
    assert proc.returncode == 0, proc.stderr


@pytest.mark.timeout(120)
@pytest.mark.subprocess
def test_the_lock_dies_with_its_holder(tmp_path):
    d = tmp_path / "run"
    code = (f"from ltlab.runs import lock_run_dir; import time; lock_run_dir({str(d)!r}); "
            "print('held', flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(RunDirLockedError, match=rf"PID {child.pid},"):
            _lock_in_child(d)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    _lock_in_child(d)  # SIGKILL left the lock file, not the lock


@pytest.mark.timeout(600)
@pytest.mark.subprocess
def test_two_trainings_into_one_run_dir_lose_no_run(tmp_path):
    """Issue row 2: both exited 0 and one run existed nowhere. Now exactly one trains; the other is refused
    (held by the first, or already holding its run) and says so; the directory holds the winner's whole run."""
    d = tmp_path / "run"
    cmds = [["train", *TINY_FLAGS, "-p", "epochs", "3", "-p", "seed", str(seed), "-p", "run_dir", str(d)]
            for seed in (1, 2)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LTLAB_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "ltlab", *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=tmp_path) for c in cmds]
    outs = [p.communicate(timeout=540) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    err = outs[loser][1]
    assert "Traceback" not in err and err.count("ltlab: error: ") == 1
    # the holder named (host, PID), or, when the loser came between the holder's lock and its writing them,
    # "a process that has not yet written its host and PID" (seen once on an idle box)
    assert (re.search(rf"{re.escape(str(d))} is being written by another process \((host \S+, PID \d+|a process "
                      r"that has not yet written its host and PID)", err) or f"{d} already holds a run" in err), err
    assert f"run directory: {d}" in outs[winner][0]
    run = load_run(d)
    assert run.config["seed"] == winner + 1 and run.metrics.epoch.tolist() == [0, 1, 2]
    assert load_checkpoint(d)["epoch"] == 2


@pytest.mark.timeout(300)
def test_a_folder_that_is_not_a_run_is_never_written(tmp_path, cli):
    """Issue row 3: a user's config.json was overwritten and .notes.tmp deleted."""
    d = tmp_path / "mine"
    d.mkdir()
    (d / "config.json").write_text('{"my": "settings"}')
    (d / ".notes.tmp").write_text("draft")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    proc = cli(["train", *TINY_FLAGS, "-p", "epochs", "1", "-p", "run_dir", str(d)], tmp_path)
    _one_error_line(proc, f"run_dir {d} holds files that are not ltlab's (.notes.tmp, config.json)",
                    "choose another run_dir")
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    with pytest.raises(RunDirRefusedError):
        claim_run_dir(d)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_only_ltlab_temp_files_are_removed(tmp_path, trained):
    d = tmp_path / "r"
    shutil.copytree(trained, d)
    ours = [".ltlab-metrics.csv.k2j3h4.tmp", ".ltlab-checkpoint_prev.pt.link.tmp", ".metrics.csv.ab12cd34.tmp",
            ".checkpoint_prev.pt.link.tmp"]
    for name in ours:
        (d / name).write_bytes(b"half")
    gone = {p.name for p in remove_stale_temps(d)}
    assert gone == set(ours)
    (d / ".notes.tmp").write_text("draft")
    assert remove_stale_temps(d) == [] and (d / ".notes.tmp").read_text() == "draft"
    with pytest.raises(RunDirRefusedError, match=r"not ltlab's \(\.notes\.tmp\)"):
        claim_run_dir(d, resume=True)


def test_run_files_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        p = write_json(tmp_path / "a.json", {"x": 1})
        q = atomic_write_bytes(tmp_path / "b.pt", b"x", keep_previous=tmp_path / "b_prev.pt")
        atomic_write_bytes(q, b"y", keep_previous=tmp_path / "b_prev.pt")
        os.umask(0o022)
        r = write_json(tmp_path / "c.json", {"x": 1})
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in (p, q, tmp_path / "b_prev.pt")] == [0o640] * 3
    assert r.stat().st_mode & 0o777 == 0o644
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_trained_run_directory_is_readable_by_collaborators(trained):
    """Every file of a run directory gets 0666 less the umask (mkstemp alone made them 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    assert {p.name: p.stat().st_mode & 0o777 for p in trained.iterdir()} == {
        p.name: 0o666 & ~mask for p in trained.iterdir()}


# ---------------------------------------------------------------------- loading never hangs or trusts
def _per_class(d: Path, **changes) -> None:
    arrays = dict(np.load(d / "per_class.npz"))
    arrays.update(changes)
    np.savez(d / "per_class.npz", **{k: v for k, v in arrays.items() if v is not None})


def _npz_claiming(path: Path, arrays: dict, key: str, shape: tuple, dtype: str = "<f8") -> None:
    """``arrays`` as an .npz whose member ``key`` has a .npy header claiming ``shape`` followed by 1 MB of zeros
    (deflated to about 1 kB): what a 2 MB file holding a 2 GB array looks like until the data is read."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in arrays.items():
            if k != key:
                with zf.open(f"{k}.npy", "w") as m:
                    np.lib.format.write_array(m, np.asarray(v))
        with zf.open(f"{key}.npy", "w", force_zip64=True) as m:
            np.lib.format.write_array_header_2_0(m, {"descr": dtype, "fortran_order": False, "shape": shape})
            m.write(bytes(1 << 20))


@pytest.mark.timeout(60)
def test_a_small_npz_claiming_a_huge_array_is_refused_before_reading(run_copy):
    arrays = dict(np.load(run_copy / "per_class.npz"))
    _npz_claiming(run_copy / "per_class.npz", arrays, "acc", (2, 1 << 27))  # 2 GiB claimed
    assert (run_copy / "per_class.npz").stat().st_size < 100_000
    with pytest.raises(RunFileError, match=r"per_class\.npz: 'acc' must be \(evaluations <= 2, 4\) floats, got "
                                           r"shape \(2, 134217728\)"):
        load_run(run_copy)
    _npz_claiming(run_copy / "per_class.npz", arrays, "test_logits", (1 << 40, 4), "<f4")  # past any limit
    with pytest.raises(RunFileError, match=r"per_class\.npz: 'test_logits' claims shape \(1099511627776, 4\)"):
        load_run(run_copy)
    np.savez(run_copy / "per_class.npz", **arrays)
    _npz_claiming(run_copy / "probes.npz", dict(np.load(run_copy / "probes.npz")), "grad_pos", (1 << 28,), "|i1")
    with pytest.raises(RunFileError, match=r"probes\.npz: 'grad_pos' has shape \(268435456,\), more than a run"):
        load_run(run_copy)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["metrics.csv", "per_class.npz", "config.json", "probes.npz"])
@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_a_fifo_or_device_in_a_run_directory_never_hangs(run_copy, name, kind):
    (run_copy / name).unlink()
    if kind == "fifo":
        os.mkfifo(run_copy / name)
    else:
        (run_copy / name).symlink_to("/dev/zero")
    with pytest.raises(RunFileError, match=rf"{run_copy / name} is not a regular file"):
        load_run(run_copy)


@pytest.mark.timeout(60)
def test_a_fifo_checkpoint_never_hangs(run_copy):
    for name in CHECKPOINTS:
        (run_copy / name).unlink()
        os.mkfifo(run_copy / name)
    with pytest.raises(ValueError, match=r"no readable checkpoint: .*checkpoint\.pt: ValueError: .* is not a regular"):
        load_checkpoint(run_copy)


@pytest.mark.parametrize("change,needle", [
    ({"acc": None}, "'acc' is missing"),
    ({"class_counts": None}, "'class_counts' is missing"),
    ({"acc": np.zeros((1, 2, 4))}, "'acc' must be (evaluations <= 2, 4) floats, got shape (1, 2, 4)"),
    ({"acc": np.zeros((2, 3))}, "'acc' must be (evaluations <= 2, 4) floats, got shape (2, 3)"),
    ({"acc": np.full((2, 4), np.inf)}, "'acc' holds values outside [0, 1] or NaN/inf"),
    ({"acc": np.full((2, 4), 1.5)}, "'acc' holds values outside [0, 1]"),
    ({"class_counts": np.array(["40", "20", "10", "10"])}, "'class_counts' must be 4 integers, got shape (4,) of <U2"),
    ({"class_counts": np.array([40, -1, 10, 10])}, "'class_counts' holds a negative count"),
    ({"epochs": np.array([-1, 1])}, "'epochs' must be increasing 0-based epochs below 2"),
    ({"epochs": np.array([1, 1])}, "'epochs' must be increasing"),
    ({"epochs": np.array([0, 5])}, "'epochs' must be increasing 0-based epochs below 2"),
    ({"test_logits": np.full((80, 4), np.nan, np.float32)}, "'test_logits' holds NaN/inf"),  # 80 test images
    ({"test_logits": np.zeros((80, 5), np.float32)}, "'test_logits' must be (test images, 4) floats"),
    ({"test_labels": np.full(80, 7)}, "'test_labels' holds labels outside 0..3"),
    ({"test_labels": np.zeros(3, np.int64)}, "'test_labels' must be 80 integer labels"),
])
def test_per_class_npz_is_validated_naming_file_and_key(run_copy, change, needle):
    _per_class(run_copy, **change)
    with pytest.raises(RunFileError) as info:  # shapes are checked as the run loads, values as an array is first read
        run = load_run(run_copy)
        for key in run.per_class:
            run.per_class[key]
    assert str(info.value).startswith(f"{run_copy / 'per_class.npz'}: ") and needle in str(info.value)


@pytest.mark.parametrize("edit,needle", [
    (lambda df: df.assign(acc=np.inf), "column 'acc' line 2 is not an accuracy in [0, 1]"),
    (lambda df: df.assign(acc_few=-0.5), "column 'acc_few' line 2 is not an accuracy"),
    (lambda df: df.assign(epoch=[-1, 1]), "column 'epoch' line 2 is negative"),
    (lambda df: pd.concat([df, df.iloc[[-1]]]), "column 'epoch' line 4 does not increase"),
    (lambda df: df.assign(lr=np.inf), "column 'lr' line 2 is not a finite number >= 0"),
    (lambda df: df.assign(train_loss=[1.0, np.inf]), "column 'train_loss' line 3 is not a finite number"),
])
def test_metrics_csv_is_validated_naming_column_and_line(run_copy, edit, needle):
    path = run_copy / "metrics.csv"
    edit(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(RunFileError) as info:
        load_run(run_copy)
    assert str(info.value).startswith(f"{path}: ") and needle in str(info.value)


def test_probes_npz_is_validated(run_copy):
    probes = dict(np.load(run_copy / "probes.npz"))
    np.savez(run_copy / "probes.npz", **{**probes, "grad_pos": np.array(["a", "b"])})
    with pytest.raises(RunFileError, match=r"probes\.npz: 'grad_pos' has dtype <U1 and shape \(2,\)"):
        load_run(run_copy)
    np.savez(run_copy / "probes.npz", **{**probes, "epochs": np.array([1, 0])})
    with pytest.raises(RunFileError, match=r"probes\.npz: 'epochs' must be increasing"):
        load_run(run_copy).probes["epochs"]  # values are checked as an array is first read (lazy, issue 23)


def _tamper_checkpoint(d: Path, edit) -> None:
    """Edit checkpoint.pt as a collaborator could: read and rewritten with ltlab's own (safe) torch I/O."""
    from ltlab.runs import save_torch
    from ltlab.safe_io import load_torch

    ckpt = load_torch(d / "checkpoint.pt")
    edit(ckpt)
    save_torch(d / "checkpoint.pt", ckpt)


@pytest.mark.timeout(300)
def test_resume_with_wrong_weight_shapes_is_one_line(run_copy, tmp_path, cli):
    def wrong_shape(ckpt):
        key = next(k for k, v in ckpt["model"].items() if v.ndim == 4)
        ckpt["model"][key] = torch.zeros(3, 3, 3, 3)
    _tamper_checkpoint(run_copy, wrong_shape)
    with pytest.raises(ValueError, match=rf"^cannot resume from {run_copy / 'checkpoint.pt'}: its model weights do "
                                         r"not fit this model \(Error\(s\) in loading state_dict"):
        ltlab.run({**TINY, "run_dir": str(run_copy), "resume": True})
    # the command line skips a finished run given resume (its checkpoint is not read): make it look unfinished
    metrics = run_copy / "metrics.csv"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:2]))
    proc = cli(["train", *TINY_FLAGS, "-p", "epochs", "2", "-p", "loss", "ce", "-p", "lr", "0.05", "-p", "run_dir",
                 str(run_copy), "-p", "resume", "true"], tmp_path)
    _one_error_line(proc, "cannot resume from", "its model weights do not fit this model")


@pytest.mark.parametrize("edit", [
    lambda c: c["history"].__setitem__("metrics", "abc"),
    lambda c: c["history"]["metrics"][0].__setitem__("acc", "x"),
    lambda c: c["history"].__setitem__("eval_epochs", ["0", "1"]),
    lambda c: c["history"].__setitem__("test_logits", [1, 2]),
    lambda c: c.__setitem__("epoch", "one"),
])
def test_resume_with_a_history_of_wrong_types_is_one_message(run_copy, edit):
    _tamper_checkpoint(run_copy, edit)
    with pytest.raises(ValueError, match=rf"^cannot resume from {run_copy / 'checkpoint.pt'}: its optimiser, loss "
                                         r"state or history is not what ltlab writes .*corrupt or was edited"):
        ltlab.run({**TINY, "run_dir": str(run_copy), "resume": True})


def test_features_from_an_older_checkpoint_say_so(run_copy):
    from ltlab.features import run_features

    (run_copy / "checkpoint.pt").write_bytes((run_copy / "checkpoint.pt").read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match=r"checkpoint\.pt is unreadable .*; using checkpoint_prev\.pt \(end of epoch "
                                         r"0\) instead; metrics\.csv ends at epoch 1, so a model .* is 1 epoch\(s\) "
                                         r"older than the metrics"):
        feats = run_features(run_copy, "test", extract=True)
    assert feats["features"].shape[0] == len(load_run(run_copy).per_class["test_labels"])


def test_a_checkpoint_torch_refuses_is_reported_not_replaced(run_copy, tmp_path):
    """A newest checkpoint the weights_only loader refuses for what it holds is never replaced by the previous one
    (test_untrusted.py covers the pickled-global payloads; this is a refusal with no global named)."""
    import pickle

    import ltlab.safe_io as safe_io

    def refuse(*a, **k):
        raise pickle.UnpicklingError("Weights only load failed. ... WeightsUnpickler error: \n\nUnsupported class "
                                     "evil.Thing\n\nCheck the documentation")
    before = {p.name: p.stat().st_mtime_ns for p in run_copy.iterdir()}
    orig = torch.load
    try:
        torch.load = refuse
        safe_io.torch.load = refuse
        with pytest.raises(safe_io.UnsafeFileError, match=r"checkpoint\.pt was refused by the weights_only loader "
                                                          r"\(Unsupported class evil\.Thing\)"):
            load_checkpoint(run_copy)
    finally:
        torch.load = orig
        safe_io.torch.load = orig
    assert {p.name: p.stat().st_mtime_ns for p in run_copy.iterdir()} == before


def test_run_features_with_root_in_dataset_params_is_one_clear_error(run_copy):
    from ltlab.features import run_features

    config = json.loads((run_copy / "config.json").read_text())
    config["dataset_params"] = {**config["dataset_params"], "root": "/data"}
    (run_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunFileError, match=rf"^{run_copy / 'config.json'}: dataset_params holds \['root'\], which "
                                           r"are fields of their own"):
        run_features(run_copy, "test", extract=True)


# ---------------------------------------------------------------------- divergence
@pytest.mark.timeout(300)
@pytest.mark.subprocess
def test_divergent_training_stops_naming_epoch_and_loss_keeping_the_last_good_checkpoint(tmp_path):
    """Issue row: ``-p lr 100`` trained to a loss of 1e9 and exited 0."""
    d = tmp_path / "run"
    proc = _cli(["train", *TINY_FLAGS, "-p", "epochs", "4", "-p", "lr", "100", "-p", "run_dir", str(d)], tmp_path)
    line = _one_error_line(proc, "training diverged at epoch", "the mean training loss is",
                           f"above {divergence_threshold(4):.4g} (1000 x log 4", "the last good checkpoint is")
    assert proc.returncode == 1
    epoch = int(line.split("training diverged at epoch ")[1].split(":")[0])
    assert epoch < 3  # stopped, not trained to the end
    if epoch > 0:  # the checkpoint of the last good epoch is kept and loads
        assert load_checkpoint(d)["epoch"] == epoch - 1
        assert load_run(d).metrics.epoch.max() == epoch - 1
    else:
        assert not (d / "checkpoint.pt").exists()
