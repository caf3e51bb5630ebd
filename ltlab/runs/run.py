"""A loaded run (:class:`Run`), ``load_run`` / ``load_runs`` (arrays read on first use), run names, listing runs
under ``runs/`` and the results table."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import RunFileError, RunNotFoundError
from .paths import runs_root
from .read import NpzArrays, read_config, read_json, read_metrics, read_npz, validate_per_class, validate_probes

MAKE_A_RUN = ("make one with `make demo`, the 01_train notebook, or "
              "`python -m ltlab run notebooks/01_train.ipynb -p epochs 5`")


def runs_hint(root: str | os.PathLike | None = None, shown: int = 8) -> str:
    """Which runs exist under ``root`` (default ``runs/``), newest first, and how to make one."""
    root = Path(root) if root else runs_root()
    names = [str(d.relative_to(root)) for d in find_runs(root)]
    if not names:
        return f"There are no runs under {root}: {MAKE_A_RUN}."
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return (f"Runs under {root}, newest first: {', '.join(names[:shown])}{more}.\nGive one of them (a name under "
            f"{root} or a path), or {MAKE_A_RUN}.")


@dataclass
class Run:
    """A loaded run directory: ``dir``, ``config`` (dict), ``metrics`` (DataFrame), ``per_class``, ``probes``.

    ``per_class["acc"]`` has one row per *evaluated* epoch (``eval_every``; the last always), shape
    (evaluations, C), not (epochs, C): ``per_class["epochs"]`` gives the 0-based epoch of each row (the
    ``epoch`` column of ``metrics``). :meth:`class_accuracy` returns both as one DataFrame.

    :func:`load_run` reads ``config`` and ``metrics`` at once; ``per_class`` and ``probes`` are
    :class:`NpzArrays`, dict-like views that read an array on first use (the large ones memory-mapped), so
    loading and :meth:`summary` take milliseconds at any class count. ``per_class["test_logits"]`` (M, C) is
    float32 or float16 (``RunConfig.save_logits``) and absent when the run saved none.
    """

    dir: Path
    config: dict
    metrics: pd.DataFrame
    per_class: Mapping[str, np.ndarray] = field(default_factory=dict)
    probes: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    @property
    def class_counts(self) -> list[int]:
        return [int(n) for n in self.per_class["class_counts"]]

    def summary(self) -> dict[str, float]:
        """Last evaluated epoch's overall and many/medium/few accuracy; ``epoch`` counts epochs as the command
        line does (an int: 20 after the 20th epoch; ``metrics.csv``'s ``epoch`` column is 0-based)."""
        if not len(self.metrics):
            raise RunFileError(f"{self.dir / 'metrics.csv'} has no evaluated epoch yet")
        last = self.metrics.iloc[-1]
        return {"epoch": int(last["epoch"]) + 1, **{k: float(last[k]) for k in ("acc", "acc_many", "acc_medium",
                                                                                  "acc_few")}}

    def class_accuracy(self) -> pd.DataFrame:
        """Per-class test accuracy: one row per evaluated epoch (index ``epoch``, 0-based), one column per class."""
        acc = np.asarray(self.per_class["acc"])
        epochs = self.per_class.get("epochs")
        epochs = np.asarray(epochs) if epochs is not None else self.metrics["epoch"].to_numpy()[-len(acc):]
        return pd.DataFrame(acc, index=pd.Index(epochs.astype(int), name="epoch"),
                            columns=pd.RangeIndex(acc.shape[1], name="class"))

    def test_logits(self) -> tuple[np.ndarray, np.ndarray]:
        """``(logits (M, C), labels (M,))`` of the last evaluation as saved (float32, or float16 with
        ``save_logits='float16'``); a :class:`RunFileError` saying why and what to do when the run has none."""
        pc = self.per_class
        if "test_logits" in pc and "test_labels" in pc:
            return pc["test_logits"], pc["test_labels"]
        raise RunFileError(self.no_logits_reason())

    def no_logits_reason(self) -> str:
        """Why this run has no saved test logits: ``save_logits='none'``, or no evaluation yet."""
        pc = self.per_class
        how = self.config.get("save_logits") or (str(pc["save_logits"]) if "save_logits" in pc else None)
        if how == "none":
            return (f"{self.dir} has no test logits: it was trained with save_logits='none'. Analyses on logits "
                    "(post-hoc logit adjustment / PN, the post-hoc panel, the confusion matrix) need them: train "
                    "the run with save_logits='float32' (the default) or 'float16' (half the size)")
        return (f"{self.dir / 'per_class.npz'} holds no test logits: they are written after an evaluated epoch; "
                "train or resume the run until at least one evaluation (ltlab.run(run_dir=..., resume=True))")

    def features(self, split: str = "test") -> dict[str, np.ndarray]:
        return read_npz(self.dir / f"features_{split}.npz",
                        f"extract them with ltlab.features.extract_features or the 02_tsne notebook (extract=True)")

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, epochs={len(self.metrics)})"

    def _repr_html_(self) -> str:
        """Notebook display: the run directory, what was trained, and :meth:`summary` as a one-row table."""
        import html

        c = self.config
        done = int(self.metrics["epoch"].iloc[-1]) + 1 if len(self.metrics) else 0
        head = (f"<b>Run</b> <code>{html.escape(str(self.dir))}</code>: {html.escape(str(c.get('loss')))} on "
                f"{html.escape(str(c.get('dataset')))} (IF {float(c.get('imbalance_factor') or 1):g}, "
                f"{html.escape(str(c.get('model')))}), epoch {done} of {c.get('epochs')}")
        if not done:
            return head + ", nothing evaluated yet"
        s = self.summary()
        row = {"overall": s["acc"], "many": s["acc_many"], "medium": s["acc_medium"], "few": s["acc_few"]}
        table = pd.DataFrame([row]).to_html(index=False, float_format="{:.4f}".format, na_rep="–")
        return f"{head}; test accuracy (balanced split; many > 100, medium 20-100, few < 20 images):{table}"


