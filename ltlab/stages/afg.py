"""GLAG stage two (adaptive feature generation, GLAG paper 000, Sec. 3.3) as a stage of the one training loop.

The frozen stage-one backbone's features are extracted once. The loop then trains only the linear
classifier on Tukey-transformed features: the real ones plus, every generation epoch (= loop epoch),
fresh ``TailFeatureGenerator`` samples that top every class up to n_max. The loss is
``CE(z2, y) + alpha(T) * KD`` with KD from the frozen stage-one classifier on the real head-class
samples; the class-wise beta rule runs on the balanced validation split at the start of each epoch.
Pieces: :class:`AFGStage` (the stage; the model's head becomes a :class:`~ltlab.models.TukeyHead`, so
the saved model reproduces what was trained), :class:`AFGLoss` and :class:`AFGLoader` (stateful: beta
and the previous validation accuracy go into the checkpoint).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
from torch import nn

from ..build import rebuild_model
from ..data.loaders import _mix_seed
from ..losses.functional import head_distillation
from ..metrics import per_class_accuracy
from ..models import TukeyHead
from ..models.heads import tukey
from ..schedules import glag_alpha, glag_beta_update
from ..stage_options import STAGE_OPTIONS
from .base import Stage, StageData, StageParts, freeze_backbone

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..features import TailFeatureGenerator
    from ..data import LTDataset
    from ..models import HeadedModel

class AFGLoss(nn.Module):
    """GLAG stage-two loss ``base(z2, y) + alpha(T) * KL(softmax(z1) || softmax(z2))`` (GLAG Eq. 10-11).

    ``alpha(T) = glag_alpha(epoch, num_epochs, s, c)`` over the stage-two epochs (GLAG Eq. 11); the
    KD term averages over the rows in ``head_mask`` (real head-class samples) and ``teacher_logits``
    (B, C) are the frozen stage-one classifier's outputs. ``base`` is the registry loss (GLAG: ``ce``).
    """

    input_kind = "logits"

    def __init__(self, base: nn.Module, s: float = 1.0, c: float = 2.0, kd: bool = True) -> None:
        super().__init__()
        self.base, self.s, self.c, self.kd = base, float(s), float(c), bool(kd)
        self.alpha = 0.0

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        self.base.set_epoch(epoch, num_epochs)
        self.alpha = glag_alpha(epoch, num_epochs, self.s, self.c) if self.kd else 0.0

    def reset_state(self) -> None:
        self.base.reset_state()

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.base(logits, labels)
        if self.kd and teacher_logits is not None and head_mask is not None:
            loss = loss + self.alpha * head_distillation(logits, teacher_logits, head_mask)
        return loss

    def state_summary(self) -> dict[str, torch.Tensor]:
        return {"alpha": torch.tensor(self.alpha, dtype=torch.float64), **self.base.state_summary()}


class FeatureLoader:
    """Sequential batches ``(features (B, D), labels (B,))`` of fixed tensors (evaluation)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> None:
        self.features, self.labels, self.batch_size = features, labels, int(batch_size)

    def set_epoch(self, epoch: int) -> None:
        """No-op (fixed order)."""

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield self.features[sl], self.labels[sl]


