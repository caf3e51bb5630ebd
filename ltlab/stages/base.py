"""The Stage protocol: what a run of the one training loop trains, and on what.

A stage is picked from :data:`ltlab.stages.STAGES` by ``RunConfig.stage``. Its options are plain data in
:data:`ltlab.stage_options.STAGE_OPTIONS` (``defaults``: the keys of ``RunConfig.stage_params`` with their
values when not given; ``aliases``: flat RunConfig keywords that set them; the config rules RunConfig checks
before anything runs), so RunConfig needs no stage code; a stage checks a stage two
against its stage one's config (``check_stage_one``) and builds what the loop needs (``build`` ->
:class:`StageParts`). A second stage starts from the finished run named by ``init_from``
(:func:`stage_one_model`: :func:`ltlab.build.rebuild_model` of that run, checked against this one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

from ..build import rebuild_model
from ..losses import create_loss
from ..models import LWSHead, create_model
from ..runs import Run, RunFileError, check_finished, load_run
from ..stage_options import StageOptions, fill_defaults, validate_stage

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..data import LTDataset
    from ..models import HeadedModel

# a stage two sees the same data through the same model as its stage one
SAME_DATA_AND_MODEL = ("dataset", "root", "imbalance_factor", "imbalance_profile", "data_seed", "dataset_params",
                       "model")


@dataclass
class StageData:
    """The datasets of a run: long-tailed train, balanced test and the optional balanced validation split."""

    train: LTDataset
    test: LTDataset
    val: LTDataset | None = None


def train_all(call: nn.Module, model: nn.Module) -> None:
    """Training mode for everything the loop calls."""
    call.train()


def head_only(call: nn.Module, model: nn.Module) -> None:
    """A frozen backbone kept in eval mode (BN statistics fixed), the head in training mode (GCL stage two)."""
    call.eval()
    model.head.train()


@dataclass
class StageParts:
    """What the loop runs: ``model`` (checkpointed whole; ``rebuild_model`` reads it back), ``loss_fn``,
    ``forward`` (the module the loop calls; None: ``model``), ``loaders`` ((train, test) replacing the image
    loaders; None: image loaders of the datasets), ``extras`` (stateful parts with ``state_dict`` /
    ``load_state_dict``, saved in the checkpoint) and ``train_mode(call, model)``, which sets the modes at the
    start of every training epoch."""

    model: nn.Module
    loss_fn: nn.Module
    forward: nn.Module | None = None
    loaders: tuple | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    train_mode: Callable[[nn.Module, nn.Module], None] = train_all


class Stage:
    """Base of every stage (see the module docstring); subclasses set the class attributes and ``build``."""

    options: ClassVar[StageOptions]  # what RunConfig sees of the stage (ltlab.stage_options.STAGE_OPTIONS)

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def summary(self) -> str:
        return self.options.summary

    @property
    def defaults(self) -> dict[str, Any]:
        return self.options.defaults

    @property
    def choices(self) -> dict[str, tuple]:
        return self.options.choices

    @property
    def aliases(self) -> dict[str, str | None]:
        """Flat RunConfig keyword -> ``stage_params`` key (None: a dict of them)."""
        return self.options.aliases

    @property
    def needs_init_from(self) -> bool:
        return self.options.needs_init_from

    @property
    def distributed(self) -> bool:
        """Runs under torchrun (one model over several processes)."""
        return self.options.distributed

    def params(self, config: RunConfig) -> dict[str, Any]:
        """``config.stage_params`` with the defaults filled in (None means the default)."""
        return fill_defaults(self.name, config.stage_params)

    def validate(self, config: RunConfig) -> None:
        """Check the stage's fields of ``config`` (ValueError naming the field, the value and the fix);
        RunConfig runs the same check (:func:`ltlab.stage_options.validate_stage`) when it is built."""
        validate_stage(config)

    def check_head(self, old: str, config: RunConfig, where: str) -> None:
        """Refuse a stage-one head of kind ``old`` this run cannot take over (same kind, LWS around a linear
        head, or any head with ``classifier_init='reset'``)."""
        new = config.resolved_head
        if self.params(config).get("classifier_init") == "reset" or new == old or (new, old) == ("lws", "linear"):
            return
        raise ValueError(f"{where}: this run keeps stage one's classifier (classifier_init='stage_one') but asks for a "
                         f"{new!r} head while stage one has a {old!r} head; use head={old!r} (or 'lws' on a linear "
                         "head), matching losses, or classifier_init='reset'")

    def check_stage_one(self, stage_one: RunConfig, config: RunConfig) -> None:
        """Refuse ``config`` as the stage two of ``stage_one`` (both RunConfigs, before stage one runs)."""
        for key in SAME_DATA_AND_MODEL:
            if getattr(stage_one, key) != getattr(config, key):
                raise ValueError(f"stage two has {key}={getattr(config, key)!r} but stage one "
                                 f"{key}={getattr(stage_one, key)!r}; stage two must see the same data through the "
                                 "same model (set it for both stages)")
        self.check_head(stage_one.resolved_head, config, f"stage one (loss={stage_one.loss!r})")

    def build(self, config: RunConfig, data: StageData, device: torch.device) -> StageParts:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared by the stages
    def loss(self, config: RunConfig, data: StageData, device: torch.device) -> nn.Module:
        """The registry loss of ``config`` on the training counts."""
        return create_loss(config.loss, list(data.train.class_counts), **config.loss_kwargs()).to(device)

    def build_model(self, config: RunConfig, train_ds: LTDataset) -> HeadedModel:
        """The model this stage trains (CPU): a fresh one (seeded), or, with ``init_from``, the stage-one model
        with its head shaped by ``classifier_init``: reset to a fresh head of this run's kind (cRT), kept
        (GCL, GLAG, MiSLAS), or wrapped in LWS when ``head='lws'`` (Kang's LWS: W, b frozen unless
        ``lws_freeze_linear=False``). Stages that freeze or change more extend it."""
        torch.manual_seed(config.seed)
        if not config.init_from:
            return create_model(config.model, train_ds.num_classes, head=config.resolved_head,
                                in_channels=train_ds.image_shape[0], **config.model_params)
        return self.shape_head(stage_one_model(config, train_ds, self), config)

    def shape_head(self, model: HeadedModel, config: RunConfig) -> HeadedModel:
        params, old, new = self.params(config), model.head_kind, config.resolved_head
        if params["classifier_init"] == "reset":
            model.reset_classifier(model.num_classes, head=new)
        elif (new, old) == ("lws", "linear"):
            model.set_head(LWSHead.from_linear(model.head, freeze_linear=params["lws_freeze_linear"]))
        return model


def freeze_backbone(model: HeadedModel) -> HeadedModel:
    """Every parameter outside ``model.head`` stops training (a second stage: Kang et al. 2020)."""
    for p in model.backbone_parameters():
        p.requires_grad_(False)
    return model


def stage_one_run(config: RunConfig, train_ds: LTDataset) -> Run:
    """The ``init_from`` run, checked: same dataset, model, classes and training split; finished."""
    where = f"init_from={config.init_from}"
    try:
        src = load_run(config.init_from)
    except RunFileError as exc:
        raise ValueError(f"{where}: {exc}; point init_from at a finished stage-one run directory") from exc
    c = src.config
    for key, have in (("dataset", config.dataset), ("model", config.model), ("num_classes", train_ds.num_classes)):
        if c.get(key) != have:
            raise ValueError(f"{where}: stage one used {key}={c.get(key)!r} but this run has {key}={have!r}; "
                             f"point init_from at a compatible run")
    if c.get("class_counts") is not None and list(c["class_counts"]) != list(train_ds.class_counts):
        raise ValueError(f"{where}: stage one trained on class_counts {c['class_counts']} but this run's training "
                         f"split has {list(train_ds.class_counts)}; use the stage-one imbalance_factor, data_seed "
                         f"and dataset_params")
    check_finished(config.init_from)  # the one "stage one unfinished" check (ltlab.runs), shared with the launchers
    return src


def stage_one_model(config: RunConfig, train_ds: LTDataset, stage: Stage) -> HeadedModel:
    """The trained model of the checked ``init_from`` run (CPU), after ``stage.check_head`` accepts its head."""
    src = stage_one_run(config, train_ds)
    model = rebuild_model(src)
    stage.check_head(model.head_kind, config, f"init_from={config.init_from}")
    return model
