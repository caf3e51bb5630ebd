"""Hyper-parameter search with Optuna: a study over a loss's search space (or any RunConfig fields).

Each trial is an ordinary run directory ``<out_root>/trial_NNNN`` trained by :func:`ltlab.run`; after every
evaluated epoch a callback reports the objective to the trial and stops a pruned run cleanly (its checkpoint
written; ``search.json`` in the run directory says ``"state": "pruned"``). The objective is the final epoch's
balanced accuracy: overall, a shot group (many / medium / few) or a weighted mix.

The study lives in the out-root: ``search.db`` (SQLite) or ``search.journal`` (Optuna's journal file, for
shared storage under Slurm); its settings (space, base parameters, objective, number of trials) are stored in
the study, so a worker needs only the storage and the study name, and a restart on another space is refused.

Workers (local processes, or submitit jobs on Slurm) share one study. Each asks for a trial under a file lock
only while ``COMPLETE + PRUNED + RUNNING < n_trials``, so exactly ``n_trials`` finish and none runs twice. A
running trial records a heartbeat; a trial whose heartbeat is older than the grace period (its worker was
killed) is marked FAIL and queued again with the same values and run directory, which resumes from the run's
checkpoint. Start the same search again to finish what a kill left.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from ..space import Space, resolve, search_space

OBJECTIVE_COLUMNS = {"overall": "acc", "many": "acc_many", "medium": "acc_medium", "few": "acc_few"}
PRUNERS = ("median", "hyperband", "none")
STORAGES = ("sqlite", "journal")
EXECUTORS = ("local", "submitit_local", "slurm")


def _optuna():
    if importlib.util.find_spec("optuna") is None:
        raise ValueError("the search needs Optuna: pip install optuna (or pip install 'ltlab[search]')")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def heartbeat_seconds() -> float:
    return float(os.environ.get("LTLAB_SEARCH_HEARTBEAT_S", "20"))


def grace_seconds() -> float:
    """A RUNNING trial whose heartbeat is older than this was killed (``LTLAB_SEARCH_GRACE_S``, default 120)."""
    return float(os.environ.get("LTLAB_SEARCH_GRACE_S", "120"))


# ---------------------------------------------------------------------- objective
def parse_objective(objective: str | dict[str, float]) -> dict[str, float]:
    """``"few"`` -> ``{"few": 1.0}``; ``"overall=0.5,few=0.5"`` or a dict -> weights (normalised to sum 1)."""
    if isinstance(objective, str):
        parts = [p.strip() for p in objective.split(",") if p.strip()]
        weights: dict[str, float] = {}
        for part in parts:
            name, sep, w = part.partition("=")
            try:
                weights[name.strip()] = float(w) if sep else 1.0
            except ValueError:
                raise ValueError(f"objective: weight {w!r} of {name!r} is not a number; e.g. overall=0.5,few=0.5")
    else:
        weights = {k: float(v) for k, v in dict(objective).items()}
    bad = sorted(set(weights) - set(OBJECTIVE_COLUMNS))
    if not weights or bad:
        raise ValueError(f"objective: unknown group(s) {bad or objective!r}; use one of {', '.join(OBJECTIVE_COLUMNS)} "
                         f"or a weighted mix such as overall=0.5,few=0.5")
    if any(w < 0 or not math.isfinite(w) for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"objective: weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items() if w > 0}


def objective_value(row: dict[str, Any], weights: dict[str, float]) -> float:
    """The weighted balanced accuracy of one metrics row."""
    return float(sum(w * float(row[OBJECTIVE_COLUMNS[g]]) for g, w in weights.items()))


def check_groups(base: dict[str, Any], weights: dict[str, float]) -> None:
    """Refuse an objective naming a shot group with no class in the training split (its accuracy is NaN)."""
    if set(weights) <= {"overall"}:
        return
    from ..build import load_datasets
    from ..config import RunConfig
    from ..data.longtail import shot_split
    from ..metrics import empty_group_note

    train, _ = load_datasets(RunConfig(**base))
    groups = shot_split(list(train.class_counts))
    for g in weights:
        if g != "overall" and len(groups[g]) == 0:
            raise ValueError(f"objective names the {g!r} group, which is empty on {base.get('dataset', 'digits_lt')} "
                             f"(class counts {list(train.class_counts)}): {empty_group_note(g)}; choose another "
                             f"objective (e.g. overall) or a larger imbalance_factor")


# ---------------------------------------------------------------------- storage and study
def storage_spec(out_root: str | os.PathLike, storage: str = "sqlite") -> str:
    """``sqlite:///<out_root>/search.db`` or ``journal:<out_root>/search.journal``."""
    if storage not in STORAGES:
        raise ValueError(f"search: unknown storage {storage!r}; valid: {', '.join(STORAGES)} (journal for shared "
                         f"file systems under Slurm)")
    root = Path(out_root).expanduser().absolute()
    return f"sqlite:///{root / 'search.db'}" if storage == "sqlite" else f"journal:{root / 'search.journal'}"


