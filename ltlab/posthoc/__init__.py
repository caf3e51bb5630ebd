"""Post-hoc adjustments: logit adjustment, PN re-balancing and tau-normalisation, with no retraining.

- :mod:`.functional`: the maths (``logit_adjust``, ``pn_rebalance``, ``tau_normalize``), numpy or torch;
- :mod:`.estimators`: the same as scikit-learn-style estimators (``LogitAdjuster``, ``PNRebalancer``,
  ``TauNormalizer``: fit on a split, then predict) and the ``POSTHOC`` registry of method names;
- :mod:`.steps`: a method on a finished run (saved test logits, or features of its rebuilt model),
  scored overall and many/medium/few; ``apply_posthoc`` runs the step a run's config names.

The maths and the estimators belong to the base layer (RunConfig reads ``POSTHOC``); the steps read run
directories and rebuild models, so :mod:`.steps` is imported on first use of one of its names
(``ltlab.posthoc.posthoc_on_run`` works as before) and importing this package loads no run or model code;
:mod:`.estimators` (scikit-learn's base classes) is loaded on first use of one of its names too.
The stages' post-hoc steps, the post-hoc panel of :mod:`ltlab.viz.widgets` and the notebooks all go through
these, so they give the same numbers for the same run and tau.
"""
from __future__ import annotations

import importlib
from typing import Any

from .functional import logit_adjust, pn_rebalance, tau_norm_logits, tau_normalize

_ESTIMATORS = ("POSTHOC", "PosthocEstimator", "LogitAdjuster", "PNRebalancer", "TauNormalizer")
_STEPS = ("apply_posthoc", "classifier_bias", "classifier_weight", "logit_adjust_accuracy", "pn_accuracy", "posthoc_on_run",
          "scaled_test_logits", "shot_scores", "split_inputs", "tau_normalization")

__all__ = ["logit_adjust", "pn_rebalance", "tau_normalize", "tau_norm_logits", "POSTHOC", "PosthocEstimator", "LogitAdjuster",
           "PNRebalancer", "TauNormalizer", *_STEPS]


def __getattr__(name: str) -> Any:
    """The estimators (scikit-learn) and the run-level steps of :mod:`.steps`, loaded on first use (see the
    module docstring): a training kernel that draws figures with the maths alone never imports scikit-learn."""
    if name in _ESTIMATORS or name in _STEPS:
        return getattr(importlib.import_module(".estimators" if name in _ESTIMATORS else ".steps", __name__), name)
    raise AttributeError(f"module 'ltlab.posthoc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_ESTIMATORS, *_STEPS])
