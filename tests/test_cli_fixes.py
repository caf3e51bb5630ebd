"""The command line as the docs show it: shortened presets, float spellings, dict parameters as text, the
``download`` parameter, two-stage presets (torchrun check, resume, unfinished stage one)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ltlab.launch.cli import main, run_preset
from ltlab.config import RunConfig, parse_value
from ltlab.launch.presets import read_preset
from ltlab.runs import load_run

ROOT = Path(__file__).resolve().parent.parent
PRESETS = sorted((ROOT / "notebooks" / "presets").glob("*.yaml"))
GCL = ROOT / "notebooks/presets/gcl_cifar100_if100.yaml"
# digits-LT in place of a preset's data and model (the preset's schedule kept: warm-up, milestones)
DIGITS = {"dataset": "digits_lt", "root": None, "dataset_params": {"n_max": 60}, "imbalance_factor": 10,
          "model": "convnet_small", "model_params": {"width": 4}, "batch_size": 256, "device": "cpu",
          "progress": False, "mixup_alpha": 0.0}


def _shortened(preset: Path) -> dict:
    over = {"epochs": 2}
    if "stage_two" in yaml.safe_load(preset.read_text()):
        over["stage_two.epochs"] = 1
    return over


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_validates_shortened(preset, capsys):
    """Row 1: ``-p epochs 2 -p stage_two.epochs 1`` validates on every preset (warm-up etc. scaled, one line)."""
    stages = read_preset(preset, _shortened(preset))
    for i, stage in enumerate(stages):
        RunConfig(**{**stage, **({"init_from": "stage-one"} if i else {})})
    assert stages[0]["epochs"] == 2
    for line in capsys.readouterr().err.splitlines():
        assert line.startswith("ltlab: ") and "scaled" in line and ("-> 2:" in line or "-> 1:" in line)


def test_shortening_scales_schedule_and_keeps_explicit_values(capsys):
    s1, s2 = read_preset(GCL, {"epochs": 2, "stage_two.epochs": 1})
    assert (s1["warmup_epochs"], s1["milestones"], s2["epochs"]) == (0, [1], 1)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warmup_epochs 5 -> 0" in err and "milestones [160, 180] -> [1]" in err
    ldam = read_preset(ROOT / "notebooks/presets/ldam_drw_cifar10_if100.yaml", {"epochs": 20})[0]
    assert ldam["drw_start"] == 16 and ldam["milestones"] == [16, 18]
    # a value the user gives is kept, and an invalid one still fails
    s1 = read_preset(GCL, {"epochs": 2, "warmup_epochs": 5})[0]
    assert s1["warmup_epochs"] == 5
    with pytest.raises(ValueError, match="warmup_epochs=5: must be smaller than epochs=2"):
        RunConfig(**s1)
    assert read_preset(GCL, {"epochs": 300})[0]["milestones"] == [160, 180]  # longer: unchanged


@pytest.mark.slow
def test_shortened_two_stage_preset_trains(tmp_path, monkeypatch, capsys):
    """Row 1 end to end, and row 3: resuming a finished two-stage run trains nothing; the names are _stage1/_stage2."""
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path))
    args = ["train", "--preset", str(GCL), "-p", "epochs", "2", "-p", "stage_two.epochs", "1"]
    for k, v in DIGITS.items():
        args += ["-p", k, json.dumps(v) if not isinstance(v, str) else v]
    assert main(args) == 0
    s1, s2 = sorted((tmp_path / "runs").iterdir())
    assert s1.name.endswith("_stage1") and s2.name.endswith("_stage2")
    assert load_run(s1).config["warmup_epochs"] == 0 and len(load_run(s2).metrics) == 1
    stamp = (s1 / "metrics.csv").stat().st_mtime_ns, (s2 / "metrics.csv").stat().st_mtime_ns
    assert main(args + ["-p", "run_dir", str(s1), "-p", "resume", "True"]) == 0
    assert sorted((tmp_path / "runs").iterdir()) == [s1, s2]  # not ..._stage1_stage2
    base = str(s1)[:-len("_stage1")]  # the pair's base name finds the pair too
    assert main(args + ["-p", "run_dir", base, "-p", "resume", "True"]) == 0
    assert sorted((tmp_path / "runs").iterdir()) == [s1, s2]
    assert ((s1 / "metrics.csv").stat().st_mtime_ns, (s2 / "metrics.csv").stat().st_mtime_ns) == stamp


@pytest.mark.slow
def test_resume_two_stage_resumes_the_unfinished_stage(tmp_path, capsys):
    """Rows 3 and 9: stage one stopped by epochs_per_call -> one `ltlab: error:` line, no stage two; resume with
    -p run_dir <stage one> -p resume True finishes stage one and then trains stage two."""
    d = tmp_path / "r"
    base = ["train", "--preset", str(GCL), "-p", "epochs", "2", "-p", "stage_two.epochs", "1"]
    for k, v in DIGITS.items():
        base += ["-p", k, json.dumps(v) if not isinstance(v, str) else v]
    assert main(base + ["-p", "run_dir", str(d), "-p", "epochs_per_call", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("ltlab: error:") == 1 and "unfinished (1 of 2 epochs done)" in err and "resume True" in err
    assert "Traceback" not in err and not (tmp_path / "r_stage2").exists()
    assert main(base + ["-p", "run_dir", str(d), "-p", "resume", "True"]) == 0
    assert list(load_run(d).metrics.epoch) == [0, 1] and len(load_run(tmp_path / "r_stage2").metrics) == 1


def test_init_from_unfinished_is_refused_before_training(tmp_path, capsys):
    """Row 9: an explicit init_from that did not train all its epochs is refused up front, as one line."""
    s1 = tmp_path / "s1"
    s1.mkdir()
    (s1 / "config.json").write_text(json.dumps({"epochs": 4}))
    (s1 / "metrics.csv").write_text("epoch,acc\n0,0.5\n")
    (s1 / "checkpoint.pt").write_bytes(b"x")
    preset = tmp_path / "crt.yaml"
    preset.write_text(yaml.safe_dump({"stage": "classifier", "epochs": 1, "init_from": str(s1)}))
    assert main(["train", "--preset", str(preset), "-p", "progress", "False"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ltlab: error: init_from=") and "1 of 4 epochs done" in err and "\n" not in err


def test_afg_stage_two_refused_under_torchrun_before_stage_one(monkeypatch, tmp_path, capsys):
    """Row 2: a GLAG preset under torchrun fails before stage one trains, naming the stage."""
    import ltlab.distributed as dist
    monkeypatch.setattr(dist, "launched_distributed", lambda: True)
    monkeypatch.setattr(dist, "setup", lambda device: None)
    monkeypatch.setattr(dist, "all_gather_objects", lambda obj: [obj])
    trained = []
    monkeypatch.setattr("ltlab.engine.run", lambda params: trained.append(params))
    over = {**DIGITS, "epochs": 2, "stage_two.epochs": 1, "val_per_class": 4, "run_dir": str(tmp_path / "g"),
            "warmup_epochs": 0, "milestones": []}
    with pytest.raises(ValueError, match="stage='afg'.*cannot run under torchrun.*nothing was trained"):
        run_preset(ROOT / "notebooks/presets/glag_cifar100_if100.yaml", over)
    assert not trained


@pytest.mark.parametrize("raw,value", [("5e-4", 5e-4), ("1e-3", 1e-3), ("1E3", 1000.0), ("-2.5e+2", -250.0),
                                       (".5", 0.5), ("3", 3), ("{s: 30, tau: 1e-2}", {"s": 30, "tau": 0.01}),
                                       ("[1e-3, 2]", [0.001, 2]), ("None", None), ("abc", "abc")])
def test_parse_value_reads_every_float_spelling(raw, value):
    """Row 4: YAML 1.1 reads 5e-4 as text; -p and --grid read it as a float."""
    got = parse_value(raw)
    assert got == value and type(got) is type(value)


def test_float_fields_and_dict_text_in_runconfig():
    """Rows 4 and 7 (papermill -p / -y paths): numeric text in float fields, YAML/JSON text in dict fields."""
    c = RunConfig(weight_decay="5e-4", lr="1e-3", loss="ldam", loss_params="{s: 30, max_m: 5e-1}")
    assert c.weight_decay == 5e-4 and c.lr == 1e-3 and c.loss_params == {"s": 30, "max_m": 0.5}
    assert RunConfig(loss_params='{"tau": 1}', loss="logit_adjusted").loss_params == {"tau": 1}
    with pytest.raises(ValueError, match="loss_params=.*must be a dict"):
        RunConfig(loss_params="[1, 2]")
    from ltlab.launch.sweep.options import split_options, split_values
    assert split_values("1e-3,5e-4") == [1e-3, 5e-4] and split_options("lr=1e-3", "--grid") == {"lr": 1e-3}


def test_download_parameter_and_offline_message(tmp_path, monkeypatch, capsys):
    """Row 5: ``-p download True`` is a parameter; an offline download is one line naming dataset, URL, layout."""
    assert RunConfig(download=True).dataset_params == {"download": True}
    assert RunConfig(download=False, dataset_params={"n_max": 5}).dataset_params == {"n_max": 5}
    import torchvision.datasets.utils as tvu

    def offline(*a, **k):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    assert main(["train", "-p", "dataset", "cifar10_lt", "-p", "root", str(tmp_path), "-p", "download", "True",
                 "-p", "progress", "False"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ltlab: error:") and "\n" not in err
    assert "CIFAR-10" in err and "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in err
    assert str(tmp_path / "cifar-10-batches-py") in err and "data_batch_1" in err


def test_load_run_accepts_runs_prefix_from_any_folder(tmp_path, monkeypatch):
    """Row 6: load_run("runs/<id>") from another folder finds runs_root()/<id>; the error names both places."""
    from ltlab.runs import RunNotFoundError, resolve_run_dir
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path / "home"))
    (tmp_path / "home/runs/abc").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert resolve_run_dir("runs/abc") == tmp_path / "home/runs/abc"
    assert resolve_run_dir("abc") == tmp_path / "home/runs/abc"
    with pytest.raises(RunNotFoundError) as exc:
        resolve_run_dir("runs/nope")
    msg = str(exc.value).splitlines()[0]
    assert str(tmp_path / "elsewhere/runs/nope") in msg and str(tmp_path / "home/runs/nope") in msg
    assert "runs/runs" not in msg


def test_sweep_finds_the_notebook_from_any_folder(tmp_path, monkeypatch):
    """Row 10: 07_sweep's notebook = "01_train.ipynb" resolves under notebooks/ when not in the cwd."""
    from ltlab.batch import find_notebook
    monkeypatch.chdir(tmp_path)
    assert find_notebook("01_train.ipynb") == ROOT / "notebooks/01_train.ipynb"
    with pytest.raises(FileNotFoundError, match=r"looked in .*nope.ipynb and .*notebooks/nope.ipynb"):
        find_notebook("nope.ipynb")