def open_storage(spec: str):
    """The Optuna storage of a spec from :func:`storage_spec`."""
    optuna = _optuna()
    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = spec[len("journal:"):]
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    return optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 120}})


def _root(spec: str) -> Path:
    return Path(spec.split("sqlite:///", 1)[-1] if spec.startswith("sqlite") else spec[len("journal:"):]).parent


def _sampler(settings: dict, worker: int):
    optuna = _optuna()
    return optuna.samplers.TPESampler(seed=settings["seed"] + 1000 * worker, constant_liar=True,
                                      n_startup_trials=max(2, min(10, settings["n_trials"] // 3)))


def _pruner(settings: dict):
    optuna = _optuna()
    name, epochs = settings["pruner"], settings["epochs"]
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings["startup_trials"], n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


def study_settings(loss: str, space: Space, spec_names: dict, base: dict, weights: dict, n_trials: int,
                   pruner: str, seed: int, startup_trials: int) -> dict[str, Any]:
    from ..config import RunConfig

    return {"loss": loss, "sampler_name": base.get("sampler", "instance"), "space": spec_names,
            "signature": space.signature(), "base": base, "objective": weights, "n_trials": int(n_trials),
            "pruner": pruner, "seed": int(seed), "startup_trials": int(startup_trials),
            "epochs": RunConfig(**base).epochs}


def create_or_check_study(spec: str, name: str, settings: dict):
    """Create the study with its settings, or load it and refuse a different space / base / objective."""
    optuna = _optuna()
    storage = open_storage(spec)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    old = study.user_attrs.get("ltlab")
    if old is None:
        study.set_user_attr("ltlab", settings)
        return study
    for part, what in (("signature", "search space"), ("base", "base parameters"), ("objective", "objective"),
                       ("loss", "loss")):
        if json.dumps(old[part], sort_keys=True) != json.dumps(settings[part], sort_keys=True):
            raise ValueError(f"search: study {name!r} in {_root(spec)} was made for another {what}: {old[part]} "
                             f"(now {settings[part]}); use another --study name or --out-root, or the same {what}")
    if old["n_trials"] != settings["n_trials"] or old["pruner"] != settings["pruner"]:
        study.set_user_attr("ltlab", {**old, "n_trials": settings["n_trials"], "pruner": settings["pruner"]})
    return study


# ---------------------------------------------------------------------- one worker
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _reap_stale(study) -> None:
    """Mark RUNNING trials with a stale heartbeat FAIL and queue them again (same values and run directory)."""
    optuna = _optuna()
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        beat = t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - beat > grace_seconds():
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            attrs = {"retry_of": t.number, **({"run_dir": t.user_attrs["run_dir"]} if "run_dir" in t.user_attrs else {})}
            study.enqueue_trial(t.params, user_attrs=attrs)


def _next_trial(study, lock: Path, n_trials: int):
    """A new trial (a queued retry first), or None when ``n_trials`` are finished or running."""
    optuna = _optuna()
    S = optuna.trial.TrialState
    with _locked(lock):
        _reap_stale(study)
        counted = study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED, S.RUNNING))
        if len(counted) >= n_trials:
            return None
        trial = study.ask()
        trial.set_user_attr("heartbeat", time.time())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return trial


class _Heartbeat(threading.Thread):
    def __init__(self, trial):
        super().__init__(daemon=True)
        self.trial, self.done = trial, threading.Event()

    def run(self) -> None:
        while not self.done.wait(heartbeat_seconds()):
            with contextlib.suppress(Exception):
                self.trial.set_user_attr("heartbeat", time.time())


def suggest(trial, space: Space) -> dict[str, Any]:
    """The trial's values for every parameter of ``space`` (conditional ones only when their condition holds)."""
    values: dict[str, Any] = {}
    for name, p in space:
        if p.when and not all(values.get(k, v) == v for k, v in p.when):
            continue
        if p.kind == "choice":
            values[name] = trial.suggest_categorical(name, list(p.choices))
        elif p.kind == "int":
            values[name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.scale == "log")
        else:
            values[name] = trial.suggest_float(name, float(p.low), float(p.high), log=p.scale == "log")
    return values


def run_trial(trial, settings: dict, space: Space, root: Path) -> float:
    """Train one trial's run (resuming its checkpoint when it is a retry); the objective of the last epoch.
    Raises ``optuna.TrialPruned`` after a pruned run has stopped and written its directory."""
    from .. import engine
    from ..config import RunConfig
    from ..runs import read_metrics, write_json

    optuna = _optuna()
    weights = settings["objective"]
    run_dir = Path(trial.user_attrs.get("run_dir") or root / f"trial_{trial.number:04d}")
    trial.set_user_attr("run_dir", str(run_dir))
    values = suggest(trial, space)
    params = {**space.apply(settings["base"], values), "run_dir": str(run_dir), "progress": False,
              "resume": (run_dir / "checkpoint.pt").exists()}
    stopped: dict[str, int] = {}
    if (run_dir / "metrics.csv").exists():  # a retry: the epochs its killed predecessor reported
        for row in read_metrics(run_dir / "metrics.csv").to_dict("records"):
            trial.report(objective_value(row, weights), int(row["epoch"]))

    def report(epoch: int, row: dict, state) -> str | None:
        if not row:
            return None
        trial.report(objective_value(row, weights), epoch)
        if trial.should_prune():
            stopped["epoch"] = epoch
            return "stop"
        return None

    run = engine.run(RunConfig(**params), callbacks=[report])
    last = run.metrics.iloc[-1].to_dict()
    value = objective_value(last, weights)
    pruned = "epoch" in stopped
    for g, col in OBJECTIVE_COLUMNS.items():
        trial.set_user_attr(g, float(last[col]))
    trial.set_user_attr("epochs_done", int(last["epoch"]) + 1)
    write_json(run_dir / "search.json", {"study": trial.study.study_name, "trial": trial.number,
                                         "state": "pruned" if pruned else "complete", "value": value,
                                         "epoch": int(last["epoch"]), "params": values})
    if pruned:
        raise optuna.TrialPruned(f"pruned after epoch {stopped['epoch']} (objective {value:.4f})")
    return value


def work(spec: str, study_name: str, worker: int = 0, threads: int | None = None) -> int:
    """One worker: run trials of the study until ``n_trials`` are finished or running; returns how many it ran.
    Three failures in a row stop the worker with the last error."""
    optuna = _optuna()
    if threads:
        import torch
        torch.set_num_threads(threads)
    storage = open_storage(spec)
    settings = optuna.load_study(study_name=study_name, storage=storage).user_attrs["ltlab"]
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=_sampler(settings, worker),
                              pruner=_pruner(settings))
    space = resolve(search_space(settings["loss"], settings["space"], settings["sampler_name"]), settings["epochs"])
    root, ran, failures = _root(spec), 0, 0
    lock = root / f"{study_name}.lock"
    while (trial := _next_trial(study, lock, settings["n_trials"])) is not None:
        beat = _Heartbeat(trial)
        beat.start()
        try:
            value = run_trial(trial, settings, space, root)
            study.tell(trial, value)
            failures = 0
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            failures = 0
        except BaseException as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            failures += 1
            if failures >= 3 or not isinstance(exc, Exception):
                raise
        finally:
            beat.done.set()
        ran += 1
    return ran


