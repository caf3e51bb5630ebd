"""Write preset YAML with the source of every recipe value as a trailing comment (used by gen_presets.py).

A value is wrapped as ``src(value, "where")`` (a paper table/section or a released repository + script)
or ``ours(value, "why")`` (our choice). The writer puts ``# src: where`` / ``# ours: why`` after it on
the same line; a dict whose entries are wrapped is written one entry per line, each with its own note.
tests/test_presets.py parses these comments back and fails on a recipe value without one.
"""
from __future__ import annotations

import textwrap
from typing import Any, NamedTuple

import yaml


class Noted(NamedTuple):
    value: Any
    note: str


def src(value: Any, where: str) -> Noted:
    """``value`` as the source gives it: ``where`` names a paper table/section or a repository script."""
    return Noted(value, f"src: {where}")


def ours(value: Any, why: str) -> Noted:
    """``value`` is our choice; ``why`` says why in one line."""
    return Noted(value, f"ours: {why}")


def plain(obj: Any) -> Any:
    """``obj`` with every :class:`Noted` replaced by its value (what the YAML file loads to)."""
    if isinstance(obj, Noted):
        return plain(obj.value)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return text.removesuffix("\n...").strip()


def _lines(params: dict, indent: int = 0) -> list[str]:
    out, pad = [], "  " * indent
    for key, value in params.items():
        note = ""
        if isinstance(value, Noted):
            value, note = value.value, f"  # {value.note}"
        if isinstance(value, dict) and any(isinstance(v, (Noted, dict)) for v in value.values()):
            out += [f"{pad}{key}:{note}", *_lines(value, indent + 1)]
        else:
            out.append(f"{pad}{key}: {_flow(plain(value))}{note}")
    return out


def render(header: list[str], params: dict) -> str:
    """The preset file: ``header`` as wrapped ``#`` lines, then one line per value with its note."""
    # never split a word (a pinned citation owner/repo@commit:path, e.g. BagofTricks-LT@...) across lines
    head = [f"# {w}" for line in header
            for w in textwrap.wrap(line, 108, break_on_hyphens=False, break_long_words=False)]
    text = "\n".join(head + _lines(params)) + "\n"
    if yaml.safe_load(text) != plain(params):
        raise AssertionError("rendered YAML does not load back to the preset's values")
    return text
