"""RunConfig: the flat parameters of a run, validated with messages that say how to fix them.

Field names are the notebook ``parameters`` (one literal each), so a notebook does
``RunConfig(**params)`` and a YAML preset is the same dictionary.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .stage_options import alias_names, fill_defaults, fold_aliases, validate_stage

if TYPE_CHECKING:
    from .runs import Run

_CHOICES = {
    "imbalance_profile": ("exp", "step"),
    "head": ("auto", "linear", "cosine", "lws"),
    "lr_schedule": ("step", "cosine", "constant", "balms_cosine"),
    "device": ("auto", "cpu", "cuda"),
    "precision": ("fp32", "bf16", "fp16"),
}
REPORTED_KEYS = ("overall", "many", "medium", "few")
# RunConfig.compile: off, torch.compile's default mode, or a named mode ("reduce-overhead" = CUDA graphs)
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# fields that may change between an interrupted run and its resumption
RESUME_FREE_FIELDS = ("resume", "device", "progress", "run_dir", "run_id", "epochs_per_call", "num_workers",
                      "compile", "method", "preset", "reported", "posthoc", "checkpoint_every_steps", "tensorboard")


# a YAML 1.2 / Python float spelling (YAML 1.1, which PyYAML reads, takes ``5e-4`` and ``1e3`` as text)
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
FLOAT_FIELDS = ("imbalance_factor", "lr", "momentum", "weight_decay", "lr_gamma", "mixup_alpha")
DICT_FIELDS = ("loss_params", "sampler_params", "dataset_params", "model_params", "stage_params", "reported",
               "posthoc")


def as_float(value: Any) -> Any:
    """``value`` with every string spelling a number (``"5e-4"``, ``"1e3"``, ``".5"``) made a float, inside dicts
    and lists too; anything else unchanged."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: as_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_float(v) for v in value]
    return value


def parse_value(raw: str) -> Any:
    """A command-line value read as YAML (numbers, lists, dicts, None/null, True/False), with every YAML 1.2 /
    Python float spelling a float: ``5e-4``, ``1e-3``, ``1E3``, ``.5``."""
    import yaml

    if raw.strip() in ("None", "none"):
        return None
    return as_float(yaml.safe_load(raw))


def _coerce(name: str, value: Any) -> Any:
    """A field's value as given by papermill or a YAML file: numeric text made a number in number fields, and a
    dict field given as YAML / JSON text (plain papermill ``-p loss_params "{s: 30}"``) read into a dict."""
    if name in FLOAT_FIELDS:
        return as_float(value)
    if name in DICT_FIELDS and isinstance(value, str):
        import yaml

        try:
            parsed = as_float(yaml.safe_load(value))
        except yaml.YAMLError:
            return value
        return {} if parsed is None else parsed
    if name in DICT_FIELDS:
        return as_float(value)
    return value


def _fold_download(params: dict[str, Any]) -> dict[str, Any]:
    """``download=True`` (``-p download True``) is ``dataset_params={'download': True}``: fetch a missing dataset."""
    if "download" not in params:
        return params
    out = dict(params)
    download = out.pop("download")
    if download not in (None, True, False):
        raise ValueError(f"RunConfig.download={download!r}: must be True or False")
    dataset_params = _coerce("dataset_params", out.get("dataset_params") or {})
    if download and isinstance(dataset_params, dict):
        out["dataset_params"] = {**dataset_params, "download": True}
    return out


