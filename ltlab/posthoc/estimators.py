"""Post-hoc adjustments as scikit-learn-style estimators: fit on a split, then predict.

Each is a scikit-learn ``BaseEstimator`` (``get_params`` / ``set_params``, ``sklearn.base.clone``):
``__init__`` stores the hyper-parameters unchanged and only ``fit`` sets state. ``fit(X, y)`` fixes
``tau_``: ``tau``, or, when ``taus`` is given, the smallest of them with the highest accuracy on ``(X, y)``
(``sweep_`` lists every tau with its accuracy, in the order given); fitted attributes end in ``_``. ``decision_function(X)`` gives the adjusted scores (M, C),
``predict(X)`` their argmax, ``score(X, y)`` the accuracy. ``X`` are logits (M, C) for
:class:`LogitAdjuster` and :class:`PNRebalancer`, penultimate features (M, D) for :class:`TauNormalizer`;
numpy or torch, as the functions of :mod:`ltlab.posthoc.functional` that do the maths.
:data:`POSTHOC` is the registry ``RunConfig.posthoc["method"]`` names.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .functional import logit_adjust, pn_rebalance, tau_norm_logits, tau_normalize

DECOUPLING_TAUS = tuple(round(0.1 * i, 10) for i in range(21))  # 0, 0.1, ..., 2: the decoupling script's sweep


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


class PosthocEstimator(BaseEstimator):
    """Base of the post-hoc estimators (see the module docstring)."""

    method: ClassVar[str] = ""
    inputs: ClassVar[Literal["logits", "features"]] = "logits"
    requires: ClassVar[tuple[str, ...]] = ()  # what the constructor takes from a run: class_counts / weight
    options: ClassVar[tuple[str, ...]] = ("tau",)  # keys RunConfig.posthoc may hold besides "method"
    run_defaults: ClassVar[dict] = {}  # what a run's posthoc step uses unless its config says otherwise

    def __init__(self, tau: float = 1.0, taus: Sequence[float] | None = None) -> None:
        self.tau = tau
        self.taus = taus

    def _scores(self, X, tau: float):
        raise NotImplementedError

    def fit(self, X, y=None) -> PosthocEstimator:
        """Fix ``tau_`` (and ``sweep_``: ``[(tau, accuracy on (X, y)), ...]`` when ``taus`` is given, else None)."""
        if self.taus is None:
            self.tau_, self.sweep_ = float(self.tau), None
            return self
        taus = [float(t) for t in self.taus]
        if not taus or y is None:
            raise ValueError(f"{type(self).__name__}.fit: choosing tau needs at least one value in taus and labels y")
        self.sweep_ = [(t, self._accuracy(self._scores(X, t), y)) for t in taus]
        best = max(acc for _, acc in self.sweep_)
        self.tau_ = min(t for t, acc in self.sweep_ if acc == best)  # ties go to the smallest tau
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "tau_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")

    def decision_function(self, X, tau: float | None = None):
        """Adjusted scores (M, C) at ``tau_`` (or the ``tau`` given)."""
        self._check_fitted()
        return self._scores(X, self.tau_ if tau is None else float(tau))

    def predict(self, X, tau: float | None = None) -> np.ndarray:
        """Predicted classes (M,) int64 (numpy)."""
        return _numpy(self.decision_function(X, tau)).argmax(1)

    def score(self, X, y, tau: float | None = None) -> float:
        """Accuracy of :meth:`predict` on ``(X, y)``."""
        return float(np.mean(self.predict(X, tau) == _numpy(y)))

    @staticmethod
    def _accuracy(scores, y) -> float:
        return float(np.mean(_numpy(scores).argmax(1) == _numpy(y)))


class LogitAdjuster(PosthocEstimator):
    """Post-hoc logit adjustment ``z - tau log(pi)``, ``pi_c = n_c / sum n`` (Menon et al. 2021, Eq. 9).

    class_counts (C,): training counts (the prior); tau = 1 is the Bayes-optimal balanced rule (paper
    default). Fitted: ``tau_``, ``log_prior_`` (C,).
    """

    method, inputs, requires = "logit_adjust", "logits", ("class_counts",)

    def __init__(self, class_counts: Sequence[int], tau: float = 1.0, taus: Sequence[float] | None = None) -> None:
        super().__init__(tau, taus)
        self.class_counts = class_counts

    def _scores(self, X, tau: float):
        return logit_adjust(X, self.class_counts, tau)

    def fit(self, X, y=None) -> LogitAdjuster:
        n = np.asarray(_numpy(self.class_counts), dtype=np.float64)
        self.log_prior_ = np.log(n / n.sum())
        return super().fit(X, y)


class PNRebalancer(PosthocEstimator):
    """GALA prediction re-balancing ``softmax(z) / colsum(softmax(z)) ** tau`` (GALA 003, Sec. 3.3, Eq. 13).

    Transductive: the column sums run over the rows given to :meth:`decision_function`, so pass the whole
    evaluation set at once. tau = 1 is the official ``pow_for_logits``. Fitted: ``tau_``.
    """

    method, inputs = "pn", "logits"

    def _scores(self, X, tau: float):
        return pn_rebalance(X, tau)


class TauNormalizer(PosthocEstimator):
    """Decoupling's tau-normalised classifier: scores ``f @ (W_c / ||W_c|| ** tau).T`` with the classifier's
    bias dropped (Kang et al. 2020, Eq. 4; as the official code).

    weight (C, D): the classifier rows (a linear head's W; LWS: ``scale * W``); X: features (M, D) in the
    same dtype for torch. The official script sweeps tau over 0, 0.1, ..., 2 (``taus``). ``bias`` (C,), when
    given, is added to the scores unchanged (BagofTricks-LT's tau-norm keeps the bias; RunConfig.posthoc
    ``keep_bias: true``). Fitted: ``tau_``, ``weight_`` (C, D), the normalised rows.
    """

    method, inputs, requires = "tau_norm", "features", ("weight",)
    options = ("select_on", "taus", "tau", "keep_bias")
    run_defaults = {"taus": DECOUPLING_TAUS, "select_on": "val"}  # the paper chooses tau on validation

    def __init__(self, weight, tau: float = 1.0, taus: Sequence[float] | None = None, bias=None) -> None:
        super().__init__(tau, taus)
        self.weight = weight
        self.bias = bias

    def _scores(self, X, tau: float):
        return tau_norm_logits(X, self.weight, tau, self.bias)

    def fit(self, X, y=None) -> TauNormalizer:
        super().fit(X, y)
        self.weight_ = tau_normalize(self.weight, self.tau_)
        return self


POSTHOC: dict[str, type[PosthocEstimator]] = {e.method: e for e in (LogitAdjuster, PNRebalancer, TauNormalizer)}
