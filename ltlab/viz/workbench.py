"""The workbench panel: tweak a method's hyper-parameters and compare the runs side by side.

Picking a loss rebuilds a form of its hyper-parameters from its search space (:mod:`ltlab.space`): sliders on
the parameter's scale with a number box beside each (a value outside the sensible range is allowed, with a
note), dropdowns for choices, plus the sampler (and its options), DRW start and the recipe. A preset fills the
form. Every **Start** adds a run to the comparison: overlaid curves of overall / many / medium / few accuracy
over epochs, a table with each run's final numbers and a label made of the values that differ from the first
run (``gcl noise_mul=0.8``), per-class accuracy of the selected runs. Selected runs can be hidden, continued
(a stopped run resumes from its checkpoint), copied back into the form or exported (the equivalent
``python -m ltlab train`` command and a preset YAML). **Vary** runs a list of values of one hyper-parameter in
parallel through the local sweep executor and draws the final accuracy against the value. Runs live in
``runs/workbench/`` (or ``run_root``); reopening the panel rebuilds the comparison from them.
Logic without widgets: :mod:`ltlab.viz.tweaks`.
"""
from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any

from ..space import Param, form_space, out_of_range
from . import tweaks

COLORS = ("#000000", "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
GROUPS = (("overall", "acc"), ("many", "acc_many"), ("medium", "acc_medium"), ("few", "acc_few"))
_ST = {"description_width": "130px"}


def _number_widget(name: str, p: Param, value: Any):
    """(container, value getter, value setter) for a float / int parameter: a slider on its scale + a box."""
    import ipywidgets as w

    lay = w.Layout(width="330px")
    high = p.high if p.high is not None else max(p.low + 1, 200)
    if p.kind == "int":
        slider = w.IntSlider(min=int(p.low), max=int(high), description=name, style=_ST, layout=lay,
                             continuous_update=False, readout=False)
        box = w.IntText(layout=w.Layout(width="90px"))
    elif p.scale == "log":
        slider = w.FloatLogSlider(base=10, min=math.log10(p.low), max=math.log10(high), step=0.05,
                                  description=name, style=_ST, layout=lay, continuous_update=False, readout=False)
        box = w.FloatText(layout=w.Layout(width="90px"))
    else:
        slider = w.FloatSlider(min=p.low, max=high, step=(high - p.low) / 100, description=name, style=_ST,
                               layout=lay, continuous_update=False, readout=False)
        box = w.FloatText(layout=w.Layout(width="90px"))
    syncing = []  # the box moved the slider: do not write the (clamped) slider value back into the box

    def from_slider(ch) -> None:
        if not syncing:
            box.value = round(ch["new"], 6) if p.kind == "float" else ch["new"]

    def from_box(ch) -> None:
        syncing.append(1)
        try:
            slider.value = min(max(ch["new"], p.low), high)
        finally:
            syncing.pop()

    box.value = value
    slider.value = min(max(value, p.low), high)  # (a log slider's min / max are exponents)
    slider.observe(from_slider, "value")
    box.observe(from_box, "value")
    row = w.HBox([slider, box, w.HTML(f"<small>{p.describe()}</small>")])
    row.value_widget = box
    return row


class Workbench:
    """The panel (``widget``) and its actions, callable headless: ``start``, ``stop``, ``wait``, ``continue_run``,
    ``copy_to_form``, ``hide``, ``export``, ``vary``; ``table()`` is the comparison."""

    def __init__(self, loss: str = "gcl", dataset: str = "digits_lt", imbalance_factor: float = 10.0,
                 epochs: int = 5, run_root: str | os.PathLike | None = None, **extra: Any):
        import ipywidgets as w

        from ..data import DATASETS
        from ..losses import LOSSES
        from ..runs import runs_root

        self.root = Path(run_root) if run_root else runs_root() / "workbench"
        self.extra = {"progress": False, **extra}
        self.dataset = w.Dropdown(options=sorted(DATASETS), value=dataset, description="dataset", style=_ST)
        self.imbalance_factor = w.FloatText(imbalance_factor, description="imbalance factor", style=_ST)
        self.preset = w.Dropdown(options=["(none)", *_presets()], value="(none)", description="preset", style=_ST)
        self.loss = w.Dropdown(options=sorted(LOSSES), value=loss, description="loss", style=_ST)
        self.form = w.VBox()
        self.note = w.HTML()
        self.status = w.HTML("idle")
        self.table_html = w.HTML()
        self.selected = w.SelectMultiple(options=[], description="runs", style=_ST, rows=6,
                                         layout=w.Layout(width="520px"))
        self.output = w.HTML()
        buttons = {"start": ("Start", "success"), "stop": ("Stop", "danger"), "continue": ("Continue", ""),
                   "copy": ("Copy to form", ""), "hide": ("Hide / show", ""), "export": ("Export", ""),
                   "vary": ("Vary", "info")}
        self.buttons = {k: w.Button(description=d, button_style=s) for k, (d, s) in buttons.items()}
        self.vary_name = w.Dropdown(description="vary", style=_ST)
        self.vary_values = w.Text(description="values", placeholder="0.2, 0.5, 0.8", style=_ST)
        self._values: dict[str, Any] = {}
        self._widgets: dict[str, Any] = {}
        self._live: dict[str, list[dict]] = {}
        self._stop, self._busy = threading.Event(), threading.Event()
        self._thread, self.error, self.vary_table = None, None, None
        for widget, css in ((self.status, "ltlab-wb-status"), (self.table_html, "ltlab-wb-table"),
                            (self.selected, "ltlab-wb-runs")):
            widget.add_class(css)  # what a browser test (or a user's CSS) finds
        self._build_figures()
        self._rebuild_form(tweaks.form_values({"loss": loss, "epochs": epochs}))
        self.loss.observe(lambda ch: self._rebuild_form(self._form_values_for(ch["new"])), "value")
        self.preset.observe(lambda ch: self.apply_preset(ch["new"]), "value")
        self.selected.observe(lambda ch: self._draw_per_class(), "value")
        actions = {"start": lambda: self.start(), "stop": self.stop, "continue": lambda: self.continue_run(),
                   "copy": lambda: self.copy_to_form(), "hide": lambda: self.hide(), "export": lambda: self.export(),
                   "vary": lambda: self.vary()}
        for k, b in self.buttons.items():
            b.on_click(lambda _, f=actions[k]: f())
        self.refresh()
        b = self.buttons
        self.widget = w.VBox([
            w.HTML("<b>Workbench</b>: tweak, start, compare"),
            w.HBox([w.VBox([self.dataset, self.imbalance_factor]), w.VBox([self.preset, self.loss])]),
            self.form, self.note, w.HBox([b["start"], b["stop"]]), self.status,
            self.views["curves"], w.HBox([self.selected, w.VBox([b["continue"], b["copy"], b["hide"], b["export"]])]),
            self.table_html, self.views["per_class"], self.output,
            w.HBox([self.vary_name, self.vary_values, b["vary"]]), self.views["vary"]])

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)

    # ------------------------------------------------------------------ the form
    def _form_values_for(self, loss: str) -> dict[str, Any]:
        """The current values carried over to another loss (recipe, sampler; its own defaults for the rest)."""
        current = self.values()
        fresh = tweaks.form_values({"loss": loss, "sampler": current.get("sampler", "instance")})
        return {**fresh, **{k: v for k, v in current.items() if k in fresh and k not in _loss_names(self.loss_was)}}

    def _rebuild_form(self, values: dict[str, Any]) -> None:
        import ipywidgets as w

        loss = self.loss.value
        self.loss_was = loss
        space = form_space(loss, values.get("sampler", "instance"))
        rows, self._widgets = [], {}
        for name, p in space:
            value = values.get(name, p.default)
            if p.kind == "choice":
                widget = w.Dropdown(options=list(p.choices), value=value if value in p.choices else p.default,
                                    description=name, style=_ST)
                row, self._widgets[name] = widget, widget
            elif name == "drw_start":
                on = w.Checkbox(value=value is not None, description="DRW from epoch", style=_ST, indent=False)
                start = w.IntText(value=value if value is not None else 0, layout=w.Layout(width="90px"))
                row = w.HBox([on, start, w.HTML(f"<small>{p.source}</small>")])
                self._widgets[name] = (on, start)
            else:
                row = _number_widget(name, p, value)
                self._widgets[name] = row.value_widget
            if name == "sampler":
                self._widgets[name].observe(lambda ch: self._rebuild_form({**self.values(), "sampler": ch["new"]}),
                                            "value")
            self._watch(self._widgets[name])
            rows.append(row)
        loss_rows = [r for (n, _), r in zip(space, rows) if n in _loss_names(loss) or n == "drw_start"]
        rest = [r for r in rows if r not in loss_rows]
        self.form.children = [w.HTML(f"<b>{loss}</b> hyper-parameters" if loss_rows else f"<b>{loss}</b>: no "
                                     "hyper-parameters"), *loss_rows, w.HTML("<b>sampler and recipe</b>"), *rest]
        self.vary_name.options = [n for n, p in space if p.kind in ("float", "int") and n != "seed"]
        self._check()

    def _watch(self, widget) -> None:
        for part in widget if isinstance(widget, tuple) else (widget,):
            part.observe(lambda _: self._check(), "value")

    def values(self) -> dict[str, Any]:
        """The form's values by search name."""
        out = {}
        for name, widget in self._widgets.items():
            if isinstance(widget, tuple):
                out[name] = int(widget[1].value) if widget[0].value else None
            else:
                out[name] = widget.value
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        """Fill the form (a different loss or sampler rebuilds it)."""
        loss = values.get("loss", self.loss.value)
        if loss != self.loss.value:
            self.loss.value = loss  # rebuilds with carried-over values
        self._rebuild_form({**self.values(), **values})

    def _check(self) -> None:
        notes = out_of_range(self.params(), self.loss.value, self.values().get("sampler", "instance"))
        self.note.value = "".join(f"<div style='color:#D55E00'>note: {n}; allowed</div>" for n in notes)

    def params(self) -> dict[str, Any]:
        """RunConfig parameters of the form (no run directory yet)."""
        base = {"dataset": self.dataset.value, "imbalance_factor": float(self.imbalance_factor.value), **self.extra}
        return tweaks.form_params(self.loss.value, self.values(), base)

    def apply_preset(self, name: str) -> None:
        """Fill the form from a preset of notebooks/presets (loss, its hyper-parameters, sampler, DRW, recipe)."""
        if not name or name == "(none)":
            return
        from ..launch.presets import load_preset

        params = load_preset(tweaks.notebooks_dir() / "presets" / name)
        self.set_values({"loss": params["loss"], **tweaks.form_values(params)})
        self.status.value = f"form filled from {name} (recipe as published: shorten epochs for a quick look)"

    # ------------------------------------------------------------------ runs
    @property
    def running(self) -> bool:
        """A run is going: from Start until its status line says finished / stopped / failed (the redraw after
        the last epoch included, so a Start clicked on seeing "finished" is never refused)."""
        return self._busy.is_set()

    def start(self, params: dict[str, Any] | None = None) -> Path | None:
        """Start a run of the form's values (or ``params``) in a background thread; its directory, or None."""
        from ..config import RunConfig
        from ..runs import new_run_id

        if self.running:
            self.status.value = "a run is going: stop it first"
            return None
        params = dict(params or self.params())
        name, n = new_run_id(params, "wb_"), 1
        while (self.root / name).exists():  # two starts within one second: a run directory each, never shared
            n += 1
            name = f"{new_run_id(params, 'wb_')}_{n}"
        try:
            config = RunConfig(**{**params, "run_dir": str(self.root / name)})
        except ValueError as exc:
            self.status.value = f"<span style='color:#D55E00'>{exc}</span>"
            return None
        self._launch(config)
        return Path(config.run_dir)

    def continue_run(self, name: str | None = None) -> Path | None:
        """Resume a stopped run (the selected one) from its checkpoint, to its full epochs."""
        from ..config import run_config

        name = name or (self.selected.value[0] if self.selected.value else None)
        if name is None or self.running:
            self.status.value = "select a stopped run (and let the current one finish)"
            return None
        d = self.root / name
        if tweaks.run_status(d, json.loads((d / "config.json").read_text())["epochs"])[0] == "complete":
            self.status.value = f"{name} is complete"
            return None
        self._launch(run_config(d).replace(resume=True, run_dir=str(d), progress=False))
        return d

    def _launch(self, config) -> None:
        self._stop.clear()
        self._busy.set()
        self.error = None
        self._live[Path(config.run_dir).name] = []
        self.status.value = f"training {Path(config.run_dir).name} ..."
        self._thread = threading.Thread(target=self._train, args=(config,), daemon=True, name="ltlab-workbench")
        self._thread.start()

    def _train(self, config) -> None:
        from ..engine import run

        status = f"<span style='color:#D55E00'>failed: interrupted: {Path(config.run_dir).name}</span>"
        try:
            r = run(config, callbacks=[self._on_epoch])
            status = f"{'stopped' if len(r.metrics) < config.epochs else 'finished'}: {r.dir.name}"
        except Exception as exc:  # noqa: BLE001 - shown in the panel and re-raised by wait()
            self.error = exc
            status = f"<span style='color:#D55E00'>failed: {type(exc).__name__}: {exc}</span>"
        finally:
            try:
                self._live.pop(Path(config.run_dir).name, None)
                self.refresh()
            finally:  # the status last: once it reads finished, Start works
                self._busy.clear()
                self.status.value = status

    def _on_epoch(self, epoch: int, row: dict, state) -> str | None:
        name = next(iter(self._live), None)  # one run at a time
        if row and name in self._live:
            self._live[name].append({"epoch": epoch, **row})
            self.refresh()
        return "stop" if self._stop.is_set() else None

    def stop(self) -> None:
        """End the current run after this epoch (its checkpoint kept: Continue resumes it)."""
        self._stop.set()

    def wait(self, timeout: float | None = None):
        """Join the training thread; raises its error."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    def hide(self, names: tuple[str, ...] | None = None) -> None:
        """Hide (or show again) the selected runs in the curves and the table; kept in workbench.json."""
        state = tweaks.read_state(self.root)
        hidden = set(state.get("hidden", []))
        hidden ^= set(names if names is not None else self.selected.value)
        tweaks.write_state(self.root, {**state, "hidden": sorted(hidden)})
        self.refresh()

    def copy_to_form(self, name: str | None = None) -> None:
        """Put a run's values (the selected one) back into the form."""
        name = name or (self.selected.value[0] if self.selected.value else None)
        if name:
            config = json.loads((self.root / name / "config.json").read_text())
            self.dataset.value, self.imbalance_factor.value = config["dataset"], config["imbalance_factor"]
            self.set_values({"loss": config["loss"], **tweaks.form_values(config)})

    def export(self, name: str | None = None) -> tuple[str, Path] | None:
        """The selected run's ``python -m ltlab train`` command and a preset YAML written beside the runs."""
        name = name or (self.selected.value[0] if self.selected.value else None)
        if not name:
            return None
        config = json.loads((self.root / name / "config.json").read_text())
        command = tweaks.train_command(config)
        preset = tweaks.write_preset(config, self.root / "presets" / f"{name}.yaml")
        self.output.value = (f"<pre style='white-space:pre-wrap'>{command}</pre>preset: <code>{preset}</code> "
                             f"(<code>python -m ltlab train --preset {preset}</code>)")
        return command, preset

    def vary(self, name: str | None = None, values: list | None = None, parallel: int = 2):
        """Run the form once per value of one hyper-parameter (local sweep, ``parallel`` processes) and draw
        the final accuracy against the value; returns the sweep's table."""
        from ..config import parse_value

        name = name or self.vary_name.value
        if values is None:
            values = [parse_value(v) for v in self.vary_values.value.split(",") if v.strip()]
        if not name or not values:
            self.status.value = "vary: pick a hyper-parameter and give values, e.g. 0.2, 0.5, 0.8"
            return None
        self.status.value = f"varying {name} over {values} ({parallel} at a time) ..."
        from ..runs import timestamp
        table = tweaks.vary(self.params(), name, values, self.root / f"vary_{timestamp()}_{name}", parallel)
        fig = tweaks.vary_figure(table, name)
        self._show("vary", fig)
        self.vary_table = table
        self.status.value = f"varied {name}: {len(table)} runs ({', '.join(sorted(set(table.status)))})"
        return table

    # ------------------------------------------------------------------ the comparison
    def runs(self) -> list[Path]:
        return tweaks.list_workbench_runs(self.root)

    def table(self, include_hidden: bool = False):
        """The comparison table of the workbench's runs (hidden ones left out unless asked)."""
        dirs = self.runs()
        table = tweaks.comparison_table(dirs)
        if not include_hidden and len(table):
            table = table[~table.run.isin(tweaks.read_state(self.root).get("hidden", []))]
        return table.reset_index(drop=True)

    def _build_figures(self) -> None:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        base = make_subplots(rows=1, cols=4, subplot_titles=[g for g, _ in GROUPS], shared_yaxes=True)
        base.update_layout(template="simple_white", height=340, width=940, margin=dict(l=50, r=20, t=40, b=40),
                           yaxis=dict(range=[0, 1.02], title="accuracy"), legend=dict(orientation="h", y=-0.2))
        base.update_xaxes(title_text="epoch", rangemode="tozero")
        # the panel's figures (plain go.Figure, the latest drawn) and their live views (FigureWidget)
        self._base = base
        self.curves = go.Figure(base)
        self.per_class = go.Figure(layout=dict(template="simple_white", height=300, width=940,
                                               title="per-class accuracy of the selected runs",
                                               xaxis_title="class (most frequent first)", yaxis=dict(range=[0, 1.02])))
        self.vary_fig = go.Figure(layout=dict(template="simple_white", height=320, width=560, title="vary one value"))
        self.views = {view: go.FigureWidget(fig) for view, fig in (("curves", self.curves),
                                                                    ("per_class", self.per_class),
                                                                    ("vary", self.vary_fig))}

    def refresh(self) -> None:
        """Redraw the curves and the table from the run directories (and the live epochs of the current run)."""
        import pandas as pd

        table = self.table(include_hidden=True)
        hidden = set(tweaks.read_state(self.root).get("hidden", []))
        traces = []
        for i, row in table.iterrows():
            if row.run in hidden:
                continue
            d = self.root / row.run
            rows = pd.read_csv(d / "metrics.csv").to_dict("records") if (d / "metrics.csv").exists() else []
            seen = {r["epoch"] for r in rows}
            rows += [r for r in self._live.get(row.run, []) if r["epoch"] not in seen]
            color = COLORS[i % len(COLORS)]
            for col, (group, key) in enumerate(GROUPS, start=1):
                traces.append(dict(type="scatter", x=[r["epoch"] for r in rows], y=[r[key] for r in rows],
                                   mode="lines+markers", name=row.label, legendgroup=row.run,
                                   showlegend=col == 1, line=dict(color=color), xaxis=f"x{col if col > 1 else ''}",
                                   yaxis=f"y{col if col > 1 else ''}"))
        last = max((max(t["x"]) for t in traces if len(t["x"])), default=0)
        import plotly.graph_objects as go

        fig = go.Figure(self._base)
        for tr in traces:
            fig.add_trace(tr)
        fig.update_xaxes(dtick=max(1, math.ceil(last / 8)))  # whole epochs
        self._show("curves", fig)
        shown = table[~table.run.isin(hidden)]
        self.table_html.value = shown.round(4).to_html(index=False, na_rep="--") if len(shown) else "<i>no runs yet</i>"
        options = list(table.run)
        self.selected.options = options
        self._draw_per_class()

    def _draw_per_class(self) -> None:
        import numpy as np
        import plotly.graph_objects as go

        from ..runs import load_run

        fig = go.Figure(layout=self.per_class.layout)
        labels = dict(zip(*[self.table(include_hidden=True)[c] for c in ("run", "label")]))
        for name in self.selected.value:
            try:
                acc = np.asarray(load_run(self.root / name).per_class["acc"])[-1]
            except Exception:  # noqa: BLE001 - a run without an evaluated epoch yet
                continue
            fig.add_scatter(x=list(range(len(acc))), y=acc, mode="lines+markers", name=labels.get(name, name))
        self._show("per_class", fig)

    def _show(self, view: str, fig) -> None:
        """Keep ``fig`` as the panel's figure and draw it in its Output widget."""
        setattr(self, {"curves": "curves", "per_class": "per_class", "vary": "vary_fig"}[view], fig)
        widget = self.views[view]
        with widget.batch_update():
            widget.data = []
            for trace in fig.data:
                widget.add_trace(trace)
            widget.update_layout(title=fig.layout.title, xaxis=dict(title=fig.layout.xaxis.title))
            widget.update_xaxes(dtick=fig.layout.xaxis.dtick)


def _presets() -> list[str]:
    """One-stage presets under notebooks/presets (two-stage ones have a stage_two key)."""
    folder = tweaks.notebooks_dir() / "presets"
    return sorted(p.name for p in folder.glob("*.yaml") if "stage_two" not in p.read_text()) if folder.is_dir() else []


def _loss_names(loss: str) -> set[str]:
    from ..space import key, loss_space

    return {key(p) for p in loss_space(loss)}


def workbench_panel(loss: str = "gcl", dataset: str = "digits_lt", imbalance_factor: float = 10.0, epochs: int = 5,
                    run_root: str | os.PathLike | None = None, **extra: Any) -> Workbench:
    """:class:`Workbench` with these starting values; ``extra`` are further RunConfig fields (e.g. device)."""
    return Workbench(loss, dataset, imbalance_factor, epochs, run_root, **extra)
