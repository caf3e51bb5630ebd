"""The errors of the run-directory layer: a missing or corrupt run file, no run where asked, a refused or locked
run directory."""
from __future__ import annotations


class RunFileError(ValueError):
    """A run directory lacks a file or holds a corrupt one."""


class RunNotFoundError(RunFileError):
    """No run where the parameters point; the message lists the runs there are and how to make one.

    A notebook shows it as that message alone, without a traceback through the library (IPython's
    ``_render_traceback_`` hook): what to fix is the parameters cell, not ltlab."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[1;31m{type(self).__name__}\x1b[0m: {self}"]


class RunDirRefusedError(RunFileError):
    """A run directory this process may not write: it holds files that are not ltlab's, or a run that is not being
    resumed, or another process is writing it (:class:`RunDirLockedError`)."""


class RunDirLockedError(RunDirRefusedError):
    """Another process holds the run directory's lock (it is training into it); the message names its host and PID.
    A sweep skips such a run."""