def resolve_run_dir(path: str | os.PathLike) -> Path:
    """A run directory: ``path`` relative to the cwd (or absolute), else a name under :func:`runs_root`
    (``"<id>"``, or ``"runs/<id>"`` as the docs write it, from any folder); RunNotFoundError names every
    place looked."""
    given = Path(path).expanduser()
    looked = [given.absolute()]
    if not given.is_absolute():
        rel = Path(*given.parts[1:]) if given.parts[:1] == ("runs",) and len(given.parts) > 1 else given
        looked.append(runs_root() / rel)
    for d in dict.fromkeys(looked):
        if d.is_dir():
            return d
    places = " or ".join(str(d) for d in dict.fromkeys(looked))
    raise RunNotFoundError(f"run directory {path} does not exist (looked in {places}).\n{runs_hint()}")


def _probe_not_recorded(arrays: NpzArrays, key: str) -> KeyError:
    """The KeyError of ``run.probes[key]`` for a key the run did not record: why (:func:`ltlab.probes.not_recorded`)."""
    from ..probes import NotRecordedError, not_recorded

    return NotRecordedError(not_recorded(arrays, key))


def load_run(path: str | os.PathLike) -> Run:
    """Read a run directory written by :func:`ltlab.run`; fail clearly on a missing or corrupt file.

    ``config`` and ``metrics`` are read at once; the arrays of ``per_class.npz`` and ``probes.npz`` on first
    use (their directories and array headers are checked here, see :class:`NpzArrays`)."""
    d = resolve_run_dir(path)
    config = read_config(d / "config.json")
    metrics = read_metrics(d / "metrics.csv")
    # arrays read on first use (NpzArrays), each checked against the config: sizes from the headers at once,
    # values when first read (issue 25)
    pc_path, pr_path = d / "per_class.npz", d / "probes.npz"
    per_class = NpzArrays(pc_path, check=lambda a: validate_per_class(a, config, pc_path))
    probes = NpzArrays(pr_path, missing=_probe_not_recorded, check=lambda a: validate_probes(a, config, pr_path)) \
        if pr_path.exists() else {}
    return Run(dir=d, config=config, metrics=metrics, per_class=per_class, probes=probes)


def as_run(run: Run | str | os.PathLike) -> Run:
    """``run`` itself when it is a loaded :class:`Run`, else :func:`load_run` of the path (or name under ``runs/``)."""
    return run if isinstance(run, Run) else load_run(run)


def timestamp() -> str:
    """The time part of generated run names: ``YYYYmmdd-HHMMSS``, local time."""
    return time.strftime("%Y%m%d-%H%M%S")


def run_label(params: dict[str, Any]) -> str:
    """``<dataset>_<loss>_if<IF>_s<seed>`` of RunConfig parameters (a RunConfig's ``to_dict()`` or the parameters
    given; RunConfig defaults for the rest): the readable part of every generated run name."""
    return "{}_{}_if{:g}_s{}".format(params.get("dataset", "digits_lt"), params.get("loss", "ce"),
                                     float(params.get("imbalance_factor", 100)), params.get("seed", 0))


def new_run_id(params: dict[str, Any], prefix: str = "") -> str:
    """The name a run gets under ``runs/`` when none is given: ``<prefix><time>_<run_label>``."""
    return f"{prefix}{timestamp()}_{run_label(params)}"


