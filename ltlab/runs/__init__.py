"""Run directories (being split into submodules: for now everything lives in :mod:`ltlab.runs.read`)."""
from . import read as _read

globals().update({k: v for k, v in vars(_read).items() if not k.startswith("__")})
