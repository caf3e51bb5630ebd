"""Post-hoc adjustments: logit adjustment, PN re-balancing and tau-normalisation, with no retraining.

- :mod:`.functional`: the maths (``logit_adjust``, ``pn_rebalance``, ``tau_normalize``), numpy or torch;
- :mod:`.estimators`: the same as scikit-learn-style estimators (``LogitAdjuster``, ``PNRebalancer``,
  ``TauNormalizer``: fit on a split, then predict) and the ``POSTHOC`` registry of method names;
- :mod:`.steps`: a method on a finished run (saved test logits, or features of its rebuilt model),
  scored overall and many/medium/few; ``apply_posthoc`` runs the step a run's config names.

The stages' post-hoc steps, the post-hoc panel of :mod:`ltlab.widgets` and the notebooks all go through
these, so they give the same numbers for the same run and tau.
"""
from .estimators import POSTHOC, LogitAdjuster, PNRebalancer, PosthocEstimator, TauNormalizer
from .functional import logit_adjust, pn_rebalance, tau_norm_logits, tau_normalize
from .steps import (apply_posthoc, classifier_bias, classifier_weight, logit_adjust_accuracy, pn_accuracy,
                    posthoc_on_run, scaled_test_logits, shot_scores, split_inputs, tau_normalization)

__all__ = ["logit_adjust", "pn_rebalance", "tau_normalize", "tau_norm_logits", "POSTHOC", "PosthocEstimator",
           "LogitAdjuster", "PNRebalancer", "TauNormalizer", "posthoc_on_run", "pn_accuracy", "logit_adjust_accuracy",
           "tau_normalization", "apply_posthoc", "scaled_test_logits", "shot_scores", "classifier_weight",
           "classifier_bias", "split_inputs"]
