"""The logic under the workbench panel (:mod:`ltlab.viz.workbench`), without widgets: a form's values to RunConfig
parameters and back, the runs of a workbench folder, labels made of the values that differ from the first run
(``gcl noise_mul=0.8``), the comparison table, the equivalent command line and preset, and "vary one value".
"""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..space import Space, form_space, get_value, loss_values

# RunConfig fields compared between runs (beside the loss's hyper-parameters and the sampler's options);
# execution fields (device, run_dir, progress, ...) never make two runs different
COMPARED = ("dataset", "imbalance_factor", "model", "loss", "drw_start", "sampler", "epochs", "batch_size", "lr",
            "lr_schedule", "weight_decay", "momentum", "warmup_epochs", "mixup_alpha", "seed", "milestones",
            "lr_gamma", "head", "stage")
NOT_EXPORTED = ("run_dir", "run_id", "resume", "progress", "epochs_per_call", "device", "preset", "reported")
STATE_FILE = "workbench.json"


def form_params(loss: str, values: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """RunConfig parameters from a form: ``base`` (dataset, model, ...) with the form's values by search name
    (``noise_mul``, ``sampler_params.beta``, ``lr``); loss hyper-parameters not of ``loss`` are dropped, values
    equal to a loss default are kept (the run says what it used)."""
    space = form_space(loss, values.get("sampler", (base or {}).get("sampler", "instance")))
    out = space.apply({**(base or {}), "loss": loss, "loss_params": {}, "sampler_params": {}},
                      {k: v for k, v in values.items() if k in space.params})
    lv = loss_values(loss, out["loss_params"])
    out["loss_params"] = {k: v for k, v in out["loss_params"].items() if _active(loss, k, lv)}
    return out


def _active(loss: str, name: str, values: dict[str, Any]) -> bool:
    from ..space import loss_space

    p = next((p for p in loss_space(loss) if p.name == name), None)
    return p is None or p.active(values)


def form_values(params: dict[str, Any], space: Space | None = None) -> dict[str, Any]:
    """A form's values (search name -> value) from RunConfig parameters (a run's config or a preset); unset ones
    take their default."""
    space = space or form_space(params.get("loss", "ce"), params.get("sampler", "instance"))
    return {name: get_value(params, name, p) for name, p in space}


def flat(config: dict[str, Any]) -> dict[str, Any]:
    """The comparable values of a run's config: COMPARED fields, ``<name>`` for each loss hyper-parameter
    (defaults filled in from its search space) and ``sampler_params.<name>``."""
    out = {k: config.get(k) for k in COMPARED if k in config}
    try:
        lv = loss_values(config.get("loss", "ce"), config.get("loss_params"))
    except ValueError:
        lv = dict(config.get("loss_params") or {})
    for k, v in lv.items():
        if k != "drw_start":
            out[k if k not in out else f"loss_params.{k}"] = v
    for k, v in (config.get("sampler_params") or {}).items():
        out[f"sampler_params.{k}"] = v
    return out


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def labels(configs: Sequence[dict[str, Any]]) -> list[str]:
    """One label per run: the loss name, then ``name=value`` for each value that differs from the first run
    (``["gcl", "gcl noise_mul=0.8", "ldam max_m=0.3 lr=0.1"]``); a run equal to the first gets ``(same)``."""
    if not configs:
        return []
    first = flat(configs[0])
    out = []
    for i, config in enumerate(configs):
        values = flat(config)
        diff = [f"{k}={_fmt(v)}" for k, v in values.items() if k != "loss" and first.get(k) != v]
        diff += [f"{k}=default" for k in first if k not in values and k != "loss"
                 and values.get("loss") == first.get("loss")]
        out.append(" ".join([str(values.get("loss")), *diff]) + (" (same)" if i and not diff and
                                                                  values.get("loss") == first.get("loss") else ""))
    return out


# ---------------------------------------------------------------------- the runs of a workbench
def list_workbench_runs(root: str | os.PathLike) -> list[Path]:
    """Run directories under ``root`` with a config.json, oldest first (the comparison's order)."""
    root = Path(root)
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if (d / "config.json").is_file()]
    return sorted(dirs, key=lambda d: ((d / "config.json").stat().st_mtime_ns, d.name))


def read_state(root: str | os.PathLike) -> dict[str, Any]:
    """The workbench's own state (``hidden`` run names), kept in ``<root>/workbench.json``."""
    path = Path(root) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"hidden": []}


def write_state(root: str | os.PathLike, state: dict[str, Any]) -> None:
    from ..runs import write_json

    Path(root).mkdir(parents=True, exist_ok=True)
    write_json(Path(root) / STATE_FILE, state)


