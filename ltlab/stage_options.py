"""What each stage accepts, as plain data: the base layer's view of the stages.

For every stage name: its options (the keys of ``RunConfig.stage_params`` with their defaults), their allowed
values, the flat RunConfig keywords that set them (as RunConfig had before ``stage_params``), whether it needs
an ``init_from`` run, whether it runs under torchrun, and the config rules checked before anything runs.
:class:`ltlab.config.RunConfig` validates and folds stage options with this module alone, so building a
config imports no stage, engine or run-file code; the stages of :mod:`ltlab.stages` (which build what the
loop trains) read their options from :data:`STAGE_OPTIONS`, and ``tests/test_layering.py`` checks that the
two registries name the same stages. Adding a stage: one :class:`StageOptions` entry here and one
``Stage`` subclass in ``ltlab/stages/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = ["StageOptions", "STAGE_OPTIONS", "WARM_START", "WARM_START_CHOICES", "AFG_DEFAULTS", "stage_options",
           "alias_names", "fold_aliases", "fill_defaults", "validate_stage", "fail"]

# options of every stage that can start from a stage one (init_from): cRT, LWS (Kang et al. 2020), MiSLAS
WARM_START: dict[str, Any] = {"classifier_init": "stage_one", "lws_freeze_linear": True}
WARM_START_CHOICES: dict[str, tuple] = {"classifier_init": ("stage_one", "reset"), "lws_freeze_linear": (True, False)}

# the AFG options of RunConfig.stage_params (formerly afg_params), with their sources
AFG_DEFAULTS: dict[str, Any] = {
    "k": 2,                 # support size K (paper: 2 or 3)
    "beta": 0.6,            # initial calibration strength of tail classes (paper implementation details)
    "gamma": 0.1,           # covariance dispersion (paper: 0 or 0.1)
    "tukey_lambda": 0.5,    # Tukey exponent (LIB: DC's value; paper gives none)
    "stats_space": "raw",   # class statistics on raw features (LIB, paper Eq. 5-6 / DC code)
    "tail_classes": None,   # None: classes with n_c <= 100 (LIB, schedules.glag_tail_classes)
    "beta_step": 0.05,      # beta rule step (LIB, schedules.glag_beta_update); 0 keeps beta fixed
    "kd": True,             # head-class distillation from the stage-one classifier (paper Eq. 11)
    "kd_s": 1.0,            # alpha(T) = s (c^(T/Tmax) - 1), same (s, c) as GraLoss (paper)
    "kd_c": 2.0,
}


def fail(config: RunConfig, name: str, why: str) -> None:
    """ValueError naming a RunConfig field (``name`` may be ``stage_params['k']``), its value and the fix."""
    base, _, key = name.partition("[")
    value = getattr(config, base)
    if key:
        value = value.get(key.strip("]'\""), "<default>")
    raise ValueError(f"RunConfig.{name}={value!r}: {why}")


@dataclass(frozen=True)
class StageOptions:
    """One stage as RunConfig sees it (see the module docstring). ``check(config, params)`` holds the rules
    beyond ``choices`` (``params``: ``stage_params`` with the defaults filled in)."""

    name: str
    summary: str
    defaults: dict[str, Any]
    choices: dict[str, tuple] = field(default_factory=dict)
    aliases: dict[str, str | None] = field(default_factory=dict)  # flat keyword -> stage_params key (None: a dict)
    needs_init_from: bool = False
    distributed: bool = True  # runs under torchrun (one model over several processes)
    check: Callable[[RunConfig, dict[str, Any]], None] | None = None


def _check_afg(config: RunConfig, params: dict[str, Any]) -> None:
    if config.checkpoint_every_steps is not None:
        fail(config, "checkpoint_every_steps", "stage='afg' checkpoints once per epoch (its beta rule runs at "
                                               "epoch starts); leave it None")
    if config.resolved_head != "linear":
        fail(config, "head", "stage='afg' trains a linear classifier on features; use head='auto' or 'linear' "
                             "with a logits loss such as 'ce'")
    if config.mixup_alpha > 0 or config.sampler != "instance":
        fail(config, "stage", "stage='afg' balances classes with generated features; use mixup_alpha=0 and "
                              "sampler='instance'")
    if config.val_per_class < 1 and params["beta_step"] != 0:
        fail(config, "val_per_class", "stage='afg' updates beta on a balanced validation split; set "
                                      "val_per_class >= 1 (or stage_params={'beta_step': 0} to keep beta fixed)")


_CLASSIFIER = {**WARM_START, "backbone_mode": "eval"}
STAGE_OPTIONS: dict[str, StageOptions] = {o.name: o for o in (
    StageOptions("joint", "train the whole model (from scratch, or fine-tuned from init_from)",
                 defaults=dict(WARM_START), choices=dict(WARM_START_CHOICES), aliases={k: k for k in WARM_START}),
    StageOptions("classifier", "train the head on the frozen backbone of init_from (cRT, LWS, GCL stage two)",
                 defaults=_CLASSIFIER, choices={**WARM_START_CHOICES, "backbone_mode": ("eval", "train")},
                 aliases={k: k for k in _CLASSIFIER}, needs_init_from=True),
    StageOptions("afg", "GLAG stage two: train the head on real + generated Tukey-space features of init_from's "
                        "backbone",
                 defaults={"classifier_init": WARM_START["classifier_init"], **AFG_DEFAULTS},
                 choices={"classifier_init": WARM_START_CHOICES["classifier_init"], "stats_space": ("raw", "tukey"),
                          "kd": (True, False)},
                 aliases={"classifier_init": "classifier_init", "afg_params": None}, needs_init_from=True,
                 distributed=False, check=_check_afg),
)}


def stage_options(name: str) -> StageOptions:
    """The options of stage ``name``; ValueError listing the valid stages."""
    if name not in STAGE_OPTIONS:
        raise ValueError(f"RunConfig.stage={name!r}: must be one of {', '.join(STAGE_OPTIONS)}")
    return STAGE_OPTIONS[name]


def fill_defaults(name: str, stage_params: dict[str, Any]) -> dict[str, Any]:
    """``stage_params`` of stage ``name`` with its defaults filled in (None means the default)."""
    return {**stage_options(name).defaults, **{k: v for k, v in stage_params.items() if v is not None}}


def validate_stage(config: RunConfig) -> None:
    """Check the stage fields of ``config`` (ValueError naming the field, the value and the fix)."""
    opts = stage_options(config.stage)
    if config.init_from is not None and not isinstance(config.init_from, str):
        fail(config, "init_from", "must be None or the path of a stage-one run directory")
    if opts.needs_init_from and not config.init_from:
        fail(config, "stage", f"a {opts.name!r} stage needs init_from=<stage-one run directory>")
    bad = sorted(set(config.stage_params) - set(opts.defaults))
    if bad:
        fail(config, "stage_params", f"stage {opts.name!r} has no option(s) {bad}; valid: {sorted(opts.defaults)}")
    params = fill_defaults(opts.name, config.stage_params)
    for key, allowed in opts.choices.items():
        if params[key] not in allowed or isinstance(params[key], bool) != isinstance(allowed[0], bool):
            fail(config, f"stage_params['{key}']", f"must be one of {', '.join(map(str, allowed))}")
    if opts.check is not None:
        opts.check(config, params)


def alias_names() -> list[str]:
    """Flat RunConfig keywords that set ``stage_params``: ``classifier_init``, ``backbone_mode``, ``afg_params``, ..."""
    return list(dict.fromkeys(a for o in STAGE_OPTIONS.values() for a in o.aliases))


def _alias_default(flat: str) -> Any:
    for o in STAGE_OPTIONS.values():
        if flat in o.aliases:
            key = o.aliases[flat]
            return {} if key is None else o.defaults[key]
    raise KeyError(flat)


def fold_aliases(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with flat stage keywords moved into ``stage_params`` (RunConfig keyword dicts).

    A keyword of the run's stage sets its ``stage_params`` entry (``afg_params``, a dict, sets several); one
    that belongs to other stages is dropped when it holds their default (so every old config.json reads
    back) and refused otherwise, as is a value that contradicts ``stage_params``.
    """
    flat = [k for k in params if k in alias_names()]
    if not flat or not isinstance(params.get("stage_params", {}), dict):
        return params  # nothing to fold, or a stage_params RunConfig.validate refuses anyway
    out = dict(params)
    stage = STAGE_OPTIONS.get(out.get("stage", "joint"))
    folded = dict(out.get("stage_params") or {})
    for name in flat:
        value = out.pop(name)
        if stage is None or name not in stage.aliases:
            if value != _alias_default(name):
                owners = [o.name for o in STAGE_OPTIONS.values() if name in o.aliases]
                raise ValueError(f"RunConfig.{name}={value!r}: an option of stage {' / '.join(owners)}; this run "
                                 f"has stage={out.get('stage', 'joint')!r}")
            continue
        key = stage.aliases[name]
        if key is None and not isinstance(value, dict):
            raise ValueError(f"RunConfig.{name}={value!r}: must be a dict of stage options, e.g. {{'k': 3}}")
        for k, v in (value.items() if key is None else [(key, value)]):
            if k in folded and folded[k] != v:
                raise ValueError(f"RunConfig.{name} sets {k}={v!r} but stage_params has {k}={folded[k]!r}; "
                                 "give it once")
            folded[k] = v
    out["stage_params"] = folded
    return out