# ---------------------------------------------------------------------- launching
def _space_names(space: list[str] | dict[str, Any] | None) -> dict[str, Any] | None:
    if space is None:
        return None
    return {n: None for n in space} if not isinstance(space, dict) else {k: (list(v) if v is not None else None)
                                                                      for k, v in space.items()}


def prepare(loss: str, *, n_trials: int = 20, space: list[str] | dict[str, Any] | None = None,
            base_params: dict[str, Any] | None = None, objective: str | dict[str, float] = "overall",
            pruner: str = "median", out_root: str | os.PathLike | None = None, study_name: str | None = None,
            storage: str = "sqlite", seed: int = 0, startup_trials: int = 4) -> tuple[str, str]:
    """Check everything and create (or reopen) the study; ``(storage spec, study name)``. Nothing is trained."""
    from ..config import RunConfig
    from ..runs import runs_root

    _optuna()
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"search: n_trials must be an integer >= 1, got {n_trials!r}")
    if pruner not in PRUNERS:
        raise ValueError(f"search: unknown pruner {pruner!r}; valid: {', '.join(PRUNERS)}")
    base = {**(base_params or {}), "loss": loss}
    for k in ("run_dir", "run_id", "resume"):
        base.pop(k, None)
    names = _space_names(space)
    sampler = base.get("sampler", "instance")
    sp = search_space(loss, names, sampler)
    names = {k: (list(p.choices) if p.kind == "choice" else [p.low, p.high]) for k, p in sp}
    config = RunConfig(**sp.apply(base, {k: p.default for k, p in sp if p.default is not None}))
    base = {k: v for k, v in RunConfig(**base).to_dict().items() if v != RunConfig.defaults()[k] or k == "loss"}
    weights = parse_objective(objective)
    check_groups(base, weights)
    root = Path(out_root).expanduser().absolute() if out_root else runs_root() / "search"
    root.mkdir(parents=True, exist_ok=True)
    name = study_name or f"{loss}_{config.dataset}"
    spec = storage_spec(root, storage)
    settings = study_settings(loss, sp, names, base, weights, n_trials, pruner, seed, startup_trials)
    create_or_check_study(spec, name, settings)
    return spec, name


