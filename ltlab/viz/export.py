"""Static export of plotly figures to ``figures/`` (PNG/SVG/PDF) with kaleido and Debian's Chromium.

All figures of one call are rendered in one browser session (kaleido's ``write_fig_from_object``
with a list), each to a temporary name in the target folder and renamed when complete, so a crash
never leaves a half-written figure. Relative ``out_dir`` resolve against the project root
(``ltlab.runs.project_home``: ``$LTLAB_HOME`` or the checkout), as ``runs/`` does.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import plotly.graph_objects as go

from ..runs import project_home

FORMATS = ("png", "svg", "pdf")
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str:
    """Path of a Chromium/Chrome executable: ``$BROWSER_PATH``, else the first of chromium, ... on PATH.

    Raises RuntimeError with the install command when none is found.
    """
    env = os.environ.get("BROWSER_PATH")
    if env:
        if Path(env).is_file():
            return env
        raise RuntimeError(f"BROWSER_PATH={env!r} does not exist; unset it or point it at a Chromium binary")
    for name in _BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("static figure export needs Chromium and none was found on PATH: install it with "
                       "'apt-get install chromium' (Debian/Ubuntu) or set BROWSER_PATH to a Chrome/Chromium binary")


def slug(name: str) -> str:
    """A safe file stem from a label: runs of characters other than letters, digits, ``._-`` become ``_``."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return out or "figure"


def resolve_out_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as an absolute path; relative paths are taken from the project root."""
    p = Path(out_dir).expanduser()
    return p if p.is_absolute() else project_home() / p


class _DropIgnoredJson(logging.Filter):
    """choreographer (kaleido's browser driver) logs a full traceback on stderr when one read from the
    browser's pipe splits a message, then ignores that message and goes on (seen under load, 1 export in
    several on the 2-core CI machine). The export still completes or fails on its own (a missing file is
    checked below), so that record is dropped instead of reaching a notebook's output as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("JSONError decoding message")


@contextlib.contextmanager
def _quiet_pipe_log():
    logger, drop = logging.getLogger("choreographer.channels.pipe"), _DropIgnoredJson()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def save_figures(figures: Mapping[str, go.Figure], out_dir: str | os.PathLike = "figures/",
                 formats: Sequence[str] = FORMATS, *, width: int | None = None, height: int | None = None,
                 scale: float = 2.0) -> list[Path]:
    """Write every ``{name: figure}`` as ``out_dir/<name>.<format>``; returns the written paths.

    ``width``/``height`` in CSS pixels (default: the figure's layout size, else 900 x 520, LIB);
    ``scale`` multiplies the PNG resolution (2: print quality). One Chromium session renders all.
    """
    import kaleido

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"save_figures: formats must be a non-empty subset of {FORMATS}, got {list(formats)}")
    for name, fig in figures.items():
        if not isinstance(fig, go.Figure):
            raise ValueError(f"save_figures: {name!r} is a {type(fig).__name__}, not a plotly Figure")
        if not name or Path(name).name != name:
            raise ValueError(f"save_figures: figure name {name!r} must be a plain file stem (no folders)")
    if not figures:
        return []
    browser = find_chromium()
    out = resolve_out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs, pending = [], []
    for name, fig in figures.items():
        w = width or fig.layout.width or 900
        h = height or fig.layout.height or 520
        for fmt in formats:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp.{fmt}", dir=out)
            os.close(fd)
            final = out / f"{name}.{fmt}"
            pending.append((Path(tmp), final))
            jobs.append({"fig": fig, "path": tmp, "opts": {"format": fmt, "width": w, "height": h, "scale": scale}})
    try:
        with _quiet_pipe_log():
            kaleido.write_fig_from_object_sync(jobs, kopts={"path": browser, "mathjax": False}, cancel_on_error=True)
        for tmp, final in pending:
            if not tmp.exists() or tmp.stat().st_size == 0:
                raise RuntimeError(f"kaleido wrote nothing for {final.name}")
            os.replace(tmp, final)
    finally:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
    return [final for _, final in pending]


def demo_figures(run_dir: str | os.PathLike, out_dir: str | os.PathLike = "figures/demo",
                 formats: Sequence[str] = FORMATS) -> list[Path]:
    """Per-class accuracy curve and t-SNE (coloured by class) of one run, exported to ``out_dir``.

    Test-split features are extracted (and saved in the run directory) when missing. Used by ``make demo``.
    """
    from .. import features
    from . import plotting
    from ..runs import load_run

    run = load_run(run_dir)
    feats = features.run_features(run, "test", extract=True)
    df = features.tsne(feats["features"], feats["labels"], class_counts=run.class_counts,
                       preds=feats["logits"].argmax(1), max_points=3000)
    names = plotting.run_class_names(run, len(run.class_counts))
    figs = {"demo_per_class_accuracy": plotting.per_class_accuracy_curve(run),
            "demo_tsne": plotting.tsne_scatter(df, "label", class_names=names,
                                               title=f"t-SNE of test features ({plotting.run_labels([run])[0]})")}
    return save_figures(figs, out_dir, formats)