def _non_finite(value: Any, where: str = "") -> str | None:
    """The key path of the first NaN/inf float inside ``value`` (dicts and lists), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for k, v in items:
        found = _non_finite(v, f"{where}[{k!r}]" if where or not isinstance(k, str) else k)
        if found is not None:
            return found
    return None


# the fields a notebook shows for every config (RunConfig._repr_html_), whether or not they differ from the defaults
RECIPE_FIELDS = ("dataset", "imbalance_factor", "model", "loss", "sampler", "epochs", "batch_size", "lr",
                 "lr_schedule", "weight_decay", "seed")


@dataclass(init=False)
class RunConfig:
    """All parameters of one training run (docs/architecture.md, "Public API").

    Construct with keywords only: ``RunConfig(dataset="digits_lt", loss="ce", epochs=10)``.
    Unknown fields and bad values raise a ValueError naming the field, the value and what is allowed.
    """

    # data
    dataset: str = "digits_lt"            # digits_lt | fashion_mnist_lt | cifar10_lt | cifar100_lt | synthetic_lt | file_list
    root: str | None = None               # data folder (None: the dataset's default)
    imbalance_factor: float = 100.0       # n_max / n_min of the training split (1 = balanced)
    imbalance_profile: str = "exp"        # exp | step
    data_seed: int = 0                    # seed of the long-tail selection (0 = the standard CIFAR-LT one)
    dataset_params: dict = field(default_factory=dict)  # extra get_dataset keywords (list files, n_max cap)
    val_per_class: int = 0                # balanced validation split from unused train images (0 = none)
    augment: bool = True                  # crop + flip as batched tensor ops
    mixup_alpha: float = 0.0              # Beta(a, a) mixup; 0 = off
    # model
    model: str = "convnet_small"          # resnet32 | resnet20 | resnet56 | convnet_small | resnet18 | ...
    head: str = "auto"                    # auto (cosine for cosine-input losses) | linear | cosine | lws
    model_params: dict = field(default_factory=dict)    # extra create_model keywords (e.g. weights_path, width)
    # loss and sampler
    loss: str = "ce"                      # a name in ltlab.losses.LOSSES
    loss_params: dict = field(default_factory=dict)     # hyper-parameters; None = method default
    drw_start: int | None = None          # epoch at which deferred re-weighting starts (losses with drw_start)
    sampler: str = "instance"             # a name in ltlab.data.SAMPLERS
    sampler_params: dict = field(default_factory=dict)
    # optimisation
    # (the defaults are the demo's recipe: `make demo`, the 01_train parameters cell and the CLI share them)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    warmup_epochs: int = 0
    lr_schedule: str = "cosine"           # step | cosine | constant | balms_cosine (BALMS/GALA code)
    milestones: list = field(default_factory=list)      # 0-based epochs where the step schedule decays
    lr_gamma: float = 0.1                 # step decay factor per milestone
    # execution
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda
    precision: str = "fp32"               # fp32 | bf16 | fp16 (autocast)
    channels_last: bool = False
    compile: bool | str = False           # torch.compile the model: True, or a mode: "reduce-overhead" (CUDA graphs), "max-autotune"
    num_workers: int = 0                  # DataLoader workers (file_list sets only)
    eval_every: int = 1                   # evaluate every k epochs (and always after the last)
    sync_bn: bool = False                 # multi-GPU (torchrun, CUDA): SyncBatchNorm, statistics over the global batch
    progress: bool = True                 # tqdm progress bar (off under CI)
    tensorboard: bool = False             # TensorBoard event files in run_dir (tensorboard --logdir runs/)
    # run directory and stages
    run_dir: str | None = None            # the run's own directory (None: runs/<run_id>)
    run_id: str | None = None             # name under runs/ (None: time + dataset + loss)
    init_from: str | None = None          # a run directory whose checkpoint initialises the model
    stage: str = "joint"                  # a name in ltlab.stages.STAGES (what trains: whole model or a stage two)
    stage_params: dict = field(default_factory=dict)    # the stage's options (None = its default); see ltlab.stages
    resume: bool = False                  # continue from run_dir/checkpoint.pt
    epochs_per_call: int | None = None    # stop after this many epochs in this call (resumable)
    checkpoint_every_steps: int | None = None  # also checkpoint every k training steps (exact mid-epoch resume)
    # documentation recorded in config.json (not used for training)
    method: str | None = None             # label for tables, e.g. "GCL" (None: the loss name)
    preset: str | None = None             # the preset file this run came from
    reported: dict = field(default_factory=dict)        # paper numbers (%): overall, many, medium, few
    posthoc: dict = field(default_factory=dict)         # post-hoc step, e.g. {"method": "pn", "tau": 1.0}

    def __init__(self, **params: Any):
        names = self.parameter_names()
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(f"RunConfig: unknown parameter(s) {unknown}; valid parameters: {', '.join(names)}")
        params = fold_aliases(_fold_download(params))  # flat stage keywords -> stage_params
        for f in dataclasses.fields(self):
            if f.name in params:
                value = _coerce(f.name, params[f.name])
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                value = f.default_factory()  # type: ignore[misc]
            else:
                value = f.default
            setattr(self, f.name, value)
        self.validate()

    # ------------------------------------------------------------------ validation
    def _fail(self, name: str, why: str) -> None:
        raise ValueError(f"RunConfig.{name}={getattr(self, name)!r}: {why}")

    def validate(self) -> "RunConfig":
        """Check every field; raise ValueError naming the field, the value and the allowed values."""
        from .data import DATASETS, SAMPLERS
        from .losses import LOSSES, loss_hparams
        from .models import MODELS

        for name, allowed in (("dataset", DATASETS), ("model", MODELS), ("loss", LOSSES), ("sampler", SAMPLERS)):
            if getattr(self, name) not in allowed:
                self._fail(name, f"unknown {name}; valid: {', '.join(sorted(allowed))}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                self._fail(name, f"must be one of {', '.join(allowed)}")
        for name in FLOAT_FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                self._fail(name, "must be a finite number")
        if self.imbalance_factor < 1:
            self._fail("imbalance_factor", "must be >= 1 (n_max / n_min; 1 means balanced)")
        if self.lr <= 0:
            self._fail("lr", "must be > 0")
        if self.momentum < 0 or self.weight_decay < 0 or self.mixup_alpha < 0:
            for name in ("momentum", "weight_decay", "mixup_alpha"):
                if getattr(self, name) < 0:
                    self._fail(name, "must be >= 0")
        for name, low in (("epochs", 1), ("batch_size", 1), ("eval_every", 1), ("warmup_epochs", 0),
                          ("num_workers", 0), ("seed", 0), ("data_seed", 0), ("val_per_class", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                self._fail(name, f"must be an integer >= {low}")
        for name in ("epochs_per_call", "checkpoint_every_steps"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                self._fail(name, "must be None or an integer >= 1")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            self._fail("warmup_epochs", f"must be smaller than epochs={self.epochs}")
        if not isinstance(self.milestones, (list, tuple)) or any(
                isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in self.milestones):
            self._fail("milestones", "must be a list of non-negative integer epochs, e.g. [160, 180]")
        self.milestones = list(self.milestones)
        for name in DICT_FIELDS:
            if not isinstance(getattr(self, name), dict):
                self._fail(name, "must be a dict, e.g. {} or {'s': 30} (or its YAML text: \"{s: 30}\")")
        valid = loss_hparams(self.loss)
        bad = sorted(set(self.loss_params) - set(valid))
        if bad:
            self._fail("loss_params", f"loss {self.loss!r} has no hyper-parameter(s) {bad}; valid: {valid}")
        for name in ("loss_params", "sampler_params", "dataset_params", "model_params", "stage_params"):
            bad_key = _non_finite(getattr(self, name))
            if bad_key is not None:
                self._fail(name, f"{bad_key} is not a finite number (NaN/inf); give a finite value or None")
        if self.drw_start is not None:
            if "drw_start" not in valid:
                with_drw = sorted(n for n in LOSSES if "drw_start" in loss_hparams(n))
                self._fail("drw_start", f"loss {self.loss!r} has no DRW; losses with drw_start: {with_drw}")
            if isinstance(self.drw_start, bool) or not isinstance(self.drw_start, int) or self.drw_start < 0:
                self._fail("drw_start", "must be None or an integer epoch >= 0")
        kind = LOSSES[self.loss].input_kind
        if kind == "cosine" and self.head not in ("auto", "cosine"):
            self._fail("head", f"loss {self.loss!r} takes cosine similarities; use head='cosine' or 'auto'")
        self._validate_stages()
        self._validate_documentation()
        for name in ("sync_bn", "tensorboard"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, "must be True or False")
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            self._fail("tensorboard", "needs the tensorboard package: pip install tensorboard")
        if self.compile not in COMPILE_MODES:
            self._fail("compile", f"must be True, False or one of the torch.compile modes "
                                  f"{[m for m in COMPILE_MODES if isinstance(m, str)]}")
        if self.resume and not self.run_dir:
            self._fail("resume", "resume=True needs run_dir=<the interrupted run's directory>")
        return self

    def _validate_stages(self) -> None:
        validate_stage(self)  # the stage's options, as plain data (ltlab.stage_options)

    def _validate_documentation(self) -> None:
        bad = sorted(set(self.reported) - set(REPORTED_KEYS))
        if bad:
            self._fail("reported", f"unknown key(s) {bad}; valid: {list(REPORTED_KEYS)}")
        for k, v in self.reported.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                self._fail("reported", f"{k}={v!r} must be a number (top-1 %) or None")
        if self.posthoc:
            from .posthoc.estimators import POSTHOC

            name = self.posthoc.get("method")
            if name not in POSTHOC:
                self._fail("posthoc", f"'method' must be one of {sorted(POSTHOC)}")
            options = POSTHOC[name].options
            bad = sorted(set(self.posthoc) - {"method", *options})
            if bad:
                self._fail("posthoc", f"unknown key(s) {bad} for {name!r}; valid: {list(options)}")
            if self.posthoc.get("select_on", "val") not in ("val", "test"):
                self._fail("posthoc", "select_on must be 'val' or 'test'")

    # ------------------------------------------------------------------ derived values
    @property
    def resolved_head(self) -> str:
        """The head actually built: cosine for cosine-input losses when ``head='auto'``."""
        if self.head != "auto":
            return self.head
        from .losses import LOSSES
        return "cosine" if LOSSES[self.loss].input_kind == "cosine" else "linear"

    def loss_kwargs(self) -> dict:
        """Keyword arguments for ``create_loss``: ``loss_params`` plus the top-level ``drw_start``."""
        kw = dict(self.loss_params)
        if self.drw_start is not None:
            kw["drw_start"] = self.drw_start
        return kw

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def parameter_names(cls) -> list[str]:
        """Every keyword RunConfig takes: its fields and the flat stage keywords that set ``stage_params``
        (``ltlab.stage_options.alias_names``), and ``download`` (sets ``dataset_params['download']``)."""
        return cls.field_names() + alias_names() + ["download"]

    @classmethod
    def from_namespace(cls, namespace: dict) -> "RunConfig":
        """Build from a notebook's ``globals()``: takes exactly the names RunConfig accepts (``parameter_names``)."""
        return cls(**{k: namespace[k] for k in cls.parameter_names() if k in namespace})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resolved_stage_params(self) -> dict:
        """``stage_params`` with the stage's defaults filled in."""
        return fill_defaults(self.stage, self.stage_params)

    def fingerprint(self) -> dict:
        """The fields that must match for a checkpoint to be resumed (stage options with their defaults)."""
        return {**{k: v for k, v in self.to_dict().items() if k not in RESUME_FREE_FIELDS},
                "stage_params": self.resolved_stage_params()}

    # ------------------------------------------------------------------ display
    @classmethod
    def defaults(cls) -> dict:
        """Every field's default value."""
        return {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
                else f.default for f in dataclasses.fields(cls)}

    def changed(self) -> dict:
        """The fields whose value differs from the default, in field order (``RunConfig(**changed())``
        rebuilds this config)."""
        defaults = self.defaults()
        return {k: v for k, v in self.to_dict().items() if v != defaults[k]}

    def __repr__(self) -> str:
        return "RunConfig({})".format(", ".join(f"{k}={v!r}" for k, v in self.changed().items()))

    def _repr_html_(self) -> str:
        """Notebook display: the recipe (``RECIPE_FIELDS``) and every other field that differs from the defaults;
        the ``default`` column is filled where a value differs (the notebook's own defaults are RunConfig's, so a
        table of differences alone would be empty for a first run)."""
        import pandas as pd

        defaults, changed = self.defaults(), self.changed()
        names = [*RECIPE_FIELDS, *(k for k in changed if k not in RECIPE_FIELDS)]
        rows = {k: {"value": repr(getattr(self, k)), "default": repr(defaults[k]) if k in changed else ""}
                for k in names}
        table = pd.DataFrame.from_dict(rows, orient="index")
        return (f"<b>RunConfig</b>: {self.loss} on {self.dataset} (IF {self.imbalance_factor:g}), {self.model}, "
                f"{self.epochs} epochs; {len(changed)} of {len(defaults)} fields differ from the defaults (their "
                f"default is shown; <code>config.to_dict()</code> has all):{table.to_html()}")

    def replace(self, **changes: Any) -> "RunConfig":
        """A new RunConfig with ``changes``; a flat stage keyword (``classifier_init``, ...) overrides the
        ``stage_params`` entry it sets."""
        d = self.to_dict()
        flat = {k: changes.pop(k) for k in list(changes) if k in alias_names()}
        d.update(changes)
        if flat:
            folded = fold_aliases({"stage": d["stage"], **flat})["stage_params"]
            d["stage_params"] = {**d["stage_params"], **folded}
        return RunConfig(**d)


# ---------------------------------------------------------------------- configs from runs
def run_config(run: Run | str | os.PathLike) -> RunConfig:
    """The RunConfig a run directory was trained with (``config.json``; keys RunConfig does not take dropped)."""
    from .runs import as_run

    cfg = as_run(run).config
    return RunConfig(**{k: cfg[k] for k in RunConfig.parameter_names() if k in cfg and k != "resume"})

