"""What the training loop records each epoch, cheaply (no extra backward pass, no per-batch sync).

* Gradient ratios: the gradient of the batch loss w.r.t. the classifier outputs ``dL/dz`` (B, C) is
  read from the logits' ``.grad`` after the ordinary backward. For class c, the positive gradient is
  ``sum_{i: y_i = c} |dL/dz_ic|`` and the negative gradient ``sum_{i: y_i != c} |dL/dz_ic|``; their
  accumulated ratio is the "positive/negative gradient ratio" of the seed papers (GALA Fig. 1,
  GHM-CWAP Fig. 1, Seesaw). ``neg_by_source[c, k]`` is the negative gradient classifier c receives
  from samples of class k.
  The (C, C) matrix is kept for up to ``MATRIX_MAX_CLASSES`` classes (CIFAR-100: 80 KB per epoch);
  above that (ImageNet-LT, iNaturalist: 8 MB and 530 MB per epoch) only ``pos`` and ``neg`` are kept.
* Classifier weight norms per class, and the loss's ``state_summary()``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


MATRIX_MAX_CLASSES = 256


class GradientProbe:
    """Accumulates per-class positive/negative gradient magnitudes on the classifier outputs.

    ``matrix`` is the whole state (one float64 tensor, summed over ranks under DDP): for up to
    ``MATRIX_MAX_CLASSES`` classes (or ``by_source=True``) the (C, C) sums ``[classifier, source class]``;
    otherwise (2, C): row 0 the positive sums, row 1 the sums over all samples.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", *, by_source: bool | None = None):
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.by_source = num_classes <= MATRIX_MAX_CLASSES if by_source is None else bool(by_source)
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.matrix = torch.zeros(c if self.by_source else 2, c, dtype=torch.float64, device=self.device)

    @torch.no_grad()
    def update(self, grad: Tensor, labels: Tensor) -> None:
        """Add one batch: ``grad`` is ``dL/dz`` (B, C), ``labels`` (B,). No host sync, no (C, C) temporary."""
        g = grad.detach().abs().to(torch.float64)
        if self.by_source:  # column k += |g_i| of every sample i of class k
            self.matrix.index_add_(1, labels, g.T)
        else:
            self.matrix[0].index_add_(0, labels, g.gather(1, labels[:, None]).squeeze(1))
            self.matrix[1] += g.sum(0)

    def summary(self) -> dict[str, np.ndarray]:
        """``pos`` (C,), ``neg`` (C,), ``ratio`` = pos / neg (C,) and, with the matrix, ``neg_by_source`` (C, C)."""
        m = self.matrix.cpu().numpy()
        out = {}
        if self.by_source:
            pos = np.diag(m).copy()
            out["neg_by_source"] = neg_by_source = m - np.diag(pos)
            neg = neg_by_source.sum(axis=1)
        else:
            pos, neg = m[0].copy(), np.maximum(m[1] - m[0], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(neg > 0, pos / np.where(neg > 0, neg, 1.0), np.nan)
        return {"pos": pos, "neg": neg, "ratio": ratio, **out}


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


SPARSE_KEYS = ("grad_neg_by_source",)  # recorded at evaluated epochs only (C x C each)


def stack_epochs(records: list[dict[str, np.ndarray]], prefix: str = "") -> dict[str, np.ndarray]:
    """Stack per-epoch dicts into arrays with a leading epoch axis (keys missing in some epochs: NaN).

    Keys in ``SPARSE_KEYS`` are stacked over the epochs that have them only, with the epoch indices
    in ``<key>_epochs`` (a (C, C) matrix per epoch would make the history, and every checkpoint, grow
    by 80 KB per epoch for CIFAR-100).
    """
    keys = sorted({k for r in records for k in r})
    out = {}
    for k in keys:
        shapes = {np.shape(r[k]) for r in records if k in r}
        if len(shapes) != 1:
            continue
        shape = shapes.pop()
        if k in SPARSE_KEYS:
            have = [i for i, r in enumerate(records) if k in r]
            out[prefix + k] = np.stack([np.asarray(records[i][k], dtype=np.float64) for i in have])
            out[prefix + k + "_epochs"] = np.asarray(have, dtype=np.int64)
            continue
        out[prefix + k] = np.stack([np.asarray(r[k], dtype=np.float64) if k in r else np.full(shape, np.nan)
                                    for r in records])
    return out


def unstack_epochs(arrays: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """Per-epoch dicts back from :func:`stack_epochs` (``n`` epochs); ``stack_epochs`` of the result gives
    ``arrays`` again (an all-NaN entry counts as missing, which stacks to the same NaNs)."""
    records: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for k, v in arrays.items():
        if k.endswith("_epochs") and k[:-len("_epochs")] in SPARSE_KEYS:
            continue
        if k in SPARSE_KEYS:
            for i, e in enumerate(np.asarray(arrays[k + "_epochs"]).tolist()):
                records[e][k] = v[i]
            continue
        for e in range(n):
            if not np.isnan(v[e]).all():
                records[e][k] = v[e]
    return records


def matrix_at(arrays: dict[str, np.ndarray], key: str, epoch: int) -> tuple[np.ndarray, int]:
    """``(arrays[key] at epoch, that epoch)`` for a key of ``SPARSE_KEYS``; ``epoch=-1`` is the last recorded.

    Raises a ValueError naming the recorded epochs when ``epoch`` has none. Runs written before the
    sparse format (no ``<key>_epochs``) hold every epoch.
    """
    m = np.asarray(arrays[key])
    epochs = np.asarray(arrays.get(key + "_epochs", np.arange(len(m))))
    if epoch < 0:
        if -epoch > len(epochs):
            raise ValueError(f"{key} has {len(epochs)} recorded epochs; epoch={epoch} is out of range")
        return m[epoch], int(epochs[epoch])
    hit = np.flatnonzero(epochs == epoch)
    if not len(hit):
        raise ValueError(f"{key} is recorded at the evaluated epochs only ({epochs.tolist()}); epoch {epoch} is not "
                         "one of them. Pick one of those (or -1), or train with a smaller eval_every")
    return m[hit[0]], epoch
