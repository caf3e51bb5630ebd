"""Hostile inputs (issue 9): each gives one clear error of ours, never a traceback from deep inside torch.

Already covered elsewhere and not repeated here: corrupt/truncated files at the reader level
(tests/test_data.py: CIFAR pickles, IDX files, undecodable images, malformed list lines), loss labels
out of range and NaN loss inputs (tests/test_loss_contract.py), a truncated metrics.csv and a missing
run directory (tests/test_engine.py). Here the same damage goes through ``python -m ltlab train``, plus
the cases nothing else covers.
"""
from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fakes import make_fake_cifar, make_fake_file_list

import ltlab
from ltlab.launch.cli import main
from ltlab.runs import RunFileError, list_runs, load_run, results_table

TINY = dict(dataset="synthetic_lt", dataset_params={"num_classes": 4, "n_max": 40}, imbalance_factor=4,
            model="convnet_small", model_params={"width": 8}, epochs=2, batch_size=16, lr=0.05, device="cpu",
            progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _train_cli(tmp_path: Path, capsys, preset: dict) -> tuple[int, str]:
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    rc = main(["train", "--preset", str(path), "-p", "run_dir", str(tmp_path / "run"), "-p", "device", "cpu",
               "-p", "progress", "False", "-p", "epochs", "1"])
    err = capsys.readouterr().err
    return rc, err


def _idx(path: Path, arr: np.ndarray, cut: int = 0) -> None:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    payload = head + arr.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(payload[: len(payload) - cut])


def _corrupt_cifar(root: Path) -> tuple[dict, str]:
    make_fake_cifar(root, "cifar10", per_class_train=3, per_class_test=2)
    bad = root / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(bad.read_bytes()[:500])
    why = "corrupt or truncated CIFAR file .*data_batch_2"
    return {"dataset": "cifar10_lt", "root": str(root), "imbalance_factor": 1}, why


def _truncated_idx(root: Path) -> tuple[dict, str]:
    x, y = np.zeros((20, 28, 28)), np.repeat(np.arange(10), 2)
    root.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        _idx(root / f"{prefix}-images-idx3-ubyte.gz", x, cut=100 if prefix == "t10k" else 0)
        _idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
    return {"dataset": "fashion_mnist_lt", "root": str(root), "imbalance_factor": 1}, "truncated IDX file .*t10k-images"


def _file_list(root: Path, edit) -> dict:
    lst = make_fake_file_list(root, counts=(3, 2, 2), size=(8, 8))
    edit(lst)
    return {"dataset": "file_list", "root": str(root), "imbalance_factor": 1,
            "dataset_params": {"train_list": str(lst), "test_list": str(lst), "image_size": 8, "num_classes": 3}}


def _missing_image(root: Path) -> tuple[dict, str]:
    def edit(lst):
        (root / lst.read_text().splitlines()[4].split()[0]).unlink()
    return _file_list(root, edit), r"1 of 7 images listed in .*train.txt are missing, e.g. .*png \(line 5\)"


def _relabel(label: str):
    def case(root: Path) -> tuple[dict, str]:
        def edit(lst):
            lines = lst.read_text().splitlines()
            lines[2] = lines[2].split()[0] + f" {label}"
            lst.write_text("\n".join(lines) + "\n")
        why = "negative label" if label.startswith("-") else r"labels must lie in 0\.\.2, got 0\.\.7"
        return _file_list(root, edit), why
    return case


CASES = {
    "corrupt_cifar_pickle": _corrupt_cifar,
    "truncated_idx": _truncated_idx,
    "file_list_missing_image": _missing_image,
    "file_list_label_too_large": _relabel("7"),
    "file_list_negative_label": _relabel("-1"),
    "nan_lr": lambda root: ({**TINY, "lr": float("nan")}, r"RunConfig.lr=nan: must be a finite number"),
    "inf_loss_param": lambda root: ({**TINY, "loss": "logit_adjusted", "loss_params": {"tau": float("inf")}},
                                    r"RunConfig.loss_params=.*tau is not a finite number"),
    "nan_sampler_param": lambda root: ({**TINY, "sampler": "effective_number",
                                        "sampler_params": {"beta": float("nan")}},
                                       r"RunConfig.sampler_params=.*beta is not a finite number"),
    "nan_model_param": lambda root: ({**TINY, "model_params": {"width": float("nan")}},
                                     r"RunConfig.model_params=.*width is not a finite number"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_inputs_fail_with_one_clear_line(case, tmp_path, capsys):
    preset, why = CASES[case](tmp_path / "data")
    rc, err = _train_cli(tmp_path, capsys, preset)
    assert rc == 2, err
    assert err.startswith("ltlab: error: ") and "Traceback" not in err and err.count("\n") == 1, err
    assert re.search(why, err), err
    assert not (tmp_path / "run").exists(), "nothing is written before the inputs are checked"


# ---------------------------------------------------------------------- damaged run directories
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile") / "done"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ltlab.run({**TINY, "run_dir": str(d)})
    torch.set_num_threads(before)
    return d


def _cut(name: str, keep: float):
    def damage(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: int(len(data) * keep)])
    return damage


def _replace(name: str, data: bytes):
    def damage(d: Path) -> None:
        (d / name).write_bytes(data)
    return damage


def _as_directory(name: str):
    def damage(d: Path) -> None:
        (d / name).unlink()
        (d / name).mkdir()
    return damage


def _cut_last_row(d: Path) -> None:
    lines = (d / "metrics.csv").read_text().splitlines()
    (d / "metrics.csv").write_text("\n".join(lines[:-1] + [",".join(lines[-1].split(",")[:3]) + ","]))


DAMAGE = {
    "metrics_cut_mid_row": (_cut_last_row, "metrics.csv"),
    "metrics_cut_in_header": (_cut("metrics.csv", 0.1), "metrics.csv"),
    "metrics_empty": (_replace("metrics.csv", b""), "metrics.csv"),
    "metrics_binary": (_replace("metrics.csv", bytes(range(256)) * 4), "metrics.csv"),
    "metrics_is_a_directory": (_as_directory("metrics.csv"), "metrics.csv"),
    "per_class_truncated": (_cut("per_class.npz", 0.5), "per_class.npz"),
    "per_class_bit_flips": (lambda d: _flip(d / "per_class.npz"), "per_class.npz"),
    "probes_truncated": (_cut("probes.npz", 0.3), "probes.npz"),
    "config_truncated": (_cut("config.json", 0.5), "config.json"),
    "config_not_a_mapping": (_replace("config.json", b"[1, 2]"), "config.json"),
    "config_not_utf8": (_replace("config.json", b"\xff\xfe{"), "config.json"),
}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(40, len(data), max(len(data) // 12, 1)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_run_directory_gives_a_run_file_error(damage, finished_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(finished_run, d)
    hurt, name = DAMAGE[damage]
    hurt(d)
    with pytest.raises(RunFileError, match=str(d / name).replace(".", r"\.")):
        load_run(d)
    with pytest.raises(RunFileError, match=name.replace(".", r"\.")):
        results_table([d])
    assert list_runs(tmp_path).empty  # listing skips the damaged run


def test_header_only_metrics_has_no_summary(finished_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(finished_run, d)
    (d / "metrics.csv").write_text((d / "metrics.csv").read_text().splitlines()[0] + "\n")
    run = load_run(d)
    assert len(run.metrics) == 0
    with pytest.raises(RunFileError, match="no evaluated epoch yet"):
        run.summary()


def test_resume_rewrites_a_truncated_metrics_file(finished_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(finished_run, d)
    _cut_last_row(d)
    with pytest.raises(RunFileError, match="row 2 has missing fields"):
        load_run(d)
    ltlab.run({**TINY, "run_dir": str(d), "resume": True})  # nothing left to train: outputs rewritten
    assert list(load_run(d).metrics.epoch) == [0, 1]