def test_run_checks_parameters_against_that_notebook(capsys):
    """Row 8: `python -m ltlab run` on 03 checks 03's parameters cell (not RunConfig's); --preset needs 01."""
    nb = str(ROOT / "notebooks/03_per_class_accuracy.ipynb")
    assert main(["run", nb, "-p", "run_dirz", "[]"]) == 2
    err = capsys.readouterr().err
    assert "03_per_class_accuracy.ipynb has no parameter(s) ['run_dirz']" in err and "run_dirs" in err
    assert main(["run", nb, "--preset", str(GCL)]) == 2
    assert "--preset trains a run: use it with notebooks/01_train.ipynb" in capsys.readouterr().err


@pytest.mark.subprocess
@pytest.mark.slow
def test_failing_notebook_keeps_its_copy_and_prints_one_line(tmp_path, monkeypatch, capfd):
    """Row 8 and 13: 05 raising inside the kernel -> exit 1, one `ltlab: error:` line naming the kept executed
    notebook, then the rest of the notebook's own message indented (issue 29: the runs there are, as the
    notebook shows them); no papermill or ipykernel log lines, no traceback."""
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path))
    rc = main(["run", str(ROOT / "notebooks/05_schedules.ipynb"), "-p", "beta_run_dir", str(tmp_path / "nope")])
    assert rc == 1
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("ltlab: error: notebook 05_schedules.ipynb failed: RunNotFoundError"), err
    assert lines[1:] == ["  There are no runs under " + str(tmp_path / "runs") + ": make one with `make demo`, the "
                         "01_train notebook, or `python -m ltlab run notebooks/01_train.ipynb -p epochs 5`."], err
    assert "Traceback" not in err and "WARNING" not in err
    kept = Path(lines[0].rsplit(" is ", 1)[1])
    assert kept.is_file() and kept.parent == tmp_path / "runs/notebooks"
    assert "RunNotFoundError" in kept.read_text()


