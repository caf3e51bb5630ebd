"""RunConfig: the flat parameters of a run, validated with messages that say how to fix them.

Field names are the notebook ``parameters`` (one literal each), so a notebook does
``RunConfig(**params)`` and a YAML preset is the same dictionary.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .stage_options import alias_names, fill_defaults, fold_aliases, validate_stage

if TYPE_CHECKING:
    from .runs import Run

_CHOICES = {
    "imbalance_profile": ("exp", "step"),
    "head": ("auto", "linear", "linear_nobias", "cosine", "lws"),
    "lr_schedule": ("step", "cosine", "constant", "balms_cosine"),
    "device": ("auto", "cpu", "cuda"),
    "precision": ("fp32", "bf16", "fp16"),
}
REPORTED_KEYS = ("overall", "many", "medium", "few")
# RunConfig.compile: off, torch.compile's default mode, or a named mode ("reduce-overhead" = CUDA graphs)
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# what a run directory records (RunConfig.save_logits / RunConfig.probes; docs/running.md, "What a run records")
SAVE_LOGITS = {"float32": "the test logits of the last evaluation in per_class.npz, as computed",
               "float16": "the same in half precision: half the size (iNaturalist: 400 MB instead of 800 MB)",
               "none": "no test logits: post-hoc analyses (logit adjustment, PN, the post-hoc panel) cannot run"}
PROBES = {"full": "per-class positive/negative gradient sums (per epoch, accumulated, GALA code), epoch 1 at step "
                  "grain, and the negative gradient by source class (by source group above MATRIX_MAX_CLASSES)",
          "cheap": "the per-class positive/negative gradient sums only (per epoch, accumulated, GALA code): no step "
                   "records, no by-source or by-group matrices",
          "off": "no gradient probe (weight norms, prediction counts and loss internals are still recorded)"}

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
    and lists too; anything else unchanged. Run on plain data only (:func:`check_plain` first: it bounds the size)."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: as_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_float(v) for v in value]
    return value


# ---------------------------------------------------------------------- parameters are data
MAX_VALUES = 100_000    # values in one parameter value / preset file (aliases could expand a small file)
MAX_DEPTH = 32          # nesting of lists and dicts
MAX_YAML_BYTES = 1 << 20  # a preset file; a parameter's text
_INT64 = 1 << 63


def _plain_error(where: str, why: str, plain: bool = True) -> ValueError:
    return ValueError(f"{where}: {why}" + ("; parameters are plain data (None, True/False, numbers, text, lists "
                                           "and dicts with text keys)" if plain else ""))


def check_plain(value: Any, where: str = "parameters") -> Any:
    """``value`` if it is built of None / bool / int / float / str / list / dict (text keys) only, else a ValueError
    naming where (``where`` plus the key path) and what it found.

    This is what makes a parameter data: papermill writes these types as Python literals with escaping and
    anything else as unescaped text (``bytes`` from YAML's ``!!binary`` broke out of its string and ran).
    Tuples become lists and numpy scalars Python numbers (the returned value is a plain copy where that
    happened). Sizes are bounded (``MAX_VALUES`` values, ``MAX_DEPTH`` levels, integers within 64 bits) so a
    value built with YAML aliases cannot take minutes to walk.
    """
    count = [0]

    def name(path: tuple) -> str:
        keys = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")
        if where == "parameters":
            return keys or where
        return f"{where} {keys}" if keys else where

    def walk(v: Any, path: tuple) -> Any:
        count[0] += 1
        if count[0] > MAX_VALUES:
            raise _plain_error(where, f"more than {MAX_VALUES} values (a YAML alias expanded?)")
        if len(path) > MAX_DEPTH:
            raise _plain_error(name(path), f"nested deeper than {MAX_DEPTH} levels")
        kind = type(v)
        if v is None or kind in (bool, float, str):
            return v
        if kind is int:
            if not -_INT64 <= v < _INT64:
                raise _plain_error(name(path), f"the integer {str(v)[:30]} is too large (more than 64 bits)", False)
            return v
        if kind is dict:
            out = {}
            for k, x in v.items():
                if type(k) is not str:
                    raise _plain_error(name(path), f"the key {k!r} is a {type(k).__name__}, not text")
                out[k] = walk(x, (*path, k))
            return out
        if kind in (list, tuple):
            return [walk(x, (*path, i)) for i, x in enumerate(v)]
        if _is_numpy_scalar(v):
            return walk(v.item(), path)
        shown = repr(v)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        what = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        raise _plain_error(name(path), f"a {what} value ({shown}) is not allowed")

    return walk(value, ())


def _is_numpy_scalar(v: Any) -> bool:
    np = __import__("sys").modules.get("numpy")
    return np is not None and isinstance(v, np.generic) and v.dtype.kind in "biuf"


def _yaml_loader():
    """A PyYAML loader for the YAML 1.2 core schema: null (``~``, ``null``, empty), ``true``/``false`` (any case
    form YAML 1.2 allows), decimal / ``0o`` / ``0x`` integers (``010`` is 10), floats (``1e-3``, ``.inf``); every
    other plain scalar is text (``no``, ``on``, ``12:30``, ``2024-01-01``). Refused: aliases (``*name``: a small
    file could expand to billions of values), duplicate keys, and every tag but the core ones (``!!binary``,
    ``!!python/...``, ``!!set``, ``!!timestamp``, ...)."""
    import yaml

    if _LOADER:
        return _LOADER[0]

    class CoreLoader(yaml.SafeLoader):
        yaml_implicit_resolvers: dict = {}
        yaml_constructors: dict = {}

        def compose_node(self, parent, index):  # noqa: ANN001
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.MarkedYAMLError(problem=f"the alias *{event.anchor} is not allowed (aliases could expand "
                                           "a small file to billions of values); write the value out",
                                           problem_mark=event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):  # noqa: ANN001
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    raise yaml.MarkedYAMLError(problem=f"a {type(key).__name__} cannot be a key",
                                               problem_mark=key_node.start_mark) from None
                if first is not key_node:
                    raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r} (first at line "
                                               f"{first.start_mark.line + 1}); give each key once",
                                               problem_mark=key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    core = "tag:yaml.org,2002:"
    resolvers = [
        ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
        ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
        ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
        ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                  r"|\.(?:nan|NaN|NAN))$", list("-+0123456789.")),
    ]
    for tag, regex, first in resolvers:
        CoreLoader.add_implicit_resolver(core + tag, re.compile(regex), first)

    def scalar(kind):
        def construct(loader, node):
            text = loader.construct_scalar(node)
            try:
                return kind(text)
            except ValueError:
                raise yaml.MarkedYAMLError(problem=f"{text!r} is not a valid !!{kind.__name__[1:]}",
                                           problem_mark=node.start_mark) from None
        return construct

    def _int(t: str) -> int:
        return int(t[2:], 8) if t[:2] == "0o" else int(t[2:], 16) if t[:2] == "0x" else int(t, 10)

    def _float(t: str) -> float:
        low = t.lower().lstrip("+")
        if low in (".inf", "-.inf", ".nan"):
            return float(low.replace(".", ""))
        if not _FLOAT.fullmatch(t):
            raise ValueError(t)
        return float(t)

    def _bool(t: str) -> bool:
        if t.lower() not in ("true", "false"):
            raise ValueError(t)
        return t.lower() == "true"

    def _null(t: str) -> None:
        if t not in ("~", "null", "Null", "NULL", ""):
            raise ValueError(t)

    _int.__name__, _float.__name__, _bool.__name__, _null.__name__ = "_int", "_float", "_bool", "_null"
    for tag, fn in (("int", _int), ("float", _float), ("bool", _bool), ("null", _null)):
        CoreLoader.add_constructor(core + tag, scalar(fn))
    CoreLoader.add_constructor(core + "str", yaml.SafeLoader.construct_yaml_str)
    CoreLoader.add_constructor(core + "seq", yaml.SafeLoader.construct_yaml_seq)
    CoreLoader.add_constructor(core + "map", yaml.SafeLoader.construct_yaml_map)

    def refuse(loader, node):
        raise yaml.MarkedYAMLError(problem=f"the tag {node.tag.replace(core, '!!')} is not allowed (only plain "
                                   "data: text, numbers, true/false, null, lists and mappings)",
                                   problem_mark=node.start_mark)
    CoreLoader.add_constructor(None, refuse)
    _LOADER.append(CoreLoader)
    return CoreLoader


_LOADER: list = []


def load_yaml(text: str, where: str) -> Any:
    """``text`` read as YAML 1.2 core-schema data (:func:`_yaml_loader`) and checked with :func:`check_plain`;
    a ValueError of one line naming ``where`` (a file, or ``-p key``), the line and the problem otherwise."""
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise ValueError(f"{where}: more than {MAX_YAML_BYTES} characters; a preset or a parameter is small")
    try:
        value = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a safe loader for the core schema
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        raise ValueError(f"{where}: invalid YAML{at}: {(context + ', ') if context else ''}{problem}") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply") from None
    return check_plain(value, where)


def load_yaml_file(path: str | os.PathLike) -> Any:
    """A YAML file (preset, grid) read with :func:`load_yaml`: only a regular file of at most ``MAX_YAML_BYTES``
    (a FIFO or a device would hang the read), decoded as UTF-8; every failure one line naming the file."""
    import stat

    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"preset {p} does not exist") from None
    except OSError as exc:
        raise ValueError(f"preset {p}: cannot open it ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"preset {p} is not a regular file; give a YAML file")
        if st.st_size > MAX_YAML_BYTES:
            raise ValueError(f"preset {p} is {st.st_size} bytes; a preset is at most {MAX_YAML_BYTES}")
        data = os.read(fd, MAX_YAML_BYTES + 1)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"preset {p} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return load_yaml(text, f"preset {p}")


def _text_field(name: str) -> bool:
    """Whether field ``name`` takes text (``str`` or ``str | None``): its command-line value stays as typed."""
    f = _FIELDS.get(name)
    return f is not None and f.type in ("str", "str | None")


def parse_value(raw: str, field: str | None = None) -> Any:
    """The one text -> value parser of every command-line value (``-p``, ``--grid``, sweep ``-p``): YAML 1.2 core
    schema (``010`` is 10, ``no`` and ``12:30`` are text, ``1e-3`` a float, quoted text stays text) plus ``None``
    / ``none`` for None; no aliases or tags (:func:`load_yaml`). ``field``: the parameter (``stage_two.KEY``
    names KEY): a text field (``run_id``, ``method``, ...) keeps what was typed unless it is quoted or null, so
    ``-p run_id 010`` is the name ``"010"``. Errors name ``-p <field>``."""
    name = (field or "").rpartition(".")[2]
    where = f"-p {field}" if field else "value"
    if not isinstance(raw, str):
        raise ValueError(f"{where}: expected text, got {type(raw).__name__}")
    if raw.strip() in ("None", "none"):
        return None
    value = load_yaml(raw, where)
    if name and _text_field(name) and value is not None and not isinstance(value, str):
        return raw.strip()
    return value


def _coerce(name: str, value: Any) -> Any:
    """A field's value as given by papermill or a YAML file: numeric text made a number in number fields, and a
    dict field given as YAML / JSON text (plain papermill ``-p loss_params "{s: 30}"``) read into a dict."""
    if name in FLOAT_FIELDS:
        return as_float(value)
    if name in DICT_FIELDS and isinstance(value, str):
        try:
            parsed = as_float(load_yaml(value, f"RunConfig.{name}"))
        except ValueError:
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


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _integer(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


# what each annotation of a RunConfig field accepts (checked before anything else: RunConfig._check_types)
FIELD_TYPES = {
    "str": (lambda v: isinstance(v, str), "text"),
    "str | None": (lambda v: v is None or isinstance(v, str), "text or None"),
    "float": (_number, "a number"),
    "int": (_integer, "an integer"),
    "int | None": (lambda v: v is None or _integer(v), "an integer or None"),
    "bool": (lambda v: isinstance(v, bool), "True or False"),
    "bool | str": (lambda v: isinstance(v, (bool, str)), "True, False or text"),
    "dict": (lambda v: isinstance(v, dict), "a dict, e.g. {} or {'s': 30} (or its YAML text: \"{s: 30}\")"),
    "list": (lambda v: isinstance(v, (list, tuple)), "a list"),
    "float | None": (lambda v: v is None or _number(v), "a number or None"),
    "bool | None": (lambda v: v is None or isinstance(v, bool), "True, False or None"),
    "str | bool": (lambda v: isinstance(v, (bool, str)), "True, False or text"),
    "list | None": (lambda v: v is None or isinstance(v, (list, tuple)), "a list or None"),
    "dict | None": (lambda v: v is None or isinstance(v, dict), "a dict or None"),
}
PATH_FIELDS = ("root", "run_dir", "init_from")  # may also be given as a pathlib.Path
# get_dataset's own arguments: set by RunConfig fields, never through dataset_params
DATASET_ARGUMENTS = ("name", "root", "split", "imbalance_factor", "seed")
# upper bounds of numeric fields (lower bounds are in validate); a larger value is a typo or runs without end
UPPER_BOUNDS = {"epochs": 100_000, "batch_size": 1 << 20, "imbalance_factor": 1e6, "warmup_epochs": 100_000,
                "eval_every": 100_000, "milestones": 100_000, "drw_start": 100_000, "epochs_per_call": 100_000,
                "seed": 2 ** 32 - 1, "data_seed": 2 ** 32 - 1, "num_workers": 1024, "val_per_class": 1_000_000,
                "checkpoint_every_steps": 1 << 40, "momentum": 1.0, "mixup_alpha": 1000.0}
UPPER_WHY = {"seed": " (numpy and torch seeds are 32-bit)", "data_seed": " (numpy seeds are 32-bit)",
             "epochs": "; a longer run is a typo", "momentum": " (SGD momentum is a fraction)"}


def _plain_field(name: str, value: Any) -> Any:
    """A field's value checked to be plain data (:func:`check_plain`), named ``RunConfig.<name>``; a path stays a
    path (root, run_dir, init_from may be a pathlib.Path)."""
    if name in PATH_FIELDS and isinstance(value, os.PathLike):
        return value
    return check_plain(value, f"RunConfig.{name}")


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
    head: str = "auto"                    # auto (cosine for cosine-input losses) | linear | linear_nobias | cosine | lws
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
    # what the run directory records (issue 23: runs of 1,000-8,142 classes); see SAVE_LOGITS / PROBES below
    save_logits: str = "float32"          # test logits in per_class.npz: float32 | float16 (half the size) | none
    probes: str = "full"                  # gradient probe: full | cheap (pos/neg sums only) | off
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
                value = _coerce(f.name, _plain_field(f.name, params[f.name]))
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                value = f.default_factory()  # type: ignore[misc]
            else:
                value = f.default
            setattr(self, f.name, value)
        self.validate()

    # ------------------------------------------------------------------ validation
    def _fail(self, name: str, why: str) -> None:
        shown = repr(getattr(self, name))
        raise ValueError(f"RunConfig.{name}={shown if len(shown) <= 200 else shown[:197] + '...'}: {why}")

    def validate(self) -> "RunConfig":
        """Check every field; raise ValueError naming the field, the value and the allowed values."""
        from .data import DATASETS, SAMPLERS
        from .losses import LOSSES, loss_hparams
        from .models import MODELS

        self._check_types()
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
        self._check_bounds()
        self._check_places()
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
        self._check_loss_param_types()
        reserved = sorted(set(self.dataset_params) & set(DATASET_ARGUMENTS))
        if reserved:
            self._fail("dataset_params", f"{reserved} are RunConfig fields of their own, not dataset_params keys: "
                                         f"give them as parameters (e.g. root=...)")
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
        self._check_drw_once()
        kind = LOSSES[self.loss].input_kind
        if kind == "cosine" and self.head not in ("auto", "cosine"):
            self._fail("head", f"loss {self.loss!r} takes cosine similarities; use head='cosine' or 'auto'")
        self._validate_stages()
        self._validate_documentation()
        self._validate_records()
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

    def _check_types(self) -> None:
        """Every field has a value of its annotated type (``FIELD_TYPES``): text fields text, numbers numbers, ...
        (a number where text belongs, e.g. ``run_id=10``, would otherwise fail far away, or be written into a
        notebook as something else)."""
        for f in dataclasses.fields(self):
            if f.type not in FIELD_TYPES:  # an annotation without an entry: checked by validate's own rules only
                continue
            ok, what = FIELD_TYPES[f.type]
            v = getattr(self, f.name)
            if not ok(v) and not (f.name in PATH_FIELDS and isinstance(v, os.PathLike)):
                hint = " (quote it in YAML, e.g. '010', or give it as text)" if "text" in what and isinstance(
                    v, (int, float, bool)) else ""
                self._fail(f.name, f"must be {what}, not {type(v).__name__}{hint}")
            if f.type in ("int", "int | None") and v is not None and type(v) is not int:
                setattr(self, f.name, int(v))  # numpy integers: config.json and checkpoints hold plain numbers
            if f.type == "float" and type(v) not in (int, float) and isinstance(v, numbers.Real):
                setattr(self, f.name, float(v))

    def _check_bounds(self) -> None:
        """Upper bounds (``UPPER_BOUNDS``): a value past them is a typo or would train until killed
        (``epochs=99999999999999999999999``), overflow a seed or allocate without end."""
        for name, high in UPPER_BOUNDS.items():
            v = getattr(self, name)
            values = v if isinstance(v, list) else [v]
            if any(_number(x) and x > high for x in values):
                self._fail(name, f"must be at most {high}" + UPPER_WHY.get(name, ""))
        for k in ("drw_start",):
            v = self.loss_params.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 <= v <= UPPER_BOUNDS["epochs"]:
                self._fail("loss_params", f"{k}={v!r} must be an epoch between 0 and {UPPER_BOUNDS['epochs']}")

    def _check_places(self) -> None:
        """``run_id`` is one name under ``runs/`` and a relative ``run_dir`` stays below the folder it is relative
        to: neither may climb out with ``..`` (an absolute ``run_dir`` is taken as given)."""
        rid = self.run_id
        if rid is not None and (rid in ("", ".", "..") or "/" in rid or "\\" in rid or "\0" in rid):
            self._fail("run_id", "must be one folder name under runs/ (no '/', '..' or empty); give a path as run_dir")
        for name in ("run_dir",):
            v = getattr(self, name)
            if v is None:
                continue
            p = Path(os.fspath(v)).expanduser()
            if "\0" in str(v) or not str(v).strip():
                self._fail(name, "must be a folder path")
            if not p.is_absolute() and ".." in p.parts:
                self._fail(name, "a relative path may not climb out with '..'; give an absolute path to write there")

    def _check_loss_param_types(self) -> None:
        """Each ``loss_params`` value has the type of the loss's default (number, True/False, text) or is None."""
        import inspect

        from .losses import LOSSES

        sig = inspect.signature(LOSSES[self.loss].__init__).parameters
        for k, v in self.loss_params.items():
            default = sig[k].default if k in sig else None
            if v is None or default is None or default is inspect.Parameter.empty:
                continue
            if isinstance(default, bool):
                ok, what = isinstance(v, bool), "True or False"
            elif isinstance(default, (int, float)):
                ok, what = isinstance(v, (int, float)) and not isinstance(v, bool), "a number"
            elif isinstance(default, str):
                ok, what = isinstance(v, str), "text"
            else:
                continue
            if not ok:
                self._fail("loss_params", f"{k}={v!r} must be {what} (the default of loss {self.loss!r} is "
                                          f"{default!r}), or None for the default")

    def _check_drw_once(self) -> None:
        """DRW has one place (the top-level ``drw_start``) and must switch on within the run: a ``drw_start`` at or
        past ``epochs`` would train the plain loss under the method's name (a shortened preset scales it instead)."""
        inner = self.loss_params.get("drw_start")
        if self.drw_start is not None and inner is not None:
            self._fail("drw_start", "DRW is given twice (top level and loss_params['drw_start']); give it once, as the "
                                    "top-level drw_start")
        for name, v in (("drw_start", self.drw_start), ("loss_params", inner)):
            if _number(v) and isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and v >= self.epochs:
                self._fail(name, f"drw_start={v} is at or past epochs={self.epochs}: DRW would never switch on and the "
                                 f"run would be plain {self.loss!r}; give drw_start < epochs (e.g. "
                                 f"{max(int(0.8 * self.epochs), 0)}, 80% of the run), or None for no DRW (a shortened "
                                 "preset scales drw_start with its epochs)")

    def _validate_records(self) -> None:
        """``save_logits`` and ``probes`` (issue 23): one message listing the valid values and what each does."""
        for name, allowed in (("save_logits", SAVE_LOGITS), ("probes", PROBES)):
            if getattr(self, name) not in allowed:
                self._fail(name, "must be one of " + "; ".join(f"{k!r} ({v})" for k, v in allowed.items()))

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
        if flat and "stage_params" in changes:  # both given: they must agree ("give it once")
            d = fold_aliases({**d, **flat})
        elif flat:
            folded = fold_aliases({"stage": d["stage"], **flat})["stage_params"]
            d["stage_params"] = {**d["stage_params"], **folded}
        return RunConfig(**d)


# ---------------------------------------------------------------------- configs from runs
_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def run_config(run: Run | str | os.PathLike) -> RunConfig:
    """The RunConfig a run directory was trained with (``config.json``; keys RunConfig does not take dropped)."""
    from .runs import as_run

    cfg = as_run(run).config
    return RunConfig(**{k: cfg[k] for k in RunConfig.parameter_names() if k in cfg and k != "resume"})

