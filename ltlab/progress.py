"""Training progress: a notebook progress bar where someone watches a live notebook, plain text elsewhere.

``tqdm.auto`` alone picks the widget bar in every Jupyter kernel, including the headless ones papermill
and ``nbconvert --execute`` start, where nobody renders the widget and the executed notebook keeps only
its text stand-in. So the kernel's current request decides: a live front end (JupyterLab, Notebook,
VS Code) sends ``execute_request`` with ``allow_stdin=True``; nbclient, which papermill and nbconvert
drive, sends ``allow_stdin=False``. There the bar stays plain tqdm text that refreshes at most once a
minute, so papermill's ``--log-output`` (and the executed notebook) gets a line a minute, not one per epoch.
"""
from __future__ import annotations

import sys
from typing import Iterable

from tqdm.std import tqdm as text_tqdm

HEADLESS_MININTERVAL_S = 60.0
LIVE_DESC = "epochs"  # the notebook bar's label (the run id is in the Run shown under it)


class HeadlessTqdm(text_tqdm):
    """Text bar that redraws on its own clock only: ``set_postfix`` would redraw (one more line of output)
    at every call, the training loop's every epoch."""

    def set_postfix(self, ordered_dict=None, refresh=True, **values):
        super().set_postfix(ordered_dict, refresh=False, **values)


def _kernel():
    """The running ipykernel, else None (a plain Python process, a terminal IPython)."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    return getattr(shell, "kernel", None)


def live_frontend() -> bool:
    """True when this code runs for a Jupyter front end that renders widgets as they change."""
    kernel = _kernel()
    try:
        return bool(kernel is not None and kernel.get_parent()["content"].get("allow_stdin"))
    except (AttributeError, KeyError, TypeError):
        return False


def progress_bar(iterable: Iterable, *, enabled: bool, **kwargs):
    """A tqdm bar over ``iterable``: ``tqdm.auto`` (the notebook widget) in a live notebook, else text on
    stderr (in a headless kernel refreshed at most once a minute, ``set_postfix`` included); ``enabled=False``
    shows nothing."""
    if enabled and live_frontend():
        from tqdm.auto import tqdm
        # the widget is a row of label, bar and counts: a long label (a run id) squeezes the bar to nothing
        # in a narrow output area, so the label is short and the row may wrap with the bar taking the room
        kwargs["desc"] = LIVE_DESC
        return tqdm(iterable, dynamic_ncols=True, **kwargs)  # tqdm.notebook: a 100%-wide row
    if _kernel() is None:
        return text_tqdm(iterable, file=sys.stderr, disable=not enabled, **kwargs)
    kwargs["mininterval"] = max(kwargs.get("mininterval", 0.1), HEADLESS_MININTERVAL_S)
    return HeadlessTqdm(iterable, file=sys.stderr, disable=not enabled, **kwargs)
