"""The methods reference: every loss, sampler, stage and post-hoc method with its hyper-parameters, defaults,
meaning and paper, generated from the registries (issue 29).

``docs/methods.md`` is :func:`methods_markdown` (``python tools/gen_methods_doc.py`` writes it; a test keeps the
two equal) and ``python -m ltlab list [losses|samplers|stages|posthoc|presets]`` / ``python -m ltlab list loss gcl``
print :func:`list_text`. Meanings come from each class's docstring (its ``Args:`` section), so the reference
and the code cannot drift apart.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path
from typing import Any, Callable, Literal

KINDS = ("losses", "samplers", "stages", "posthoc", "presets")
Kind = Literal["losses", "samplers", "stages", "posthoc", "presets"]
_SINGULAR = {"loss": "losses", "sampler": "samplers", "stage": "stages", "preset": "presets", "posthoc": "posthoc"}

def drw_note() -> str:
    """Where DRW is set (one place), and which losses take it (from the registry)."""
    from .losses import LOSSES, loss_hparams
    with_drw = ", ".join(f"`{n}`" for n in LOSSES if "drw_start" in loss_hparams(n))
    return ("Deferred re-weighting (DRW) has one place: the top-level field `drw_start` (`-p drw_start 160`, a "
            f"0-based epoch); it reaches every loss that takes it ({with_drw}). Giving `drw_start` inside "
            "`loss_params` as well is refused. A `drw_start` at or past `epochs` would train without DRW and is "
            "refused; a shortened preset scales it with its other epochs.")


def _args(doc: str | None) -> dict[str, str]:
    """``name -> meaning`` from a Google-style ``Args:`` section (continuation lines joined)."""
    out: dict[str, str] = {}
    if not doc:
        return out
    lines = inspect.cleandoc(doc).splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "Args:")
    except StopIteration:
        return out
    indent, name = None, None
    for ln in lines[start + 1:]:
        if not ln.strip():
            break
        lead = len(ln) - len(ln.lstrip())
        indent = lead if indent is None else indent
        if lead < indent:
            break
        m = re.match(r"\s*(\w+(?:,\s*\w+)*)(?:\s*\([^)]*\))?:\s*(.*)", ln)
        if lead == indent and m:
            name = [n.strip() for n in m.group(1).split(",")]
            for n in name:
                out[n] = m.group(2).strip()
        elif name:
            for n in name:
                out[n] += " " + ln.strip()
    return out


def _summary(doc: str | None) -> str:
    """The first sentence-paragraph of a docstring, on one line."""
    if not doc:
        return ""
    first = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(first.split())


def _params(fn: Callable, skip: tuple[str, ...]) -> list[tuple[str, Any]]:
    sig = inspect.signature(fn)
    return [(p.name, p.default) for p in sig.parameters.values()
            if p.name not in ("self",) + skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


# options whose meaning is not written beside their default in the code
_OPTION_TEXT = {
    "classifier_init": "'stage_one' keeps the stage-one classifier, 'reset' re-initialises it (cRT re-initialises)",
    "lws_freeze_linear": "LWS: keep the stage-one W, b frozen and train only the per-class scales",
    "backbone_mode": "'eval' keeps the frozen backbone's BatchNorm statistics fixed; 'train' updates them",
    "kd_c": "c of the distillation weight alpha(T) = kd_s (kd_c^(T/Tmax) - 1)",
    "keep_bias": "tau_norm: add the classifier's bias back (BagofTricks-LT's tau-norm); dropped by default as Kang et al.",
    "tau": "the fixed tau used when `taus` is not given",
    "taus": "candidate taus; fit picks the best on the selection split (`select_on`)",
    "select_on": ("split that chooses tau among `taus`: None (the validation split where the data have one, else the "
                  "fixed tau), 'val' (required) or 'test' (test-set tuning, only when asked)"),
}


def _source_comments(*modules) -> dict[str, str]:
    """``key -> comment`` of every ``"key": value,  # comment`` line in the modules' source (option tables)."""
    out: dict[str, str] = {}
    for mod in modules:
        for ln in inspect.getsource(mod).splitlines():
            m = re.match(r'\s*"(\w+)":.*#\s*(.+)$', ln)
            if m:
                out.setdefault(m.group(1), m.group(2).strip())
    return out


def _fmt(value: Any) -> str:
    return "required" if value is inspect.Parameter.empty else repr(value)


def losses() -> dict[str, dict]:
    """``name -> {"summary", "params": [(name, default, meaning)]}`` for every entry of ``LOSSES``."""
    from .losses import LOSSES
    out = {}
    for name, cls in LOSSES.items():
        meaning = _args(cls.__doc__)
        meaning.update({k: v for k, v in _args(cls.__init__.__doc__).items() if k not in meaning})
        params = [(p, d, meaning.get(p, "")) for p, d in _params(cls.__init__, ("class_counts",))]
        out[name] = {"summary": _summary(cls.__doc__), "params": params}
    return out


def samplers() -> dict[str, dict]:
    """``name -> {"summary", "params"}`` for every sampler name (``RunConfig.sampler``)."""
    from .data.samplers import SAMPLERS
    keywords = {"effective_number": [("beta", 0.9999, "effective-number beta (Cui et al. 2019; LDAM-DRW code)")],
                "cben": [("a", 0.9999, "base beta (GCL code; paper 0.999)"),
                         ("b", 1e-5, "beta span over delta (GCL code; paper 0.0009)")],
                "class_aware": [("num_samples_cls", 1, "samples of a class drawn in a row (the configs use 4)")],
                "progressive": [("num_epochs", "the run's epochs", "mixing weight epoch / (num_epochs - 1)")]}
    return {name: {"summary": text, "params": keywords.get(name, [])} for name, text in SAMPLERS.items()}