class AFGLoader:
    """One generation epoch per pass: ``(x (B, D), y (B,), {"teacher_logits": (B, C), "head_mask": (B,)})``.

    Real rows are ``tukey(f)``; generated tail rows are drawn in Tukey space by the generator, generated
    head rows in its ``stats_space`` (Tukey-transformed here when that is "raw", LIB) so that every
    classifier input lives in one space. Generated rows carry no teacher (mask False). ``set_epoch(k)``
    first applies the beta rule (k >= 1) from the classifier's per-class validation accuracy now versus
    at the previous epoch start; draws and order come from (seed, k), so a resumed run replays exactly.
    """

    def __init__(self, generator: TailFeatureGenerator, features: torch.Tensor, labels: torch.Tensor,
                 teacher_logits: torch.Tensor, batch_size: int, *, seed: int = 0,
                 classifier: nn.Module | None = None, val: tuple[torch.Tensor, torch.Tensor] | None = None,
                 beta_step: float = 0.05) -> None:
        self.gen, self.batch_size, self.seed = generator, int(batch_size), int(seed)
        self.device = features.device
        self.raw = features.detach().double().cpu().numpy()
        self.labels_np = labels.cpu().numpy()
        self.x = tukey(features.float(), generator.tukey_lambda)
        self.y, self.teacher = labels, teacher_logits.float()
        self.is_tail = torch.zeros(len(generator.class_counts_), dtype=torch.bool, device=self.device)
        self.is_tail[torch.as_tensor(generator.tail_classes_, dtype=torch.long, device=self.device)] = True
        self.real_head = ~self.is_tail[labels]
        self.classifier, self.val, self.beta_step = classifier, val, float(beta_step)
        self.prev_acc: np.ndarray | None = None
        self.epoch, self._updated = 0, -1
        counts, n_max = generator.class_counts_, int(generator.class_counts_.max())
        skip = (counts == 0) & self.is_tail.cpu().numpy()
        self.n_rows = int(np.where(skip, 0, np.maximum(counts, n_max)).sum())

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.gen.beta_.copy(), "prev_acc": None if self.prev_acc is None else self.prev_acc.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_beta(state["beta"])
        self.prev_acc = None if state["prev_acc"] is None else np.asarray(state["prev_acc"], dtype=np.float64)

    def state_summary(self) -> dict[str, np.ndarray]:
        """``glag_beta`` (C,): the calibration strength beta each tail class is generated with this epoch (NaN
        for the other classes); recorded in probes.npz for GLAG's beta figure."""
        beta = np.full(len(self.gen.beta_), np.nan)
        beta[self.gen.tail_classes_] = self.gen.beta_[self.gen.tail_classes_]
        return {"glag_beta": beta}

    @torch.no_grad()
    def val_accuracy(self) -> np.ndarray:
        """Per-class accuracy (C,) of the current classifier on the validation features."""
        vx, vy = self.val
        was_training = self.classifier.training
        self.classifier.eval()
        preds = torch.cat([self.classifier(vx[i:i + 4096]).argmax(1) for i in range(0, len(vy), 4096)])
        self.classifier.train(was_training)
        return per_class_accuracy(preds.cpu().numpy(), vy.cpu().numpy(), len(self.gen.class_counts_))

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass generation epoch ``epoch`` (0-based); beta rule once per epoch."""
        self.epoch = int(epoch)
        if self.val is None or self.beta_step == 0 or self._updated == self.epoch:
            return
        acc, tail = np.nan_to_num(self.val_accuracy(), nan=0.0), self.gen.tail_classes_  # no val rows: a tie
        if self.prev_acc is not None and self.epoch > 0 and len(tail):
            self.gen.set_beta(glag_beta_update(self.gen.beta_[tail], acc[tail], self.prev_acc[tail],
                                               self.beta_step), tail)
        self.prev_acc, self._updated = acc, self.epoch

    def __len__(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def _generate(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        with _blas_threads(self.raw.shape[1]):
            gx, gy = self.gen.sample(self.raw, self.labels_np, random_state=[self.seed, epoch])
        gx_t = torch.as_tensor(gx, dtype=torch.float32, device=self.device)
        gy_t = torch.as_tensor(gy, dtype=torch.long, device=self.device)
        if self.gen.stats_space == "raw":  # head-class draws are in raw space: move them to Tukey space
            head = ~self.is_tail[gy_t]
            gx_t[head] = tukey(gx_t[head], self.gen.tukey_lambda)
        return gx_t, gy_t

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        gx, gy = self._generate(epoch)
        x, y = torch.cat([self.x, gx]), torch.cat([self.y, gy])
        teacher = torch.cat([self.teacher, self.teacher.new_zeros(len(gy), self.teacher.shape[1])])
        mask = torch.cat([self.real_head, self.real_head.new_zeros(len(gy))])
        g = torch.Generator(device=self.device).manual_seed(_mix_seed(self.seed, epoch))
        order = torch.randperm(len(y), device=self.device, generator=g)
        for b in range(-(-len(y) // self.batch_size)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield x[idx], y[idx], {"teacher_logits": teacher[idx], "head_mask": mask[idx]}


def _blas_threads(dim: int):
    """One BLAS thread for the many small batched Choleskys of ``sample`` (D <= 512): threaded BLAS on
    small matrices is up to 100x slower on a loaded CPU (measured: 25 s vs 0.3 s per epoch at D=128)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1) if dim <= 512 else contextlib.nullcontext()




class AFGStage(Stage):
    """GLAG stage two (see the module docstring): ``stage_params`` hold ``classifier_init`` and
    ``ltlab.stage_options.AFG_DEFAULTS`` (flat ``afg_params={...}`` still sets them). One process, no mixup,
    instance sampling, checkpoints once per epoch (the beta rule runs at epoch starts)."""

    options = STAGE_OPTIONS["afg"]

    def check_head(self, old: str, config: RunConfig, where: str) -> None:
        if old != "linear":
            raise ValueError(f"{where}: stage='afg', which needs a stage one with a linear head (its classifier is "
                             f"the distillation teacher), got a {old!r} head")

    def build_model(self, config: RunConfig, train_ds: LTDataset) -> HeadedModel:
        """The stage-one model, backbone frozen, its linear head wrapped in a Tukey head (what is saved)."""
        model = freeze_backbone(super().build_model(config, train_ds))
        model.set_head(TukeyHead.from_linear(model.head, self.params(config)["tukey_lambda"]))
        return model

    def build(self, config: RunConfig, data: StageData, device: torch.device) -> StageParts:
        """Features extracted once; the teacher is the stage-one linear classifier applied to the raw train
        features (GLAG Eq. 11); the loop calls ``model.head.linear`` on Tukey-space batches."""
        from ..features import TailFeatureGenerator, forward_split  # scikit-learn: loaded when AFG trains

        opts, lam = self.params(config), self.params(config)["tukey_lambda"]
        model = self.build_model(config, data.train).to(device)
        train_f, _, train_y = forward_split(model, data.train, device)
        test_f, _, test_y = forward_split(model, data.test, device)
        with torch.no_grad():
            teacher = rebuild_model(config.init_from, device).head(train_f)
        gen = TailFeatureGenerator(k=opts["k"], beta=opts["beta"], gamma=opts["gamma"], tukey_lambda=lam,
                                   stats_space=opts["stats_space"], tail_classes=opts["tail_classes"],
                                   random_state=config.seed).fit(train_f.double().cpu().numpy(), train_y.cpu().numpy())
        val = None
        if data.val is not None:
            val_f, _, val_y = forward_split(model, data.val, device)
            val = (tukey(val_f, lam), val_y)
        train_loader = AFGLoader(gen, train_f, train_y, teacher, config.batch_size, seed=config.seed,
                                 classifier=model.head.linear, val=val, beta_step=opts["beta_step"])
        test_loader = FeatureLoader(tukey(test_f, lam), test_y)
        loss = AFGLoss(self.loss(config, data, device), s=opts["kd_s"], c=opts["kd_c"], kd=opts["kd"]).to(device)
        return StageParts(model, loss, forward=model.head.linear, loaders=(train_loader, test_loader),
                          extras={"afg": train_loader})
