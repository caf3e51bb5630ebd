"""One hyper-parameter of a search space (:class:`Param`): type, default, sensible range, scale and source.

Pure data, no ltlab imports: each loss file declares its ``SEARCH_SPACE`` with it, and :mod:`ltlab.space`
(which reads them, with the sampler and recipe spaces) sits above the losses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

Kind = Literal["float", "int", "choice", "fixed"]
Scale = Literal["linear", "log"]


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: ``kind`` float | int (``low``..``high`` on ``scale``), choice (``choices``) or fixed
    (not a knob: per-class data or a numerical guard, kept at its default). ``default=None`` on an int range
    means "off" (``drw_start``). ``high=None`` on ``drw_start`` is resolved to ``epochs - 1`` by
    :func:`resolve`. ``source`` says where the default and the range come from."""

    name: str
    kind: Kind
    default: Any
    low: float | None = None
    high: float | None = None
    scale: Scale = "linear"
    choices: tuple = ()
    source: str = ""
    help: str = ""
    step: float | None = None
    when: tuple = ()  # ((other name, value), ...): applies only when those hold (eql's gamma: form softmax)

    def __post_init__(self) -> None:
        if self.kind in ("float", "int"):
            if self.low is None or (self.high is not None and self.low > self.high):
                raise ValueError(f"Param {self.name}: needs low <= high, got {self.low}, {self.high}")
            if self.scale == "log" and self.low <= 0:
                raise ValueError(f"Param {self.name}: a log scale needs low > 0, got {self.low}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"Param {self.name}: a choice needs choices")

    @property
    def tunable(self) -> bool:
        return self.kind != "fixed"

    def active(self, values: dict[str, Any]) -> bool:
        """Whether this parameter applies given the values of the others (``when``), e.g. loss_values()."""
        return all(values.get(k) == v for k, v in self.when)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the sensible range (or is one of the choices)."""
        if self.kind == "fixed":
            return value == self.default
        if self.kind == "choice":
            return value in self.choices
        if value is None:
            return self.default is None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.kind == "int" and int(value) != value:
            return False
        return self.low <= value and (self.high is None or value <= self.high)

    def describe(self) -> str:
        """``[0, 1.5] linear`` / ``{'paper', 'code'}`` / ``fixed`` for tables and messages."""
        if self.kind == "choice":
            return "{" + ", ".join(repr(c) for c in self.choices) + "}"
        if self.kind == "fixed":
            return "fixed"
        high = "epochs-1" if self.high is None else f"{self.high:g}"
        return f"[{self.low:g}, {high}] {self.scale}" + (" int" if self.kind == "int" else "")

    def narrowed(self, low: float | None = None, high: float | None = None,
                 choices: tuple | None = None) -> "Param":
        """This parameter on a sub-range (a user's search space); must lie inside the sensible range."""
        new = replace(self, low=self.low if low is None else low, high=self.high if high is None else high,
                      choices=self.choices if choices is None else tuple(choices))
        for v in ((new.low, new.high) if self.kind in ("float", "int") else new.choices):
            if v is not None and not self.contains(v):
                raise ValueError(f"search space: {self.name}={v!r} is outside its range {self.describe()} "
                                 f"({self.source}); choose values inside it")
        return new


def fixed(name: str, default: Any, why: str) -> Param:
    return Param(name, "fixed", default, source=why)


def drw(source: str = "LDAM-DRW code: epoch 160 of 200 (0.8 of the epochs); None = no DRW") -> Param:
    """The DRW start epoch (RunConfig.drw_start) of a loss that has one."""
    return Param("drw_start", "int", None, low=0, high=None, source=source,
                 help="epoch at which deferred re-weighting starts (None: never)")