def stages() -> dict[str, dict]:
    """``name -> {"summary", "params": [(option, default, flat alias)]}`` for every entry of ``STAGES``."""
    import sys

    from . import stage_options
    from .stages import STAGES
    out = {}
    for name, stage in STAGES.items():
        notes = {**_source_comments(stage_options, sys.modules[type(stage).__module__]), **_OPTION_TEXT}
        flat = {v: k for k, v in stage.aliases.items() if v is not None}
        params = [(k, v, notes.get(k, "") + (f" (also the flat field `{flat[k]}`)" if flat.get(k, k) != k else ""))
                  for k, v in stage.defaults.items()]
        out[name] = {"summary": _summary(type(stage).__doc__), "params": params}
    return out


def posthoc() -> dict[str, dict]:
    """``method -> {"summary", "params"}`` for every post-hoc estimator (``RunConfig.posthoc["method"]``)."""
    from .posthoc.estimators import POSTHOC
    out = {}
    for method, cls in POSTHOC.items():
        run_defaults = getattr(cls, "run_defaults", {}) or {}
        init = dict(_params(cls.__init__, tuple(cls.requires)))
        names = list(dict.fromkeys(["tau", "taus", *getattr(cls, "options", ())]))
        params = [(k, run_defaults.get(k, init.get(k, False)), _OPTION_TEXT.get(k, "")) for k in names]
        out[method] = {"summary": _summary(cls.__doc__), "params": params}
    return out


def presets(folder: str | Path | None = None) -> dict[str, dict]:
    """``file stem -> {"summary", "params": []}`` for every preset YAML (summary: its first comment line)."""
    from .runs import project_home
    folder = Path(folder) if folder else project_home() / "notebooks" / "presets"
    out = {}
    for p in sorted(folder.glob("*.yaml")):
        first = next((ln.lstrip("# ").strip() for ln in p.read_text().splitlines() if ln.startswith("#")), "")
        out[p.stem] = {"summary": first, "params": []}
    return out


_TABLES: dict[str, Callable[[], dict[str, dict]]] = {"losses": losses, "samplers": samplers, "stages": stages,
                                                      "posthoc": posthoc, "presets": presets}
_USAGE = {"losses": "`-p loss NAME -p loss_params \"{key: value}\"`",
          "samplers": "`-p sampler NAME -p sampler_params \"{key: value}\"`",
          "stages": "`-p stage NAME -p stage_params \"{key: value}\"` (a second stage also needs `init_from`)",
          "posthoc": "`-p posthoc \"{method: NAME}\"`, or `ltlab.posthoc.posthoc_on_run(run, \"NAME\")`",
          "presets": "`python -m ltlab run notebooks/01_train.ipynb --preset notebooks/presets/NAME.yaml`"}


def table(kind: str) -> dict[str, dict]:
    """The entries of one kind (``losses``, ``samplers``, ``stages``, ``posthoc``, ``presets``)."""
    kind = _SINGULAR.get(kind, kind)
    if kind not in _TABLES:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    return _TABLES[kind]()


def list_text(kind: str | None = None, name: str | None = None) -> str:
    """Plain text for ``python -m ltlab list [KIND [NAME]]``: names with one line each, or one entry whole."""
    if kind is None:
        return "\n".join(f"{k:9s} {', '.join(table(k))}" for k in KINDS if k != "presets") + \
            f"\npresets   {len(table('presets'))} files (python -m ltlab list presets)\n" \
            "Details: python -m ltlab list loss gcl; all of it: docs/methods.md"
    entries = table(kind)
    kind = _SINGULAR.get(kind, kind)
    if name is None:
        width = max(map(len, entries), default=0)
        return "\n".join(f"{n:{width}s}  {textwrap.shorten(e['summary'], 100)}" for n, e in entries.items())
    if name not in entries:
        one = {v: k for k, v in _SINGULAR.items()}[kind]
        raise ValueError(f"unknown {one} {name!r}; valid: {', '.join(entries)}")
    e = entries[name]
    lines = [f"{name}: {e['summary']}", f"use: {_USAGE[kind].replace('NAME', name)}"]
    if e["params"]:
        lines.append("hyper-parameters (default; meaning):")
        lines += [f"  {p} = {_fmt(d)}" + (f"  # {m}" if m else "") for p, d, m in e["params"]]
    if kind == "losses" and any(p == "drw_start" for p, _, _ in e["params"]):
        lines.append(drw_note())
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def methods_markdown() -> str:
    """The text of ``docs/methods.md``."""
    out = ["# Methods reference", "",
           "Generated from ltlab's registries by `python tools/gen_methods_doc.py` (a test keeps this page equal to "
           "its output); `python -m ltlab list` prints the same on the command line, e.g. "
           "`python -m ltlab list loss gcl`. A hyper-parameter set to `null` / `None` takes the default shown.", "",
           "## Deferred re-weighting (DRW)", "", drw_note(), ""]
    titles = {"losses": "Losses", "samplers": "Samplers", "stages": "Stages", "posthoc": "Post-hoc adjustment"}
    for kind, title in titles.items():
        out += [f"## {title}", "", f"Use: {_USAGE[kind]}.", ""]
        for name, e in table(kind).items():
            out += [f"### `{name}`", "", e["summary"], ""]
            if e["params"]:
                out += ["| hyper-parameter | default | meaning |", "|---|---|---|"]
                out += [f"| `{p}` | `{_cell(_fmt(d))}` | {_cell(m)} |" for p, d, m in e["params"]]
                out.append("")
    out += ["## Presets", "", "Every paper setting as a recipe: the table with sources is in "
            "[presets.md](presets.md); `python -m ltlab list presets` names them.", ""]
    return "\n".join(out)
