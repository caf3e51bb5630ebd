"""Loading a shared run directory or data folder never runs code from it (issue 19).

Every tampered file carries an object whose ``__reduce__`` would create a file. Each loader must refuse
with one message naming the file and the object, the file must never appear, and nothing may be written.
"""
from __future__ import annotations

import io
import os
import pickle
import random
import shutil
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import ltlab
from fakes import make_fake_cifar
from ltlab import posthoc
from ltlab.viz import widgets
from ltlab.data import get_dataset
from ltlab.features import load_run_model, run_features
from ltlab.launch.presets import stage_two_config
from ltlab.runs import CHECKPOINTS, convert_checkpoint, load_checkpoint, load_run, save_torch
from ltlab.safe_io import NUMPY_KEY, CifarUnpickler, UnsafeFileError, load_torch

TINY = dict(dataset="synthetic_lt", dataset_params={"num_classes": 4, "n_max": 40}, imbalance_factor=4,
            model="convnet_small", model_params={"width": 8}, epochs=2, batch_size=16, lr=0.05, device="cpu",
            progress=False, loss="gala", mixup_alpha=1.0, checkpoint_every_steps=4)  # 6 steps per epoch


class _OpenPayload:
    """Unpickling it calls ``open(target, "w")``: the file appears if the loader ran it."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


class _SystemPayload(_OpenPayload):
    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clean") / "run"
    ltlab.run({**TINY, "run_dir": str(d)})
    return d


def _tamper(path: Path, payload) -> None:
    """Put ``payload`` deep inside the (safe) checkpoint at ``path``, as an attacker would with torch.save."""
    ckpt = torch.load(path, weights_only=True)
    ckpt["history"]["metrics"][0]["acc"] = payload
    torch.save(ckpt, path)


@pytest.fixture
def hostile(trained, tmp_path) -> tuple[Path, Path]:
    """(run directory whose checkpoint.pt and checkpoint_prev.pt both carry a payload, the payload's target)."""
    d, target = tmp_path / "shared_run", tmp_path / "PWNED"
    shutil.copytree(trained, d)
    for name in CHECKPOINTS:
        _tamper(d / name, _OpenPayload(target))
    return d, target


def _refuses(action, root: Path, target: Path, match: str, exc=UnsafeFileError):
    before = _snapshot(root)
    with pytest.raises(exc, match=match) as info:
        action()
    assert not target.exists(), "the payload ran"
    assert _snapshot(root) == before, "something was written"
    return info


def _ckpt_msg(d: Path) -> str:
    return rf"{d / 'checkpoint.pt'} contains io\.open.*never unpickles"


def test_every_checkpoint_kind_loads_with_weights_only(trained):
    for name in CHECKPOINTS:  # the newest (end of training) and a mid-epoch one with its position
        raw = torch.load(trained / name, weights_only=True)
        assert set(raw) >= {"epoch", "model", "optimizer", "loss", "history", "rng", "position", NUMPY_KEY}
    ckpt = load_checkpoint(trained)
    assert isinstance(ckpt["rng"]["numpy"][1], np.ndarray) and ckpt["rng"]["numpy"][1].dtype == np.uint32
    assert isinstance(ckpt["history"]["per_class"][0], np.ndarray)
    mid = load_torch(trained / CHECKPOINTS[1])["position"]
    assert mid is not None and isinstance(mid["rng"][0]["mixup"], dict)
    assert mid["probe"] and all(isinstance(v, torch.Tensor) for v in mid["probe"].values())  # probe sums as tensors


def test_resume_refuses(hostile):
    d, target = hostile
    _refuses(lambda: ltlab.run({**TINY, "run_dir": str(d), "resume": True}), d.parent, target, _ckpt_msg(d))


def test_newest_refused_without_falling_back_to_a_clean_previous(trained, tmp_path):
    d, target = tmp_path / "r", tmp_path / "PWNED"
    shutil.copytree(trained, d)
    _tamper(d / CHECKPOINTS[0], _SystemPayload(target))
    _refuses(lambda: load_checkpoint(d), tmp_path, target, rf"{d / 'checkpoint.pt'} contains posix\.system")


def test_feature_extraction_refuses(hostile):
    d, target = hostile
    run = load_run(d)
    _refuses(lambda: run_features(run, "test", extract=True), d.parent, target, _ckpt_msg(d))
    _refuses(lambda: load_run_model(run), d.parent, target, _ckpt_msg(d))


@pytest.mark.parametrize("stage", ["classifier", "joint"])
def test_stage_two_init_from_refuses(hostile, stage):
    d, target = hostile
    cfg = stage_two_config(d, stage=stage, classifier_init="reset", epochs=1, run_dir=str(d.parent / "s2"))
    _refuses(lambda: ltlab.run(cfg), d.parent, target, _ckpt_msg(d))
    assert not (d.parent / "s2").exists()


def test_posthoc_tau_norm_refuses(hostile):
    d, target = hostile
    _refuses(lambda: posthoc.tau_normalization(d, select_on="test"), d.parent, target, _ckpt_msg(d))
    before = _snapshot(d.parent)
    evaluator, note = widgets.load_evaluator(d, features="extract")  # the panel still works on saved logits
    assert not target.exists() and _snapshot(d.parent) == before
    assert "tau-normalisation is off" in note and f"{d / 'checkpoint.pt'} contains io.open" in note


def test_backbone_weights_refuse(tmp_path):
    path, target = tmp_path / "weights.pth", tmp_path / "PWNED"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1), "x": _OpenPayload(target)}}, path)
    _refuses(lambda: ltlab.create_model("resnet10", 5, weights_path=str(path)), tmp_path, target,
             rf"{path} contains io\.open.*state_dict")


