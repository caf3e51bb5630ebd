"""Focal loss: the softmax form of the LT baselines and the RetinaNet sigmoid form."""
from __future__ import annotations

from typing import Literal, Sequence

from torch import Tensor

from . import functional as F
from .base import DRWMixin, LossBase
from .param import Param, drw

_FORMS = ("softmax", "sigmoid")
_DEFAULT_GAMMA = {"softmax": 1.0, "sigmoid": 2.0}


class FocalLoss(DRWMixin, LossBase):
    """Focal loss (Lin et al. 2017, Eq. 5). Input logits (B, C).

    ``form="softmax"`` (default; LDAM-DRW ``FocalLoss``): ``mean_i (1 - p_i)^gamma l_i`` with
    ``l_i = w_{y_i} CE_i`` and ``p_i = exp(-l_i)``, factor not detached. With DRW the weight enters
    ``l_i`` (so ``p_i`` is not the model probability) and the reduction stays a plain batch mean,
    as in the official code. ``form="sigmoid"`` (RetinaNet / torchvision ``sigmoid_focal_loss``):
    ``sum_ij alpha_t (1 - p_t)^gamma BCE_ij / B`` over one-hot targets.

    Args:
        class_counts: training count per class ``n_c`` (C,).
        gamma: focusing parameter ``gamma`` >= 0. None: the form's default, 1.0 for softmax
            (LDAM-DRW ``cifar_train.py``) and 2.0 for sigmoid (RetinaNet paper / torchvision).
        form: "softmax" or "sigmoid".
        alpha: sigmoid form only, positive-class balance ``alpha``; None -> 0.25 (RetinaNet);
            a negative value disables it (torchvision convention).
        drw_start: softmax form only; 0-based epoch from which DRW effective-number weights
            (beta=0.9999) enter ``l_i`` (Cao et al. 2019, "Focal-DRW"). None: never.
    """

    def __init__(self, class_counts: Sequence[int], gamma: float | None = None,
                 form: Literal["softmax", "sigmoid"] = "softmax", alpha: float | None = None,
                 drw_start: int | None = None):
        super().__init__(class_counts)
        if form not in _FORMS:
            raise ValueError(f"FocalLoss: form must be one of {_FORMS}, got {form!r}")
        if form == "softmax" and alpha is not None:
            raise ValueError("FocalLoss: alpha applies only to form='sigmoid' "
                             "(the softmax form has no alpha)")
        if form == "sigmoid" and drw_start is not None:
            raise ValueError("FocalLoss: drw_start applies only to form='softmax' (LDAM-DRW Focal-DRW)")
        self.form = form
        self.gamma = float(_DEFAULT_GAMMA[form] if gamma is None else gamma)
        if self.gamma < 0:
            raise ValueError(f"FocalLoss: gamma must be >= 0, got {self.gamma}")
        self.alpha = float(0.25 if alpha is None else alpha)
        self._init_drw(drw_start)

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        super().set_epoch(epoch, num_epochs)
        self._update_drw(epoch)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        if self.form == "sigmoid":
            return F.sigmoid_focal_loss(logits, labels, self.gamma, self.alpha)
        return F.softmax_focal_loss(logits, labels, self.gamma, weight=self.drw_weight(logits))

    def state_summary(self) -> dict[str, Tensor]:
        return {"class_weight": self.class_weight.clone()}

    def extra_repr(self) -> str:
        extra = f", alpha={self.alpha}" if self.form == "sigmoid" else f", drw_start={self.drw_start}"
        return f"num_classes={self.num_classes}, form={self.form!r}, gamma={self.gamma}" + extra


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("gamma", "float", 1.0, low=0.0, high=5.0, source="LDAM-DRW cifar_train gamma=1 (softmax); "
          "Lin et al. Tab. 1a ablate gamma in [0, 5] (sigmoid default 2)"),
    Param("form", "choice", "softmax", choices=("softmax", "sigmoid"), source="softmax: LDAM-DRW code; sigmoid: RetinaNet"),
    Param("alpha", "float", 0.25, low=0.05, high=0.95, source="Lin et al. Tab. 1a/b: alpha 0.25 with gamma 2 "
          "(sigmoid form only)", when=(("form", "sigmoid"),)),
    drw(),
)
