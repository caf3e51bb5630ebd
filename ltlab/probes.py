"""What the training loop records each epoch, cheaply (no extra backward pass, no per-batch sync).

* Gradient ratios: the gradient of the batch loss w.r.t. the classifier outputs ``dL/dz`` (B, C) is
  read from the logits' ``.grad`` after the ordinary backward. For class c, the positive gradient is
  ``sum_{i: y_i = c} |dL/dz_ic|`` and the negative gradient ``sum_{i: y_i != c} |dL/dz_ic|``; their
  accumulated ratio is the "positive/negative gradient ratio" of the seed papers (GALA Fig. 1,
  GHM-CWAP Fig. 1, Seesaw). ``neg_by_source[c, k]`` is the negative gradient classifier c receives
  from samples of class k.
* Classifier weight norms per class, and the loss's ``state_summary()``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class GradientProbe:
    """Accumulates per-class positive/negative gradient magnitudes on the classifier outputs."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.matrix = torch.zeros(c, c, dtype=torch.float64, device=self.device)  # [classifier, source class]

    @torch.no_grad()
    def update(self, grad: Tensor, labels: Tensor) -> None:
        """Add one batch: ``grad`` is ``dL/dz`` (B, C), ``labels`` (B,)."""
        g = grad.detach().abs().to(torch.float64)
        # rows of |g| summed by the sample's class: (C_source, C_classifier)
        by_source = torch.zeros_like(self.matrix).index_add_(0, labels, g)
        self.matrix += by_source.T

    def summary(self) -> dict[str, np.ndarray]:
        """``pos`` (C,), ``neg`` (C,), ``ratio`` = pos / neg (C,) and ``neg_by_source`` (C, C)."""
        m = self.matrix.cpu().numpy()
        pos = np.diag(m).copy()
        neg_by_source = m - np.diag(pos)
        neg = neg_by_source.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(neg > 0, pos / np.where(neg > 0, neg, 1.0), np.nan)
        return {"pos": pos, "neg": neg, "ratio": ratio, "neg_by_source": neg_by_source}


def weight_norms(model: torch.nn.Module) -> np.ndarray:
    """L2 norm of each class's classifier weight vector (C,)."""
    w = model.head.weight_matrix() if hasattr(model.head, "weight_matrix") else model.head.weight
    return w.detach().float().norm(dim=1).cpu().numpy()


def loss_summary(loss: torch.nn.Module) -> dict[str, np.ndarray]:
    """The loss's ``state_summary()`` as numpy arrays (empty for losses without internals)."""
    fn = getattr(loss, "state_summary", None)
    out = fn() if fn else {}
    return {k: np.asarray(v.detach().cpu().numpy() if isinstance(v, Tensor) else v, dtype=np.float64)
            for k, v in out.items()}


def stack_epochs(records: list[dict[str, np.ndarray]], prefix: str = "") -> dict[str, np.ndarray]:
    """Stack per-epoch dicts into arrays with a leading epoch axis (keys missing in some epochs: NaN)."""
    keys = sorted({k for r in records for k in r})
    out = {}
    for k in keys:
        shapes = {np.shape(r[k]) for r in records if k in r}
        if len(shapes) != 1:
            continue
        shape = shapes.pop()
        out[prefix + k] = np.stack([np.asarray(r[k], dtype=np.float64) if k in r else np.full(shape, np.nan)
                                    for r in records])
    return out