def _legacy(d: Path) -> None:
    """Rewrite d's checkpoints as ltlab wrote them before issue 19: numpy arrays pickled as numpy objects."""
    for name in CHECKPOINTS:
        torch.save(load_torch(d / name), d / name)


@pytest.mark.slow
def test_old_checkpoints_get_a_conversion_message_and_convert_when_trusted(tmp_path):
    full = ltlab.run({**TINY, "epochs": 3, "run_dir": str(tmp_path / "full")})
    d = tmp_path / "part"
    ltlab.run({**TINY, "epochs": 3, "epochs_per_call": 2, "run_dir": str(d)})
    _legacy(d)
    info = _refuses(lambda: ltlab.run({**TINY, "epochs": 3, "run_dir": str(d), "resume": True}), tmp_path,
                    tmp_path / "none", r"numpy\.ndarray")
    assert f"ltlab.runs.convert_checkpoint('{d}', trust=True)" in str(info.value)
    _refuses(lambda: convert_checkpoint(d), tmp_path, tmp_path / "none", "trust=True", ValueError)
    assert convert_checkpoint(d, trust=True) == [d / n for n in CHECKPOINTS]
    assert convert_checkpoint(d, trust=True) == []  # already safe: left alone
    resumed = ltlab.run({**TINY, "epochs": 3, "run_dir": str(d), "resume": True})
    a, b = load_checkpoint(full.dir)["model"], load_checkpoint(resumed.dir)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_numpy_and_plain_state_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    sd = torch.nn.BatchNorm1d(3).state_dict()
    obj = {"arrays": [np.arange(5, dtype=t) for t in (np.uint8, np.uint32, np.int8, np.float16, np.complex64)],
           "bool": np.array([True, False]), "zero_d": np.array(2.5), "scalars": (np.float64(1.5), np.int64(-3)),
           "strided": np.arange(12.0).reshape(3, 4)[:, ::2], "big_endian": np.arange(3, dtype=">f8"),
           "rng": {"generator": rng.bit_generator.state, "python": random.getstate(), "torch": torch.get_rng_state(),
                   "numpy": np.random.get_state()},
           "state_dict": sd, "nested": {1: [None, "s", b"b", (1, 2.0, {"x": np.zeros((0, 4))})]},
           "size": torch.Size([2])}
    save_torch(tmp_path / "c.pt", obj)
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # PyTorch's own safe loader, nothing allow-listed
    assert isinstance(raw["arrays"][1], torch.Tensor) and raw["state_dict"]._metadata == sd._metadata
    back = load_torch(tmp_path / "c.pt")
    assert NUMPY_KEY not in back

    def same(a, b):
        assert type(a) is type(b) or isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
        if isinstance(a, dict):
            assert list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        elif isinstance(a, (np.ndarray, np.generic)):
            assert np.asarray(a).dtype.newbyteorder("=") == np.asarray(b).dtype and np.array_equal(a, b)
        elif isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
        else:
            assert a == b
        return True
    same(obj, back)
    np.random.set_state(back["rng"]["numpy"])
    rng.bit_generator.state = back["rng"]["generator"]


def test_paths_and_numpy_in_the_config_save_as_plain_values_and_still_resume(tmp_path):
    cfg = {**TINY, "epochs": 3, "mixup_alpha": 0.0, "checkpoint_every_steps": None, "root": tmp_path / "data",
           "loss_params": {"lambda1": np.float64(1.0)}, "run_dir": str(tmp_path / "r")}
    ltlab.run({**cfg, "epochs_per_call": 1})
    saved = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["fingerprint"]
    assert saved["root"] == str(tmp_path / "data")
    ltlab.run({**cfg, "root": str(tmp_path / "data"), "loss_params": {"lambda1": 1.0}, "epochs_per_call": 1,
               "resume": True})  # the same config, spelled with str and float
    ltlab.run({**cfg, "resume": True, "epochs_per_call": 1})  # and as first given (Path, numpy)
    assert load_run(tmp_path / "r").metrics.epoch.tolist() == [0, 1, 2]


