"""Reading a sweep's command-line values: ``--grid KEY=V1,V2`` lists and ``--slurm k=v,...`` options."""
from __future__ import annotations

from typing import Any

import yaml


def yaml_problem(exc: BaseException) -> str:
    """A YAML error as one short phrase (``problem`` and where), for one-line command-line errors."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def _split_commas(text: str) -> list[str]:
    """``a,b,[1,2]`` -> ``["a", "b", "[1,2]"]``: commas inside brackets/braces kept."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def split_values(text: str) -> list:
    """``v1,v2,[1,2]`` -> YAML-parsed values, commas inside brackets/braces kept."""
    from ...config import parse_value
    return [parse_value(p) for p in _split_commas(text)]


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["loss=ce,focal", "lr=0.1,0.2"]`` -> ``{"loss": ["ce", "focal"], "lr": [0.1, 0.2]}``."""
    grid = {}
    for item in items:
        key, sep, vals = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--grid expects key=v1,v2, got {item!r}")
        try:
            grid[key.strip()] = split_values(vals)
        except ValueError as exc:  # the one parser's message, e.g. "value: invalid YAML at line 1, column 5: ..."
            raise ValueError(f"--grid {item!r}: {str(exc).removeprefix('value: ')}") from None
    return grid


def split_options(text: str | None, flag: str) -> dict[str, Any]:
    """``k1=v1,k2=v2`` -> ``{k1: v1, k2: v2}`` with YAML-parsed values."""
    from ...config import parse_value
    out = {}
    for part in _split_commas(text) if text else []:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects key=value pairs separated by commas, got {part!r}")
        try:
            out[key.strip()] = parse_value(value)
        except ValueError as exc:
            raise ValueError(f"{flag} {part!r}: {str(exc).removeprefix('value: ')}") from None
    return out
