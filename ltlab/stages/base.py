"""The Stage protocol: what a run of the one training loop trains, and on what.

A stage is picked from :data:`ltlab.stages.STAGES` by ``RunConfig.stage``. It declares its options
(``defaults``: the keys of ``RunConfig.stage_params`` with their values when not given; ``aliases``: flat
RunConfig keywords that set them, as RunConfig had before ``stage_params``), checks a config before
anything runs (``validate``, also on a stage two whose stage one has not run yet), checks a stage two
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

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..data import LTDataset
    from ..models import HeadedModel

# options of every stage that can start from a stage one (init_from): cRT, LWS (Kang et al. 2020), MiSLAS
WARM_START = {"classifier_init": "stage_one", "lws_freeze_linear": True}
WARM_START_CHOICES = {"classifier_init": ("stage_one", "reset"), "lws_freeze_linear": (True, False)}
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


def fail(config: RunConfig, name: str, why: str) -> None:
    """ValueError naming a RunConfig field (``name`` may be ``stage_params['k']``), its value and the fix."""
    base, _, key = name.partition("[")
    value = getattr(config, base)
    if key:
        value = value.get(key.strip("]'\""), "<default>")
    raise ValueError(f"RunConfig.{name}={value!r}: {why}")


class Stage:
    """Base of every stage (see the module docstring); subclasses set the class attributes and ``build``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple]] = {}
    aliases: ClassVar[dict[str, str | None]] = {}  # flat keyword -> stage_params key (None: a dict of them)
    needs_init_from: ClassVar[bool] = False
    distributed: ClassVar[bool] = True  # runs under torchrun (one model over several processes)

    def params(self, config: RunConfig) -> dict[str, Any]:
        """``config.stage_params`` with the defaults filled in (None means the default)."""
        return {**self.defaults, **{k: v for k, v in config.stage_params.items() if v is not None}}

    def validate(self, config: RunConfig) -> None:
        """Check the stage's fields of ``config`` (ValueError naming the field, the value and the fix)."""
        if self.needs_init_from and not config.init_from:
            fail(config, "stage", f"a {self.name!r} stage needs init_from=<stage-one run directory>")
        bad = sorted(set(config.stage_params) - set(self.defaults))
        if bad:
            fail(config, "stage_params", f"stage {self.name!r} has no option(s) {bad}; valid: {sorted(self.defaults)}")
        params = self.params(config)
        for key, allowed in self.choices.items():
            if params[key] not in allowed or isinstance(params[key], bool) != isinstance(allowed[0], bool):
                fail(config, f"stage_params['{key}']", f"must be one of {', '.join(map(str, allowed))}")

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