@pytest.mark.parametrize("bad,what", [({"a": [object()]}, r"a/0: a builtins\.object"),
                                      ({"s": np.array(["x"])}, r"s: a numpy <U1 array"),
                                      ({np.int64(1): 0}, r"key np\.int64\(1\) is a int64")])
def test_saving_anything_else_fails_before_writing(tmp_path, bad, what):
    with pytest.raises(TypeError, match=what):
        save_torch(tmp_path / "c.pt", bad)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- CIFAR
class _Recorder(CifarUnpickler):
    def __init__(self, file, path, seen: set) -> None:
        super().__init__(file, path)
        self.seen = seen

    def find_class(self, module, name):
        self.seen.add(f"{module}.{name}")
        return super().find_class(module, name)


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 with bytes written as Python 2 ``str`` opcodes, as the CIFAR python archives were made."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _py2_dumps(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")  # numpy 1 names


def _globals_in(path: Path) -> tuple[set, dict]:
    seen: set = set()
    with open(path, "rb") as f:
        d = _Recorder(f, path, seen).load()
    return seen, d


@pytest.mark.parametrize("which,per_class", [("cifar10", 3), ("cifar100", 1)])
def test_cifar_files_as_python2_wrote_them_load(tmp_path, which, per_class):
    root = make_fake_cifar(tmp_path / "fake", which, per_class, per_class)
    ref = get_dataset(f"{which}_lt", root, split="test")
    folder = next(root.iterdir())
    for f in folder.iterdir():  # our own fakes: trusted
        f.write_bytes(_py2_dumps(pickle.loads(f.read_bytes())))
    test_file = folder / ("test_batch" if which == "cifar10" else "test")
    assert b"cnumpy.core.multiarray\n_reconstruct" in test_file.read_bytes()
    seen = set().union(*(_globals_in(f)[0] for f in folder.iterdir()))
    assert seen == {"numpy.core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype"}
    got = get_dataset(f"{which}_lt", root, split="test")
    assert got.classes == ref.classes and np.array_equal(got.targets, ref.targets)
    assert torch.equal(got[0][0], ref[0][0])


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_files_repickled_by_python3_load(tmp_path, protocol):
    root = make_fake_cifar(tmp_path / "fake", "cifar10", 2, 2)
    folder = root / "cifar-10-batches-py"
    ref = get_dataset("cifar10_lt", root, split="test")
    for f in folder.iterdir():
        f.write_bytes(pickle.dumps(pickle.loads(f.read_bytes()), protocol=protocol))
    assert torch.equal(get_dataset("cifar10_lt", root, split="test")[3][0], ref[3][0])


CIFAR_CASES = [("cifar10", "data_batch_3", "train", "data"), ("cifar10", "test_batch", "test", "filenames"),
               ("cifar10", "batches.meta", "test", "label_names"), ("cifar100", "train", "train", "data"),
               ("cifar100", "test", "test", "fine_labels"), ("cifar100", "meta", "train", "fine_label_names")]


@pytest.mark.parametrize("which,fname,split,key", CIFAR_CASES)
def test_cifar_loading_refuses_a_payload(tmp_path, which, fname, split, key):
    root, target = make_fake_cifar(tmp_path / "data", which, 2, 1), tmp_path / "PWNED"
    path = next(root.iterdir()) / fname
    d = pickle.loads(path.read_bytes())
    d[key.encode()] = [1, _OpenPayload(target)] if key != "data" else _OpenPayload(target)
    path.write_bytes(pickle.dumps(d, protocol=2))
    _refuses(lambda: get_dataset(f"{which}_lt", root, split=split, imbalance_factor=2), tmp_path, target,
             rf"not a CIFAR batch file: {path} contains io\.open")


def test_training_on_a_hostile_cifar_folder_writes_nothing(tmp_path):
    root, target = make_fake_cifar(tmp_path / "data", "cifar10", 2, 1), tmp_path / "PWNED"
    path = root / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps(_SystemPayload(target), protocol=4))
    _refuses(lambda: ltlab.run(dataset="cifar10_lt", root=str(root), imbalance_factor=2, epochs=1, device="cpu",
                               progress=False, run_dir=str(tmp_path / "run")), tmp_path, target,
             rf"not a CIFAR batch file: {path} contains posix\.system")
    assert not (tmp_path / "run").exists()


def test_download_fetches_the_archive_without_unpickling_it_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    calls = []

    def fake_download(url, root, filename=None, md5=None):  # no internet: stands in for the md5-checked archive
        calls.append((url, filename, md5))
        make_fake_cifar(root, "cifar100", 1, 1)
    monkeypatch.setattr(tvd.utils, "download_and_extract_archive", fake_download)
    monkeypatch.setattr(pickle, "load", None)  # ltlab reads the files with its own unpickler only
    ds = get_dataset("cifar100_lt", tmp_path, split="test", download=True)
    assert calls == [(tvd.CIFAR100.url, tvd.CIFAR100.filename, tvd.CIFAR100.tgz_md5)] and len(ds) == 100
