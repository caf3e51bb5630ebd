"""Presets: every file loads and validates; every two-stage preset runs 1 epoch per stage on digits-LT."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ltlab.cli import main, read_preset, run_preset
from ltlab.config import REPORTED_KEYS, RunConfig
from ltlab.runs import load_run, results_table

ROOT = Path(__file__).resolve().parent.parent
PRESETS = sorted((ROOT / "notebooks" / "presets").glob("*.yaml"))
TWO_STAGE = [p for p in PRESETS if "stage_two" in yaml.safe_load(p.read_text())]
# digits-LT stand-in for any preset: tiny, on disk everywhere, with a validation split (head capped at 120)
DIGITS = {"dataset": "digits_lt", "root": None, "dataset_params": {"n_max": 120}, "imbalance_factor": 10,
          "val_per_class": 4, "model": "convnet_small", "model_params": {}, "epochs": 1, "batch_size": 256,
          "warmup_epochs": 0, "device": "cpu", "progress": False, "eval_every": 1}
DOC_ONLY = ("run_dir", "preset", "method", "reported", "posthoc")


def test_there_is_a_preset_for_every_paper_setting():
    names = {p.stem for p in PRESETS}
    for expected in ("gcl_cifar100_if100", "gcl_cifar10_if200", "gcl_places_lt", "glag_cifar100_if10", "glag_inat18",
                     "ala_imagenet_lt_x50", "gala_pn_cifar100_if100", "ghm_cwap_cifar10_if500", "ce_cifar100_if100",
                     "ldam_drw_cifar10_if100", "la_cifar100_if100", "balanced_softmax_cifar100_if50",
                     "crt_cifar100_if100", "lws_cifar10_if50", "tau_norm_cifar100_if100"):
        assert expected in names, expected
    assert len(TWO_STAGE) >= 20


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_loads_and_validates(path):
    text = path.read_text()
    assert text.startswith("# ") and ("Tab." in text or "(ours)" in text or "baselines.md" in text), \
        "a preset starts with a comment citing its source"
    stages = read_preset(path)
    assert len(stages) == (2 if path in TWO_STAGE else 1)
    for params in stages:
        second = params.get("stage", "joint") != "joint"
        config = RunConfig(**{**params, **({"init_from": "/stage/one"} if second else {})})
        assert set(config.reported) <= set(REPORTED_KEYS)
        assert config.method and config.preset == path.name
    final = stages[-1]
    assert final["reported"] or "(ours)" in text  # paper numbers beside ours, except our CPU demos
    if len(stages) == 2:
        assert stages[1]["stage"] in ("classifier", "afg") and stages[1]["dataset"] == stages[0]["dataset"]


def _signature(stages):
    return json.dumps([{k: v for k, v in s.items() if k not in DOC_ONLY} for s in stages], sort_keys=True, default=str)


def test_every_two_stage_preset_runs_one_epoch_per_stage(tmp_path, monkeypatch):
    """Each two-stage preset with digits-LT overrides; presets identical after the overrides run once."""
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path))
    done: dict[str, list[Path]] = {}
    for path in TWO_STAGE:
        sig = _signature(read_preset(path, DIGITS))
        if sig not in done:
            done[sig] = run_preset(path, DIGITS)
        s1, s2 = (load_run(d) for d in done[sig])
        assert len(s1.metrics) == 1 and len(s2.metrics) == 1, path.name
        assert s2.config["init_from"] == str(s1.dir) and s2.config["stage"] != "joint"
    table = results_table([d for dirs in done.values() for d in dirs])
    assert len(table) == 2 * len(done) and table.overall.between(0, 100).all()
    assert len(done) < len(TWO_STAGE)  # the dataset overrides make many presets coincide


def test_cli_train_runs_a_preset_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path))
    argv = ["train", "--preset", str(ROOT / "notebooks/presets/gala_pn_cifar100_if100.yaml")]
    for k, v in DIGITS.items():
        argv += ["-p", k, json.dumps(v)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "reported_overall" in out and "52.3" in out
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert json.loads((run_dir / "posthoc_pn.json").read_text())["tau"] == 1.0


def test_preset_errors_are_clear_and_write_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss: ce\nepoch: 3\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epoch'\]; valid keys: .*epochs.*stage_two"):
        read_preset(bad)
    bad.write_text("loss: ce\nstage_two: {init_from: x}\n")
    with pytest.raises(ValueError, match="stage_two may not hold.*init_from"):
        read_preset(bad)
    gcl = ROOT / "notebooks/presets/gcl_cifar100_if100.yaml"
    with pytest.raises(ValueError, match="unknown parameter 'stage_three.epochs'"):
        read_preset(gcl, {"stage_three.epochs": 1})
    assert read_preset(gcl, {"stage_two.epochs": 2})[1]["epochs"] == 2
    # data not on disk: the message says where to put it; no run directory appears
    nb = str(ROOT / "notebooks/01_train.ipynb")
    assert main(["run", nb, "--preset", str(gcl), "-p", "root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "not on disk" in err and "cifar-100-python" in err and str(tmp_path / "nowhere") in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_two_stage_preset_through_papermill(tmp_path, monkeypatch):
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path))
    dirs = run_preset(ROOT / "notebooks/presets/gcl_fashion_mnist_if100.yaml", DIGITS,
                      notebook=ROOT / "notebooks/01_train.ipynb", quiet=True)
    s1, s2 = (load_run(d) for d in dirs)
    assert (s2.dir / "01_train.ipynb").exists() and s2.config["init_from"] == str(s1.dir)
