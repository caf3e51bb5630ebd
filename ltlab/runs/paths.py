"""Where runs live (``project_home``, ``runs_root``) and the columns of ``metrics.csv``."""
from __future__ import annotations

import os
from pathlib import Path

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "acc", "acc_many", "acc_medium", "acc_few", "seconds"]


def project_home() -> Path:
    """Where ``runs/`` and ``figures/`` live: ``$LTLAB_HOME``, else the source checkout, else the cwd."""
    env = os.environ.get("LTLAB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parent.parent.parent
    if (checkout / "pyproject.toml").exists():
        return checkout
    return Path.cwd()


def runs_root() -> Path:
    return project_home() / "runs"