def run_status(run_dir: Path, epochs: int) -> tuple[str, int]:
    """("complete" | "stopped" | "started", epochs evaluated) of a run directory."""
    try:
        done = int(pd.read_csv(run_dir / "metrics.csv")["epoch"].iloc[-1]) + 1
    except (OSError, ValueError, KeyError, IndexError, pd.errors.EmptyDataError):
        return "started", 0
    return ("complete" if done >= epochs else "stopped"), done


def comparison_table(run_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per run: label (values differing from the first run), status, epochs done / of, final overall /
    many / medium / few (balanced test accuracy, last evaluated epoch), run name."""
    dirs = [Path(d) for d in run_dirs]
    configs = [json.loads((d / "config.json").read_text()) for d in dirs]
    rows = []
    for d, config, label in zip(dirs, configs, labels(configs)):
        status, done = run_status(d, int(config.get("epochs", 0)))
        last = pd.read_csv(d / "metrics.csv").iloc[-1] if done else {}
        rows.append({"label": label, "status": status, "epochs": f"{done}/{config.get('epochs')}",
                     **{g: float(last[c]) if done else float("nan") for g, c in
                        (("overall", "acc"), ("many", "acc_many"), ("medium", "acc_medium"), ("few", "acc_few"))},
                     "run": d.name})
    return pd.DataFrame(rows, columns=["label", "status", "epochs", "overall", "many", "medium", "few", "run"])


# ---------------------------------------------------------------------- export
def exported(config: dict[str, Any]) -> dict[str, Any]:
    """The parameters that reproduce a run: its fields that differ from RunConfig's defaults, run-specific ones
    (run_dir, device, progress, ...) left out."""
    from ..config import RunConfig

    defaults = RunConfig.defaults()
    return {k: v for k, v in config.items() if k in defaults and k not in NOT_EXPORTED and v != defaults[k]}


def train_command(config: dict[str, Any]) -> str:
    """The equivalent ``python -m ltlab train -p KEY VALUE ...`` command (YAML flow values, shell-quoted)."""
    import yaml

    parts = ["python", "-m", "ltlab", "train"]
    for k, v in exported(config).items():
        text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
        text = text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()
        parts += ["-p", k, text]
    return " ".join(shlex.quote(p) for p in parts)


def write_preset(config: dict[str, Any], path: str | os.PathLike) -> Path:
    """A preset YAML of a run (:func:`exported` fields), readable by ``python -m ltlab train --preset``."""
    import yaml

    from ..runs import atomic_write_bytes

    text = "# written by the ltlab workbench: " + " ".join(labels([config])) + "\n"
    text += yaml.safe_dump(exported(config), sort_keys=False, default_flow_style=None)
    return atomic_write_bytes(Path(path), text.encode())


def notebooks_dir() -> Path:
    """The notebooks (and presets/) of this ltlab's checkout, else of the project home (``LTLAB_HOME``)."""
    from ..runs import project_home

    checkout = Path(__file__).resolve().parents[2] / "notebooks"
    return checkout if checkout.is_dir() else project_home() / "notebooks"


# ---------------------------------------------------------------------- vary one value
def vary_presets(params: dict[str, Any], name: str, values: Sequence[Any]) -> list[dict[str, Any]]:
    """One parameter dict per value of ``name`` (a form name: loss hyper-parameter, sampler option or field)."""
    from ..space import set_value

    out = []
    for v in values:
        p = {**params, "loss_params": dict(params.get("loss_params") or {}),
             "sampler_params": dict(params.get("sampler_params") or {})}
        set_value(p, name, v)
        for k in ("run_dir", "run_id", "resume"):
            p.pop(k, None)
        out.append(p)
    return out


def vary(params: dict[str, Any], name: str, values: Sequence[Any], out_root: str | os.PathLike,
         parallel: int = 2) -> pd.DataFrame:
    """Run ``params`` once per value of ``name`` through the local sweep executor (01_train, ``parallel``
    processes); the sweep's table with a ``value`` column."""
    from .. import batch

    presets = vary_presets({**params, "progress": False}, name, values)
    table = batch.sweep(notebooks_dir() / "01_train.ipynb", presets=presets, parallel=parallel, out_root=out_root)
    table.insert(0, "value", list(values)[:len(table)])
    return table


def vary_figure(table: pd.DataFrame, name: str):
    """Final overall / many / medium / few accuracy against the varied value (plotly)."""
    import plotly.graph_objects as go

    from .style import GROUP_COLORS

    fig = go.Figure()
    t = table.sort_values("value")
    for group, color in (("overall", "#000000"), *GROUP_COLORS.items()):
        fig.add_scatter(x=t["value"], y=t[group], mode="lines+markers", name=group, line=dict(color=color))
    fig.update_layout(title=f"final accuracy against {name}", xaxis_title=name,
                      yaxis=dict(title="balanced test accuracy", range=[0, 1.02]), height=340, width=520,
                      template="plotly_white")
    return fig