def list_runs(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per readable run under ``root`` (default ``runs/``): id, dataset, loss, IF and last metrics."""
    root = Path(root) if root else runs_root()
    rows = []
    for d in sorted(p for p in root.glob("*") if (p / "metrics.csv").exists()):
        try:
            r = load_run(d)
            summary = r.summary()
        except RunFileError:
            continue
        c = r.config
        rows.append({"run_id": d.name, "dataset": c.get("dataset"), "loss": c.get("loss"),
                     "imbalance_factor": c.get("imbalance_factor"), "seed": c.get("seed"), **summary})
    return pd.DataFrame(rows)


def find_runs(root: str | os.PathLike | None = None, *, loss: str | None = None,
              stage: str | None = None) -> list[Path]:
    """Readable run directories under ``root`` (default ``runs/``; one or two levels deep, so sweep folders
    count), newest first by the time their ``metrics.csv`` was written; optionally only those of ``loss``
    and/or ``stage`` ("joint", "classifier", "afg")."""
    root = Path(root) if root else runs_root()
    found = sorted({p.parent for pattern in ("*/metrics.csv", "*/*/metrics.csv") for p in root.glob(pattern)},
                   key=lambda d: (d / "metrics.csv").stat().st_mtime, reverse=True)
    out = []
    for d in found:
        try:
            config = read_config(d / "config.json")
        except RunFileError:
            continue
        if (loss is None or config.get("loss") == loss) and (stage is None or config.get("stage", "joint") == stage):
            out.append(d)
    return out


def load_runs(run_dirs: str | os.PathLike | Run | Iterable[str | os.PathLike | Run] | None = None, *,
              newest: int = 1, root: str | os.PathLike | None = None, loss: str | None = None,
              stage: str | None = None, missing_ok: bool = False) -> list[Run]:
    """The runs an analysis notebook draws: ``run_dirs`` (a run directory, a name under ``runs/``, a Run or a
    list of them), or, when it is None or empty, the ``newest`` most recently written runs under ``root``
    (default ``runs/``; after ``make demo`` that is ``runs/demo``), optionally only of ``loss`` / ``stage``.
    Nothing found: a :class:`RunNotFoundError` (a ValueError) listing the runs there are and how to make one,
    or ``[]`` with ``missing_ok``.
    """
    if isinstance(run_dirs, (str, os.PathLike, Run)):
        run_dirs = [run_dirs]
    run_dirs = list(run_dirs or [])
    if not run_dirs:
        run_dirs = find_runs(root, loss=loss, stage=stage)[:max(int(newest), 1)]
        if not run_dirs and not missing_ok:
            where = Path(root) if root else runs_root()
            what = " ".join(x for x in (f"loss={loss!r}" if loss else "", f"stage={stage!r}" if stage else "") if x)
            raise RunNotFoundError(f"no {what + ' ' if what else ''}runs under {where}.\n{runs_hint(where)}")
    return [as_run(r) for r in run_dirs]


SHOTS = ("overall", "many", "medium", "few")


def results_table(paths: Iterable[str | os.PathLike | Run] | str | os.PathLike | Run) -> pd.DataFrame:
    """One row per run: our top-1 (%) next to the paper's ``reported`` numbers and the difference.

    Columns: ``run``, ``method`` (config ``method``, else the loss), ``stage``, ``dataset``,
    ``imbalance_factor``, ``model``, ``epochs``, ``posthoc``; ``overall``/``many``/``medium``/``few``
    (last evaluated epoch, or the saved post-hoc result ``posthoc_<method>.json`` when the config
    names one); ``reported_<k>`` from the preset's ``reported`` recorded in config.json (NaN when not
    given) and ``diff_<k>`` = ours - reported. All accuracies in percent on the balanced test split.
    """
    if isinstance(paths, (str, os.PathLike, Run)):
        paths = [paths]
    rows = []
    for p in paths:
        r = as_run(p)
        c = r.config
        post = (c.get("posthoc") or {}).get("method")
        ours = {k: v for k, v in zip(SHOTS, (r.summary()[m] for m in ("acc", "acc_many", "acc_medium", "acc_few")))}
        if post:
            saved = r.dir / f"posthoc_{post}.json"
            saved_result = read_json(saved, f"run ltlab.posthoc.apply_posthoc({str(r.dir)!r}) first")
            missing = [k for k in SHOTS if k not in saved_result]
            if missing:
                raise RunFileError(f"{saved} lacks {missing}; run ltlab.posthoc.apply_posthoc({str(r.dir)!r}) again")
            ours = {k: saved_result[k] for k in SHOTS}
        reported = c.get("reported") or {}
        row = {"run": r.dir.name, "method": c.get("method") or c.get("loss"), "stage": c.get("stage", "joint"),
               "dataset": c.get("dataset"), "imbalance_factor": c.get("imbalance_factor"), "model": c.get("model"),
               "epochs": c.get("epochs"), "posthoc": post}
        for k in SHOTS:
            ours_k = 100.0 * float(ours[k]) if ours[k] is not None else np.nan
            rep = reported.get(k)
            rep = np.nan if rep is None else float(rep)
            row.update({k: ours_k, f"reported_{k}": rep, f"diff_{k}": ours_k - rep})
        rows.append(row)
    return pd.DataFrame(rows)
