"""Which commit a paper-figure run was trained at, and whether the training code changed since (issue 27).

``figures/README.md`` names the commit(s) its runs were trained at (:func:`run_commit`), and
:func:`ltlab.viz.paper_figures.train` trains a run again when the code its numbers depend on
(``TRAINING_CODE``) differs between that commit and the checkout (:func:`training_code_changed`).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from ..runs import Run

# the code a figure run's numbers depend on: a change here since a run's commit retrains it
TRAINING_CODE = ("ltlab/engine", "ltlab/losses", "ltlab/stages", "ltlab/models", "ltlab/data", "ltlab/build.py",
                 "ltlab/config.py", "ltlab/schedules.py", "ltlab/probes.py", "ltlab/metrics.py")
COMMIT_FILE = "trained_at_commit.txt"  # written by train where config.json holds no git_commit (a git worktree)
REPO = Path(__file__).resolve().parents[2]  # the checkout ltlab is imported from


def _git(*args: str) -> subprocess.CompletedProcess | None:
    """``git <args>`` in the checkout ltlab is imported from; None when git cannot run there."""
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


def head_commit() -> str | None:
    """The commit the checkout is at (``git rev-parse HEAD``), None without git or a repository."""
    out = _git("rev-parse", "HEAD")
    return out.stdout.strip() if out is not None and out.returncode == 0 and out.stdout.strip() else None


def run_commit(run: Run) -> str | None:
    """The commit ``run`` was trained at: config.json's ``git_commit``, else the stamp :func:`train` wrote."""
    commit = run.config.get("git_commit")
    if commit:
        return str(commit)
    stamp = Path(run.dir) / COMMIT_FILE
    return stamp.read_text().strip() or None if stamp.exists() else None


def training_code_changed(commit: str | None) -> tuple[bool | None, str]:
    """Whether the committed training code (``TRAINING_CODE``) differs between ``commit`` and ``HEAD``
    (``git diff --quiet <commit> HEAD -- <paths>``): ``(True | False, why)``, or ``(None, why)`` when that cannot
    be told (no commit recorded, no git, a commit git does not know).

    Committed changes only: a run records the commit it was trained at, not uncommitted edits, so comparing with
    the working tree would retrain on every call while an edit is uncommitted; ``why`` says when the training code
    has uncommitted edits (``git diff --quiet HEAD -- <paths>``), which the check cannot see.
    """
    if not commit:
        return None, "no commit recorded with the run"
    out = _git("diff", "--quiet", commit, "HEAD", "--", *TRAINING_CODE)
    if out is None:
        return None, "git is not available"
    if out.returncode in (0, 1):
        dirty = _git("diff", "--quiet", "HEAD", "--", *TRAINING_CODE)
        note = "; uncommitted edits to the training code are not checked" if dirty is not None and \
            dirty.returncode == 1 else ""
        return out.returncode == 1, (f"training code {'changed' if out.returncode else 'unchanged'} since "
                                     f"{commit[:10]}{note}")
    err = out.stderr.strip().splitlines()
    return None, f"git cannot compare with {commit[:10]} ({err[-1] if err else 'exit ' + str(out.returncode)})"


