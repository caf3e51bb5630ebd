"""Search spaces: for every hyper-parameter of a method its type, default, sensible range and scale.

Each loss declares ``SEARCH_SPACE`` (a tuple of :class:`Param`) in its own file, next to its maths; the
sampler, DRW and recipe spaces are declared here. The workbench panel builds its form from them, the
search (:mod:`ltlab.launch.search`) samples from them and docs/tuning.md lists them. A range is where a value is
*sensible* (what the papers tried or used); the panel lets a value outside it through with a note, a search
space refuses it.

Names: a loss hyper-parameter keeps its own name (``noise_mul``) unless it collides with a RunConfig field
(``ghm_c``'s ``momentum`` is ``loss_params.momentum``); sampler options are ``sampler_params.<name>``;
``drw_start`` is RunConfig's top-level field. Everything else is a RunConfig field (``lr``, ``epochs``).

Base layer: :class:`Param` lives in :mod:`ltlab.losses.param` (pure data, what each loss file imports); the
readers here import the loss registry and RunConfig lazily.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .losses.param import Kind, Param, Scale, drw, fixed  # noqa: F401 - Param is declared beside the losses

# ---------------------------------------------------------------------- sampler, DRW and recipe spaces
SAMPLER = Param("sampler", "choice", "instance", choices=("instance", "class_balanced", "sqrt", "effective_number",
                                                          "cben", "progressive", "class_aware"),
                source="ltlab.data.SAMPLERS (classifier-balancing, LDAM-DRW, GCL code)")
SAMPLER_SPACES: dict[str, tuple[Param, ...]] = {
    "effective_number": (Param("beta", "choice", 0.9999, choices=(0.9, 0.99, 0.999, 0.9999),
                               source="Cui et al. beta grid; LDAM-DRW Resample 0.9999"),),
    "cben": (Param("a", "choice", 0.9999, choices=(0.999, 0.9999), source="GCL code 0.9999, paper 0.999"),
             Param("b", "float", 1e-5, low=1e-6, high=9e-4, scale="log", source="GCL code 1e-5, paper 9e-4")),
    "class_aware": (Param("num_samples_cls", "int", 1, low=1, high=8,
                          source="classifier-balancing: default 1, configs 4"),),
}
# RunConfig fields a tweak usually touches (defaults are RunConfig's; ranges: the published recipes
# span lr 0.05-0.2, wd 2e-4-5e-4, batch 64-512, cosine / step schedules)
RECIPE_SPACE: tuple[Param, ...] = (
    Param("epochs", "int", 30, low=1, high=400, source="RunConfig default (demo); papers 200 (CIFAR) / 90"),
    Param("lr", "float", 0.05, low=1e-3, high=0.5, scale="log", source="recipes 0.05-0.2 (LDAM-DRW, GCL, GALA, ALA)"),
    Param("weight_decay", "float", 5e-4, low=1e-5, high=1e-2, scale="log",
          source="recipes 2e-4 (LDAM-DRW, GCL) to 5e-4 (GALA, GLAG)"),
    Param("batch_size", "choice", 64, choices=(16, 32, 64, 128, 256, 512), source="recipes 64-512"),
    Param("lr_schedule", "choice", "cosine", choices=("step", "cosine", "constant", "balms_cosine"),
          source="RunConfig lr_schedule"),
    Param("momentum", "float", 0.9, low=0.5, high=0.99, source="SGD 0.9 in every recipe"),
    Param("warmup_epochs", "int", 0, low=0, high=10, source="LDAM-DRW / GCL: 5 warm-up epochs"),
    Param("mixup_alpha", "float", 0.0, low=0.0, high=1.0, source="GCL / MiSLAS: 1.0 CIFAR, 0.2 large-scale"),
    Param("seed", "int", 0, low=0, high=9999, source="any seed; the form's slider spans 0-9999"),
)


# ---------------------------------------------------------------------- readers
def loss_space(name: str) -> tuple[Param, ...]:
    """The ``SEARCH_SPACE`` declared in loss ``name``'s file (every keyword of its constructor)."""
    from .losses import LOSSES

    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(LOSSES))}")
    module = sys.modules[LOSSES[name].__module__]
    if not hasattr(module, "SEARCH_SPACE"):
        raise ValueError(f"loss {name!r} declares no SEARCH_SPACE in {module.__name__}")
    return tuple(module.SEARCH_SPACE)