def search(loss: str, *, n_trials: int = 20, space: list[str] | dict[str, Any] | None = None,
           base_params: dict[str, Any] | None = None, objective: str | dict[str, float] = "overall",
           pruner: str = "median", out_root: str | os.PathLike | None = None, study_name: str | None = None,
           storage: str | None = None, workers: int = 1, executor: str = "local", slurm: dict | None = None,
           seed: int = 0, startup_trials: int = 4, wait: bool = True):
    """Run (or finish) a search of ``n_trials`` trials over ``loss``'s search space; the results table.

    ``space``: names (full sensible ranges) or name -> ``[low, high]`` / list of choices; default the loss's
    tunable hyper-parameters. ``base_params``: the RunConfig every trial starts from (dataset, epochs, ...).
    ``objective``: ``"overall"``, ``"many"``, ``"medium"``, ``"few"`` or a weighted mix (``"overall=0.5,few=0.5"``
    or a dict). ``pruner``: median | hyperband | none. ``storage``: sqlite (default here) | journal (default
    for Slurm). ``workers``: processes (local) or jobs (submitit) sharing the study.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"search: unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"search: workers must be an integer >= 1, got {workers!r}")
    storage = storage or ("journal" if executor == "slurm" else "sqlite")
    spec, name = prepare(loss, n_trials=n_trials, space=space, base_params=base_params, objective=objective,
                         pruner=pruner, out_root=out_root, study_name=study_name, storage=storage, seed=seed,
                         startup_trials=startup_trials)
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    if executor == "local" and workers == 1:
        work(spec, name)
    elif executor == "local":
        _local_workers(spec, name, workers, threads)
    else:
        jobs = _submit(spec, name, workers, executor, slurm or {}, threads)
        if not wait:
            print(f"submitted {len(jobs)} search worker job(s): {', '.join(j.job_id for j in jobs)}")
            return search_table(spec, name)
        from .sweep.cluster import poll_seconds
        while not all(j.done() for j in jobs):
            time.sleep(poll_seconds())
        for j in jobs:
            j.result()  # a failed worker raises here with its error
    return search_table(spec, name)


def _local_workers(spec: str, name: str, workers: int, threads: int | None) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=work, args=(spec, name, i, threads)) for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        raise RuntimeError(f"search: {len(bad)} of {workers} worker(s) failed (exit codes {bad}); the table says "
                           f"which trials failed and why; start the search again to finish it")


def _submit(spec: str, name: str, workers: int, executor: str, slurm: dict, threads: int | None) -> list:
    if importlib.util.find_spec("submitit") is None:
        raise ValueError(f"search: executor={executor!r} needs submitit: pip install submitit")
    import submitit

    from .sweep.cluster import check_slurm_commands, slurm_options

    folder = _root(spec) / ".submitit" / "%j"
    if executor == "slurm":
        params, _ = slurm_options({"name": "ltlab-search", **slurm})
        check_slurm_commands()
        ex = submitit.SlurmExecutor(folder)
        ex.update_parameters(**params)
    else:
        ex = submitit.LocalExecutor(folder)
        ex.update_parameters(timeout_min=int(slurm.get("timeout_min", 24 * 60)))
    try:
        return ex.submit_array([_WorkerJob(spec, name, i, threads) for i in range(workers)]) \
            if executor == "slurm" else [ex.submit(_WorkerJob(spec, name, i, threads)) for i in range(workers)]
    except submitit.core.utils.FailedJobError as exc:
        raise RuntimeError(f"search: the scheduler refused the jobs: {exc}") from exc


class _WorkerJob:
    """A worker as a submitit job (picklable callable)."""

    def __init__(self, spec: str, name: str, worker: int, threads: int | None):
        self.args = (spec, name, worker, threads)

    def __call__(self) -> int:
        return work(*self.args)


# ---------------------------------------------------------------------- results
def load_search(spec_or_root: str | os.PathLike, study_name: str | None = None):
    """The Optuna study of a search (an out-root with one study, or a storage spec + name)."""
    optuna = _optuna()
    spec = str(spec_or_root)
    if not spec.startswith(("sqlite:", "journal:")):
        root = Path(spec)
        found = [s for s in ("sqlite", "journal") if (root / ("search.db" if s == "sqlite" else "search.journal")).exists()]
        if not found:
            raise FileNotFoundError(f"{root}: no search.db or search.journal; run python -m ltlab search first")
        spec = storage_spec(root, found[0])
    storage = open_storage(spec)
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if len(names) != 1:
            raise ValueError(f"{_root(spec)} holds studies {names}; name one (study_name=... / --study)")
        study_name = names[0]
    return optuna.load_study(study_name=study_name, storage=storage)


def search_table(spec_or_root, study_name: str | None = None):
    """One row per trial (complete ones first, best first; a pruned trial's objective is its value when it was
    pruned): trial, state, objective, the trial's values, overall / many / medium / few
    of its last epoch, epochs run, run directory. A FAIL trial that was queued again is left out."""
    import pandas as pd

    study = load_search(spec_or_root, study_name)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    rows = []
    for t in trials:
        if t.state.name == "FAIL" and t.number in retried:
            continue
        rows.append({"trial": t.number, "state": t.state.name.lower(), "objective": t.value, **t.params,
                     **{g: t.user_attrs.get(g, float("nan")) for g in OBJECTIVE_COLUMNS},
                     "epochs": t.user_attrs.get("epochs_done"), "run_dir": t.user_attrs.get("run_dir", ""),
                     "error": t.user_attrs.get("error", "")})
    table = pd.DataFrame(rows)
    if len(table):
        table["_rank"] = table["state"].map({"complete": 0, "pruned": 1}).fillna(2)  # complete first, best first
        table = table.sort_values(["_rank", "objective", "trial"], ascending=[True, False, True],
                                  na_position="last").drop(columns="_rank")
    return table.reset_index(drop=True)


def search_figures(spec_or_root, study_name: str | None = None) -> dict[str, Any]:
    """Optuna's plotly figures of a search: optimisation history, intermediate values (the pruning), parameter
    importance (with two or more finished trials) and parallel coordinates."""
    optuna = _optuna()
    import optuna.visualization as vis

    study = load_search(spec_or_root, study_name)
    figs = {"history": vis.plot_optimization_history(study), "intermediate": vis.plot_intermediate_values(study),
            "parallel": vis.plot_parallel_coordinate(study)}
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) >= 2 and len(study.best_trial.params) >= 2:
        figs["importance"] = vis.plot_param_importances(study)
    return figs


# ---------------------------------------------------------------------- command line
def add_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``search`` subcommand's arguments."""
    ap.add_argument("loss", nargs="?", default=None, help="the loss whose search space is searched, e.g. gcl")
    ap.add_argument("--trials", type=int, default=20, help="number of finished (complete + pruned) trials")
    ap.add_argument("--space", action="append", default=[], metavar="NAME[=LOW,HIGH|=C1,C2]",
                    help="a parameter to search (repeat); default: the loss's hyper-parameters")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                    help="a fixed RunConfig parameter of every trial (dataset, epochs, ...)")
    ap.add_argument("--objective", default="overall", help="overall | many | medium | few | overall=0.5,few=0.5")
    ap.add_argument("--pruner", default="median", choices=PRUNERS,
                    help="stop bad trials early on the per-epoch balanced accuracy (default median)")
    ap.add_argument("--startup-trials", type=int, default=4, help="median pruner: trials before pruning starts")
    ap.add_argument("--out-root", default=None, help="study file and trial run directories (default runs/search)")
    ap.add_argument("--study", default=None, help="study name (default <loss>_<dataset>)")
    ap.add_argument("--storage", default=None, choices=STORAGES,
                    help="sqlite (default) or journal (default with --executor slurm; shared file systems)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes / jobs sharing the study")
    ap.add_argument("--executor", default="local", choices=EXECUTORS,
                    help="where trials run: local worker processes (default), submitit_local or slurm")
    ap.add_argument("--slurm", default=None, metavar="KEY=V,...", help="Slurm options, e.g. partition=gpu,gpus_per_node=1")
    ap.add_argument("--seed", type=int, default=0, help="sampler seed")
    ap.add_argument("--no-wait", action="store_true", help="cluster executors: submit the workers and return")
    ap.add_argument("--table", default=None, help="write the results table to this CSV file")
    ap.add_argument("--status", default=None, metavar="OUT", help="print the table of the search in OUT and exit")
    return ap


