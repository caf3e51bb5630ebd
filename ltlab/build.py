"""What a run is built from: its device, its datasets and, once trained, its model.

Each function takes a :class:`~ltlab.config.RunConfig` or the parameter dict of a run's ``config.json``,
so the engine (building a run), the stages (building a second stage on a finished run) and the analysis
code (features, post-hoc, widgets: reading a finished run) share one implementation.
:func:`rebuild_model` is the one way back from a run directory to its trained model.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from .data import get_dataset
from .models import create_model
from .runs import Run, RunFileError, as_run, load_checkpoint
from .safe_io import UnsafeFileError

if TYPE_CHECKING:
    from .config import RunConfig
    from .data import LTDataset
    from .models import HeadedModel


def _params(config: RunConfig | Mapping[str, Any]) -> Mapping[str, Any]:
    return config if isinstance(config, Mapping) else vars(config)


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when visible, else CPU; ``"cuda"`` without a visible GPU is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("RunConfig.device='cuda' but no CUDA device is visible; use device='auto' or 'cpu'")
    return torch.device(name)


def _split_kwargs(p: Mapping[str, Any]) -> dict[str, Any]:
    kw = dict(imbalance_factor=p.get("imbalance_factor", 100.0), seed=p.get("data_seed", 0),
              **(p.get("dataset_params") or {}))
    if p.get("imbalance_profile", "exp") != "exp":
        kw["profile"] = p["imbalance_profile"]
    return kw


def load_datasets(config: RunConfig | Mapping[str, Any]) -> tuple[LTDataset, LTDataset]:
    """(long-tailed training split, balanced test split) of a config; file lists are long-tailed already."""
    p = _params(config)
    kw = _split_kwargs(p)
    if p["dataset"] == "file_list":
        kw["imbalance_factor"] = None  # ImageNet-LT, Places-LT, iNat: no subsampling
    train = get_dataset(p["dataset"], p.get("root"), split="train", **kw)
    test = get_dataset(p["dataset"], p.get("root"), split="test",
                       **{k: v for k, v in kw.items() if k not in ("imbalance_factor", "profile", "n_max")})
    for ds in (train, test):
        check_image_files(ds)
    return train, test


def load_val_dataset(config: RunConfig | Mapping[str, Any], val_per_class: int | None = None) -> LTDataset | None:
    """The balanced validation split of ``config`` (``val_per_class`` > 0, or the argument when given), or None.

    In-memory sets: ``val_per_class`` images per class from training images the long-tailed split does
    not use (:func:`ltlab.data.get_dataset`, split="val"); file_list sets: their ``val_list``.
    """
    p = _params(config)
    k = p.get("val_per_class", 0) if val_per_class is None else val_per_class
    if k < 1:
        return None
    if p["dataset"] == "file_list":
        val = get_dataset("file_list", p.get("root"), split="val", **(p.get("dataset_params") or {}))
        check_image_files(val)
        return val
    return get_dataset(p["dataset"], p.get("root"), split="val", val_per_class=k, **_split_kwargs(p))


def check_data(config: RunConfig, *, train: bool = True, note: str = "") -> None:
    """Load the data ``config`` trains and validates on (the training/test splits only when ``train``), so a
    missing data set stops a command before anything runs: FileNotFoundError "data for dataset=... is not on
    disk<note>: <what is missing and where to put it>"."""
    try:
        if train:
            load_datasets(config)
        load_val_dataset(config)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"data for dataset={config.dataset!r} is not on disk{note}: {exc}") from exc


def check_image_files(ds) -> None:
    """Fail before training when a lazy (file-list) split names images that are not on disk.

    One ``stat`` per entry (seconds for iNaturalist's 438k images on a local disk) instead of a
    FileNotFoundError hours into the first epoch.
    """
    if getattr(ds, "paths", None) is None:
        return
    missing = [i for i, p in enumerate(ds.paths) if not os.path.isfile(p)]
    if missing:
        shown = "; ".join(f"{ds.paths[i]} (line {int(ds.lines[i])})" for i in missing[:5])
        raise FileNotFoundError(f"{len(missing)} of {len(ds.paths)} images listed in {ds.list_file} are missing, "
                                f"e.g. {shown}; fix root= or the list file")


def rebuild_model(run: Run | str | os.PathLike, device: str | torch.device = "cpu") -> HeadedModel:
    """The trained model of a run directory, in eval mode on ``device``.

    ``create_model(config.model, head=<the head kind saved with the weights>)`` with the run's classes,
    input channels and ``model_params`` (``weights_path`` dropped: the checkpoint replaces it), then
    ``checkpoint.pt``'s weights. A second stage's head (LWS, GLAG's Tukey head) is rebuilt from its own
    checkpoint; ``init_from`` is not followed. The global torch RNG is left untouched.
    """
    r = as_run(run)
    try:
        ckpt = load_checkpoint(r.dir)
    except UnsafeFileError:
        raise  # refused before anything was built: the message says why
    except (FileNotFoundError, ValueError) as exc:
        raise RunFileError(f"{r.dir}: no usable checkpoint.pt ({exc}); the model needs the trained weights, "
                           "which ltlab.run / the 01_train notebook write") from exc
    c = r.config
    kind = ckpt.get("head_kind") or c.get("resolved_head", "linear")  # checkpoints before the kind was saved
    shape = c.get("image_shape") or load_datasets(c)[0].image_shape    # runs before config.json recorded it
    kw = {k: v for k, v in (c.get("model_params") or {}).items() if k != "weights_path"}
    with torch.random.fork_rng(devices=[]):
        model = create_model(c["model"], int(c["num_classes"]), head=kind, in_channels=int(shape[0]), **kw)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        old = "" if ckpt.get("head_kind") else (" (the checkpoint does not record its head kind, as older ones do not; "
                                                "an older GLAG stage two must be trained again)")
        raise RunFileError(f"{r.dir}/checkpoint.pt does not fit model={c['model']!r} with a {kind!r} head{old}: "
                           f"{exc}") from exc
    return model.to(device).eval()