def _fake_python(tmp_path: Path, cuda: bool, bench_rc: int) -> Path:
    """A stand-in interpreter for gpu_check.sh: `-c ...` answers the CUDA probe, a script exits ``bench_rc``."""
    py = tmp_path / "fakepy"
    py.write_text(f"#!/bin/sh\nif [ \"$1\" = -c ]; then exit {0 if cuda else 1}; fi\necho ran \"$@\"\nexit {bench_rc}\n")
    py.chmod(0o755)
    return py


@pytest.mark.subprocess
@pytest.mark.parametrize("cuda,bench_rc,want", [(False, 0, 3), (True, 1, 1), (True, 0, 0)])
def test_gpu_check_exit_status(tmp_path, cuda, bench_rc, want):
    """Row 11: no CUDA -> exit 3 with one line; any failing part -> exit 1 naming it; all passing -> 0."""
    import os
    import subprocess
    env = {**os.environ, "PY": str(_fake_python(tmp_path, cuda, bench_rc)), "OUT": str(tmp_path / "logs")}
    p = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "parity"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == want, p.stderr
    if want == 3:
        assert p.stderr.strip().count("\n") == 0 and "no CUDA device" in p.stderr and "ran" not in p.stdout
    if want == 1:
        assert "gpu_check: error: 1 part(s) failed: parity_fmnist.log" in p.stderr


