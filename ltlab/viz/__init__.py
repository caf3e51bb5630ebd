"""Figures, export, widgets and the paper-figure code of ltlab, in one package.

What it owns:

- the plotly figure builders, by subject: :mod:`ltlab.viz.plotting` (accuracy and schedule figures, and the
  one place every builder is reachable from), :mod:`ltlab.viz.plot_gradients` (gradient ratios),
  :mod:`ltlab.viz.plot_classifier` (weight norms, class-vector / feature similarity, GALA's theta / phi) and
  :mod:`ltlab.viz.plot_outputs` (t-SNE, predictions, true-class probability, ALA factors);
- their shared look and checks: :mod:`ltlab.viz.style` (classes sorted by training count, many/medium/few
  bands, colour-blind safe colours, a ValueError for runs over different class sets);
- static export of figures with kaleido and Chromium: :mod:`ltlab.viz.export`;
- the ipywidgets panels: :mod:`ltlab.viz.widgets` (post-hoc sliders, schedule explorer, live training) and
  the workbench (:mod:`ltlab.viz.workbench`, its logic without widgets in :mod:`ltlab.viz.tweaks`);
- the committed paper figures and the numbers behind them: :mod:`ltlab.viz.paper_figures`,
  :mod:`ltlab.viz.paper_numbers` (``figures/README.md``) and :mod:`ltlab.viz.paper_stats`.

Importing ``ltlab.viz`` is cheap: it loads none of its modules (nor plotly, torch or ipywidgets), only
:mod:`ltlab.viz.deferred`, whose stand-in for ``rfc3987_syntax`` saves each process that shows a plotly figure
the 0.6-1 s of building that package's parser (plotly -> nbformat -> jsonschema import it; only jsonschema's
``iri`` check uses it, and gets the real package on first use).
``from ltlab.viz import plotting`` imports the one module named; ``ltlab.viz.plotting`` after
``import ltlab.viz`` imports it on first access. This package is the top layer, with :mod:`ltlab.launch`:
nothing in the base, run-file or engine layers imports it.
"""
from __future__ import annotations

import importlib

from .deferred import defer_rfc3987_syntax

defer_rfc3987_syntax()

_MODULES = ("plotting", "plot_classifier", "plot_gradients", "plot_outputs", "style", "export", "widgets",
            "workbench", "tweaks", "paper_figures", "paper_numbers", "paper_stats")

__all__ = list(_MODULES)


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULES})