def loss_values(loss: str, loss_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every hyper-parameter of ``loss`` by its own name: ``loss_params`` over the space's defaults."""
    given = {k: v for k, v in (loss_params or {}).items() if v is not None}
    return {**{p.name: p.default for p in loss_space(loss)}, **given}


def key(param: Param, where: Literal["loss", "sampler", "config"] = "loss") -> str:
    """The name a parameter goes by in a search / form (see the module docstring)."""
    from .config import RunConfig

    if where == "sampler":
        return f"sampler_params.{param.name}"
    if where == "loss" and param.name != "drw_start" and param.name in RunConfig.field_names():
        return f"loss_params.{param.name}"
    return param.name


@dataclass
class Space:
    """The named parameters of one search (or one form): name -> Param, plus which RunConfig part each sets."""

    params: dict[str, Param] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.params.items())

    def __len__(self) -> int:
        return len(self.params)

    def apply(self, base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """RunConfig parameters: ``base`` with ``values`` (names of this space) written into their places."""
        out = {**base, "loss_params": dict(base.get("loss_params") or {}),
               "sampler_params": dict(base.get("sampler_params") or {})}
        for name, value in values.items():
            set_value(out, name, value)
        return out

    def signature(self) -> dict[str, str]:
        """name -> range text; a study records it so a restart on another space is refused."""
        return {k: f"{p.kind} {p.describe()}" for k, p in sorted(self.params.items())}


def set_value(params: dict[str, Any], name: str, value: Any) -> None:
    """Write ``value`` of search name ``name`` into a RunConfig parameter dict (in place)."""
    from .config import RunConfig

    if name.startswith("loss_params.") or name.startswith("sampler_params."):
        part, sub = name.split(".", 1)
        params.setdefault(part, {})
        params[part] = {**params[part], sub: value}
    elif name in RunConfig.field_names():
        params[name] = value
    else:
        params.setdefault("loss_params", {})
        params["loss_params"] = {**params["loss_params"], name: value}


def get_value(params: dict[str, Any], name: str, param: Param | None = None) -> Any:
    """The value of search name ``name`` in a RunConfig parameter dict (the Param's default when unset)."""
    from .config import RunConfig

    default = param.default if param is not None else None
    if "." in name:
        part, sub = name.split(".", 1)
        value = (params.get(part) or {}).get(sub)
    elif name in RunConfig.field_names():
        value = params.get(name, RunConfig.defaults().get(name))
    else:
        value = (params.get("loss_params") or {}).get(name)
    return default if value is None else value


def form_space(loss: str, sampler: str = "instance") -> Space:
    """Everything a tweak form shows: the loss's tunable hyper-parameters, its DRW start, the sampler's
    options and the recipe, each under its search name."""
    space = Space()
    for p in loss_space(loss):
        if p.tunable:
            space.params[key(p, "loss")] = p
    space.params["sampler"] = SAMPLER
    for p in SAMPLER_SPACES.get(sampler, ()):
        space.params[key(p, "sampler")] = p
    for p in RECIPE_SPACE:
        space.params[p.name] = p
    return space


def all_params(loss: str, sampler: str = "instance") -> dict[str, Param]:
    """Every parameter a search over ``loss`` may name: the loss's (fixed ones too), sampler's and recipe's."""
    out = {key(p, "loss"): p for p in loss_space(loss)}
    out.update(form_space(loss, sampler).params)
    for name, plist in SAMPLER_SPACES.items():
        for p in plist:
            out.setdefault(key(p, "sampler"), p)
    return out


def search_space(loss: str, names: list[str] | dict[str, Any] | None = None, sampler: str = "instance") -> Space:
    """The space of a search over ``loss``: by default its tunable hyper-parameters (and DRW start when its
    upper end can be resolved); ``names`` picks others (a list of names, or a dict name -> None (full range)
    / ``[low, high]`` / a list of choices). Unknown names and ranges outside the sensible range raise."""
    valid = all_params(loss, sampler)
    if names is None:
        names = [k for k, p in valid.items() if k in {key(q) for q in loss_space(loss)} and p.tunable
                 and p.name != "drw_start"]
        if not names:
            raise ValueError(f"loss {loss!r} has no hyper-parameters to search; name RunConfig fields instead, "
                             f"e.g. lr, weight_decay ({', '.join(p.name for p in RECIPE_SPACE)})")
    if not isinstance(names, dict):
        names = {n: None for n in names}
    space = Space()
    for name, rng in names.items():
        if name not in valid:
            raise ValueError(f"search space: unknown field {name!r} for loss {loss!r}; valid: "
                             f"{', '.join(sorted(k for k, p in valid.items() if p.tunable))}")
        p = valid[name]
        if not p.tunable:
            raise ValueError(f"search space: {name!r} of loss {loss!r} is not a knob ({p.source})")
        if rng is not None:
            if p.kind == "choice":
                p = p.narrowed(choices=tuple(rng))
            else:
                if not (isinstance(rng, (list, tuple)) and len(rng) == 2):
                    raise ValueError(f"search space: {name!r} takes [low, high], got {rng!r}")
                p = p.narrowed(low=rng[0], high=rng[1])
        space.params[name] = p
    return space


def resolve(space: Space, epochs: int) -> Space:
    """``drw_start``'s open upper end made ``epochs - 1``."""
    out = Space(dict(space.params))
    for k, p in space.params.items():
        if p.kind == "int" and p.high is None:
            out.params[k] = replace(p, high=max(p.low, epochs - 1))
    return out


def out_of_range(params: dict[str, Any], loss: str, sampler: str = "instance") -> list[str]:
    """Notes for the values of ``params`` outside their sensible range (the panel shows them; runs go ahead)."""
    notes = []
    for name, p in form_space(loss, sampler):
        value = get_value(params, name, p)
        if p.kind in ("float", "int", "choice") and not p.contains(value):
            notes.append(f"{name}={value!r} is outside {p.describe()} ({p.source})")
    return notes


def space_table(loss: str | None = None):
    """A DataFrame of every (or one) loss's space: loss, name, kind, default, range, source (docs, notebooks)."""
    import pandas as pd

    from .losses import LOSSES

    rows = []
    for name in [loss] if loss else list(LOSSES):
        for p in loss_space(name):
            rows.append({"loss": name, "name": p.name, "kind": p.kind, "default": p.default,
                         "range": p.describe(), "source": p.source})
    return pd.DataFrame(rows)
