"""The one training loop (docs/architecture.md): ``run``, ``fit``, ``train_one_epoch``, ``evaluate``; checkpoints.

- :mod:`.loop`: :class:`TrainState`, :func:`train_step` (the step), :func:`train_one_epoch` and :func:`evaluate`;
- :mod:`.trainer`: :func:`run` (a RunConfig -> a run directory) and :func:`fit` (the epochs; one epoch on one
  screen: ``_Epochs.run``);
- :mod:`.checkpoint`: saving, resuming and the mid-epoch position;
- :mod:`.outputs`: evaluation rows and the run directory's output files;
- :mod:`.compile`: DDP and static-shape ``torch.compile`` calls; :mod:`.setup`: optimiser and image loaders.

Methods plug in through the registries (dataset, model, loss, sampler), ``loss.set_epoch``, the probes and
the stages (:mod:`ltlab.stages`); there is no per-method copy of the loop. The names below are the
engine's public surface. Loading data and checkpoints lives where it is defined: :mod:`ltlab.build`
(``load_datasets``, ``resolve_device``, ...) and :mod:`ltlab.runs` (``load_checkpoint``, ``CHECKPOINTS``).
"""
from __future__ import annotations

from ..stages import get_stage
from .checkpoint import restore, save_checkpoint
from .compile import CUDA_GRAPH_MODES, OneShapeCall, model_calls
from .loop import EpochSums, TrainState, autocast_dtype, evaluate, train_one_epoch, train_step, unwrap
from .outputs import write_outputs
from .setup import image_loaders, make_sampler, make_sgd
from .trainer import Callback, fit, run


def build_model(config, train_ds):
    """The model ``config``'s stage trains, built on CPU (``Stage.build_model``: fresh, or from ``init_from``)."""
    return get_stage(config.stage).build_model(config, train_ds)


__all__ = ["run", "fit", "train_step", "train_one_epoch", "evaluate", "TrainState", "EpochSums", "Callback", "save_checkpoint",
           "restore", "write_outputs", "make_sgd", "make_sampler", "image_loaders", "build_model", "unwrap",
           "autocast_dtype", "model_calls", "OneShapeCall", "CUDA_GRAPH_MODES"]