def test_gpu_check_uses_the_project_venv():
    text = (ROOT / "benchmarks/gpu_check.sh").read_text()
    assert ".venv/bin/python" in text and "set -u -o pipefail" in text


def _parameters_cell() -> dict:
    """The 01_train parameters cell's literals, as the notebook's globals."""
    nb = json.loads((ROOT / "notebooks/01_train.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    namespace: dict = {}
    exec("".join(cell["source"]), {}, namespace)
    return namespace


def test_one_set_of_defaults(monkeypatch, tmp_path):
    """Row 12: RunConfig, the 01_train parameters cell, `ltlab train` and `ltlab run` train the same recipe."""
    defaults, cell = RunConfig.defaults(), _parameters_cell()
    assert {k: v for k, v in cell.items() if v != defaults[k]} == {}
    assert (defaults["epochs"], defaults["batch_size"], defaults["lr"], defaults["weight_decay"],
            defaults["lr_schedule"]) == (30, 64, 0.05, 5e-4, "cosine")  # the demo's recipe (README numbers)
    assert "sampler_params" in cell
    flags = ["-p", "loss", "ldam", "-p", "weight_decay", "1e-3", "-p", "run_dir", str(tmp_path / "r")]
    seen = {}
    monkeypatch.setattr("ltlab.engine.run", lambda params: seen.setdefault("train", RunConfig(**params)) and 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["train", *flags])
    import ltlab.launch.notebook as runner

    def fake_execute(nb, out, params, kernel, quiet):
        seen["run"] = RunConfig.from_namespace({**_parameters_cell(), **params})
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "_papermill", fake_execute)
    with pytest.raises(KeyboardInterrupt):
        main(["run", str(ROOT / "notebooks/01_train.ipynb"), *flags])
    assert seen["train"].to_dict() == seen["run"].to_dict()
    assert seen["train"].weight_decay == 1e-3 and seen["train"].epochs == defaults["epochs"]


def test_per_class_accuracy_rows_are_evaluated_epochs():
    """Row 13: per_class['acc'] is (evaluated epochs, C); Run.class_accuracy() labels the rows with their epochs."""
    import numpy as np
    import pandas as pd

    from ltlab.runs import Run
    run = Run(dir=ROOT, config={}, metrics=pd.DataFrame({"epoch": [4, 9]}),
              per_class={"acc": np.array([[0.1, 0.2], [0.3, 0.4]]), "epochs": np.array([4, 9])})
    table = run.class_accuracy()
    assert list(table.index) == [4, 9] and table.shape == (2, 2) and table.loc[9, 1] == 0.4
    assert "evaluated" in Run.__doc__


def test_empty_shot_group_says_why(tmp_path, capsys):
    """Row 13: an empty few group prints `--` and why, not `nan`; the LaTeX table writes `--`."""
    import pandas as pd

    from ltlab.batch import export_tables
    summary = pd.DataFrame({"loss": ["ce"], "n": [1], "n_runs": [1], "overall_mean": [0.5], "overall_std": [0.0],
                            "few_mean": [float("nan")], "few_std": [0.0]})
    tex = export_tables(summary, tmp_path / "results")["tex"].read_text()
    assert "nan" not in tex and "--" in tex and "–" not in tex
    from ltlab.launch.cli import _print_summary
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "metrics.csv").write_text("epoch,lr,train_loss,acc,acc_many,acc_medium,acc_few,seconds\n"
                                   "0,0.1,1.0,0.5,0.6,0.4,,1.0\n")
    import numpy as np
    np.savez(d / "per_class.npz", acc=np.zeros((1, 2)), epochs=np.array([0]), class_counts=np.array([500, 50]))
    _print_summary(d)
    out = capsys.readouterr().out
    assert "few --" in out and "nan" not in out and "few: no class has < 20 training images" in out


def test_stage_two_that_cannot_follow_stage_one_is_refused_before_training(monkeypatch, tmp_path):
    """Row 2: a stage two on another model than stage one fails before stage one trains."""
    trained = []
    monkeypatch.setattr("ltlab.engine.run", lambda params: trained.append(params))
    over = {**DIGITS, "epochs": 2, "stage_two.epochs": 1, "stage_two.model": "resnet20",
            "run_dir": str(tmp_path / "g")}
    with pytest.raises(ValueError, match="stage two has model='resnet20' but stage one model='convnet_small'"):
        run_preset(GCL, over)
    assert not trained