def _parse_space(items: list[str]) -> dict[str, Any] | None:
    from ..config import parse_value

    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        out[name.strip()] = [parse_value(v) for v in rest.split(",")] if sep else None
    return out


def main(args: argparse.Namespace) -> int:
    """Run ``python -m ltlab search`` from parsed :func:`add_arguments` arguments; prints the table."""
    import pandas as pd

    from .presets import parse_params
    from .sweep.options import split_options

    try:
        if args.status:
            table = search_table(args.status, args.study)
        else:
            if not args.loss:
                raise ValueError("search: name a loss, e.g. python -m ltlab search gcl --trials 12 -p epochs 3")
            table = search(args.loss, n_trials=args.trials, space=_parse_space(args.space),
                           base_params=parse_params(args.param), objective=args.objective, pruner=args.pruner,
                           out_root=args.out_root, study_name=args.study, storage=args.storage, workers=args.workers,
                           executor=args.executor, slurm=split_options(args.slurm, "--slurm"), seed=args.seed,
                           startup_trials=args.startup_trials, wait=not args.no_wait)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"ltlab: error: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["error"] if not table.get("error", pd.Series([""])).any() else [])
              .round(4).to_string(index=False, na_rep="--"))
    if args.table:
        table.to_csv(args.table, index=False)
    return 0

