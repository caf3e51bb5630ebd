"""Run directories: atomic writes, ``load_run`` and listing runs.

A run directory (docs/architecture.md, "Run directory") is the only contract between training and
analysis. Every file is written to a temporary name in the same folder, fsynced and renamed, so a
crash never leaves a half-written file.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, MutableMapping

import numpy as np
import pandas as pd

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "acc", "acc_many", "acc_medium", "acc_few", "seconds"]


def project_home() -> Path:
    """Where ``runs/`` and ``figures/`` live: ``$LTLAB_HOME``, else the source checkout, else the cwd."""
    env = os.environ.get("LTLAB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists():
        return checkout
    return Path.cwd()


def runs_root() -> Path:
    return project_home() / "runs"


# ---------------------------------------------------------------------- atomic writes
TEMP_SUFFIX = ".tmp"


def path_error(what: str, exc: OSError) -> OSError:
    """An OSError whose message names ``what`` failed and why; keeps ``errno`` (e.g. ENOSPC) for callers."""
    err = OSError(f"{what}: {exc.strerror or exc} (check the path, free disk space and permissions)")
    err.errno = exc.errno  # no strerror: str(err) stays our message
    return err


def _write_error(path: Path, exc: OSError) -> OSError:
    return path_error(f"cannot write {path}", exc)


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and Windows) cannot fsync a directory
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, keep_previous: str | os.PathLike | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file + fsync + rename + directory fsync.

    ``keep_previous``: first make the current ``path`` (if any) that file, so the last two versions
    survive (checkpoints). ``path`` exists at every moment once written (hard link, then rename; a
    plain rename where hard links are not supported). OSErrors name the path that failed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if keep_previous is not None and path.exists():
            _keep_previous(path, Path(keep_previous))
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, exc) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _keep_previous(path: Path, previous: Path) -> None:
    link = previous.with_name(f".{previous.name}.link{TEMP_SUFFIX}")
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)          # previous := current, while current stays in place
        os.replace(link, previous)
    except OSError:
        link.unlink(missing_ok=True)
        os.replace(path, previous)   # no hard links here: a short window with only the previous file


def remove_stale_temps(run_dir: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed writer left in ``run_dir`` (``.<name>.*.tmp``); returns them."""
    gone = []
    for p in Path(run_dir).glob(f".*{TEMP_SUFFIX}"):
        try:
            p.unlink()
            gone.append(p)
        except OSError:
            pass
    return gone


def write_json(path, obj: Any) -> Path:
    return atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def write_csv(path, df: pd.DataFrame) -> Path:
    return atomic_write_bytes(path, df.to_csv(index=False).encode())


def write_npz(path, arrays: dict[str, Any], *, compress: bool = False) -> Path:
    """Atomic ``.npz``; uncompressed by default (zlib on float data saves little and cost ~0.5 s per write
    of a 200-epoch CIFAR-100 probes.npz, rewritten during training)."""
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def save_torch(path, obj: dict[str, Any], *, keep_previous: str | os.PathLike | None = None) -> Path:
    """Atomic ``torch.save`` of a dict that loads with ``weights_only=True`` (:func:`ltlab.safe_io.dump_torch`)."""
    from .safe_io import dump_torch
    return atomic_write_bytes(path, dump_torch(obj), keep_previous=keep_previous)


CHECKPOINTS = ("checkpoint.pt", "checkpoint_prev.pt")  # newest first; the last two are kept
CONVERT_HINT = ("Checkpoints written by ltlab before it switched to weights_only loading pickle numpy arrays "
                "(numpy.ndarray, numpy.dtype, ..._reconstruct) and are refused too: convert one you trust once with "
                "ltlab.runs.convert_checkpoint({path!r}, trust=True); never one from someone you do not trust "
                "(converting runs the code it carries).")


def convert_checkpoint(path: str | os.PathLike, *, trust: bool = False) -> list[Path]:
    """Rewrite checkpoints an older ltlab wrote (numpy objects pickled inside) so they load safely.

    ``path``: a checkpoint file or a run directory (its ``checkpoint.pt`` and ``checkpoint_prev.pt``).
    Loading such a file means full unpickling, which runs any code the file carries, so this needs
    ``trust=True``: use it only on files you or someone you trust wrote. Files that already load with
    ``weights_only=True`` are left alone. Each file is rewritten atomically with the same contents.
    Returns the files rewritten.
    """
    import torch

    from .safe_io import UnsafeFileError, load_torch
    p = Path(path)
    files = [p / n for n in CHECKPOINTS if (p / n).exists()] if p.is_dir() else [p]
    if not files or not files[0].exists():
        raise FileNotFoundError(f"no checkpoint at {p}")
    if trust is not True:
        raise ValueError(f"convert_checkpoint({str(p)!r}) unpickles the file completely, which runs any code inside "
                         "it; pass trust=True only if you or someone you trust wrote it")
    done = []
    for f in files:
        try:
            load_torch(f)
            continue  # already safe
        except UnsafeFileError:
            pass
        save_torch(f, torch.load(f, map_location="cpu", weights_only=False))  # the caller vouched for it
        done.append(f)
    return done


_CKPT_KEYS = ("epoch", "model", "optimizer", "loss", "history")


def load_checkpoint(run_dir: str | os.PathLike) -> dict:
    """Newest readable checkpoint of ``run_dir`` (falls back to the previous one if the newest is corrupt).

    Loaded with ``weights_only=True``: a checkpoint that names any other object (it could run code) raises
    :class:`~ltlab.safe_io.UnsafeFileError` at once, with no fallback and nothing built from it.
    """
    from .safe_io import UnsafeFileError, load_torch
    errors = []
    for name in CHECKPOINTS:
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            ckpt = load_torch(path, fix=CONVERT_HINT.format(path=str(run_dir)))
        except UnsafeFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other unpickling failure means "corrupt"
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        missing = [k for k in _CKPT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        if missing:
            errors.append(f"{path}: not an ltlab checkpoint (lacks {missing})")
            continue
        return ckpt
    if errors:
        raise ValueError("no readable checkpoint: " + "; ".join(errors) + ". Start a new run (resume=False, "
                         "another run_dir)")
    raise FileNotFoundError(f"no checkpoint.pt in {run_dir}; start the run with resume=False")


# ---------------------------------------------------------------------- reading
class RunFileError(ValueError):
    """A run directory lacks a file or holds a corrupt one."""


class RunNotFoundError(RunFileError):
    """No run where the parameters point; the message lists the runs there are and how to make one.

    A notebook shows it as that message alone, without a traceback through the library (IPython's
    ``_render_traceback_`` hook): what to fix is the parameters cell, not ltlab."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[1;31m{type(self).__name__}\x1b[0m: {self}"]


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


def _need(path: Path, producer: str) -> Path:
    if not path.exists():
        raise RunFileError(f"{path} is missing; {producer}")
    return path


def read_npz(path: Path, producer: str = "re-run training to produce it") -> dict[str, np.ndarray]:
    _need(path, producer)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises BadZipFile, zlib.error, EOFError, ValueError, ...
        raise RunFileError(f"{path} is corrupt, truncated or unreadable ({type(exc).__name__}: {exc}); "
                           f"{producer}") from exc


def read_metrics(path: Path) -> pd.DataFrame:
    _need(path, "it is written by ltlab.run after every evaluated epoch")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - ParserError, EmptyDataError, UnicodeDecodeError, OSError, ...
        raise RunFileError(f"{path} is corrupt, truncated or unreadable ({type(exc).__name__}: {exc}); "
                           "resume the run with resume=True to rewrite it") from exc
    missing = [c for c in METRIC_COLUMNS if c not in df.columns]
    if missing:
        raise RunFileError(f"{path} lacks columns {missing}; it is truncated or was not written by ltlab.run")
    try:
        df = df.astype({c: float for c in METRIC_COLUMNS if c != "epoch"})
        gaps = df[["epoch", "lr", "train_loss", "acc", "seconds"]].isna().any(axis=1)  # never NaN when written
        if gaps.any():
            raise ValueError(f"row {int(np.flatnonzero(gaps.to_numpy())[0]) + 1} has missing fields")
        df = df.astype({"epoch": int})
    except (ValueError, TypeError, OverflowError) as exc:
        raise RunFileError(f"{path} holds missing or non-numeric values ({exc}); it is corrupt or truncated") from exc
    return df


def read_json(path: Path, producer: str = "it is written by ltlab.run when the run starts") -> Any:
    _need(path, producer)
    try:
        return json.loads(path.read_bytes().decode())
    except Exception as exc:  # noqa: BLE001 - JSONDecodeError, UnicodeDecodeError, OSError
        raise RunFileError(f"{path} is corrupt, truncated or unreadable ({type(exc).__name__}: {exc})") from exc


def read_config(path: Path) -> dict:
    config = read_json(path)
    if not isinstance(config, dict):
        raise RunFileError(f"{path} holds a {type(config).__name__}, not the run's parameters; it is corrupt")
    return config


MMAP_MIN_BYTES = 1 << 20  # members of per_class.npz / probes.npz at least this large are memory-mapped


class NpzArrays(MutableMapping):
    """The arrays of one run ``.npz``, read on first use: a dict-like view (``[k]``, ``in``, ``get``, ``keys``).

    Opening reads the zip directory and each member's ``.npy`` header only (names, dtypes, shapes: a damaged
    or truncated file fails at once, with a :class:`RunFileError`); an array is read when first asked for
    and kept. Uncompressed members of ``MMAP_MIN_BYTES`` or more (the test logits: 800 MB for iNaturalist)
    are memory-mapped read-only instead of read, so ``run.per_class["test_logits"][:100]`` touches 100 rows.
    Assigning or deleting a key changes this view only, never the file. ``loaded`` names the arrays read
    (``mapped``: those of them memory-mapped).
    A file replaced after opening (a run still training rewrites it) is indexed again before the next read.
    """

    def __init__(self, path: str | os.PathLike, producer: str = "re-run training to produce it",
                 missing=None):
        self.path = Path(path)
        self.producer = producer
        self.missing = missing  # (self, key) -> KeyError raised for a key the file lacks (None: KeyError(key))
        self._index: dict[str, tuple] = {}
        self._stamp: tuple | None = None
        self._cache: dict[str, Any] = {}
        self._gone: set[str] = set()
        self.loaded: set[str] = set()
        self.mapped: set[str] = set()
        self._open()

    # ------------------------------------------------------------------ the file
    def _fail(self, exc: BaseException) -> RunFileError:
        return RunFileError(f"{self.path} is corrupt, truncated or unreadable ({type(exc).__name__}: {exc}); "
                            f"{self.producer}")

    def _open(self) -> None:
        """Index the members: name -> (member, data offset, dtype, shape, fortran order, stored uncompressed)."""
        import zipfile

        _need(self.path, self.producer)
        try:
            stat = self.path.stat()
            index = {}
            with open(self.path, "rb") as fh, zipfile.ZipFile(fh) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        raise ValueError(f"member {info.filename!r} is not a .npy array")
                    fh.seek(info.header_offset)
                    local = fh.read(30)
                    if local[:4] != b"PK\x03\x04":
                        raise ValueError(f"bad local header of {info.filename!r}")
                    n, extra = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
                    if fh.read(n).decode("utf-8", "replace") != info.filename:
                        raise ValueError(f"local header of {info.filename!r} names another member")
                    fh.seek(extra, os.SEEK_CUR)
                    stored = info.compress_type == zipfile.ZIP_STORED
                    header = fh if stored else zf.open(info)
                    version = np.lib.format.read_magic(header)
                    shape, fortran, dtype = (np.lib.format.read_array_header_1_0(header) if version == (1, 0)
                                             else np.lib.format.read_array_header_2_0(header))
                    if dtype.hasobject:
                        raise ValueError(f"{info.filename!r} holds Python objects (refused: loading them runs code)")
                    index[info.filename[:-4]] = (info, fh.tell() if stored else None, dtype, shape, fortran, stored)
        except RunFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - BadZipFile, ValueError, EOFError, OSError, ...
            raise self._fail(exc) from exc
        self._index, self._stamp = index, (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _read(self, key: str) -> np.ndarray:
        import zipfile

        try:
            stat = self.path.stat()
            if (stat.st_ino, stat.st_mtime_ns, stat.st_size) != self._stamp:
                self._open()  # rewritten since (a run still training): read the newest version
            info, offset, dtype, shape, fortran, stored = self._index[key]
            size = int(np.prod(shape)) * dtype.itemsize
            if stored and size >= MMAP_MIN_BYTES:
                self.mapped.add(key)
                return np.asarray(np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                            order="F" if fortran else "C"))
            with zipfile.ZipFile(self.path) as zf, zf.open(info) as member:  # checks the CRC
                return np.lib.format.read_array(member, allow_pickle=False)
        except KeyError:
            raise
        except RunFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged member: BadZipFile (CRC), ValueError, EOFError, ...
            raise self._fail(exc) from exc

    # ------------------------------------------------------------------ the mapping
    def __getitem__(self, key: str) -> Any:
        if key in self._cache:
            return self._cache[key]
        if key in self._gone or key not in self._index:
            raise (self.missing(self, key) if self.missing is not None else KeyError(key))
        value = self._cache[key] = self._read(key)
        self.loaded.add(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._cache[key] = value
        self._gone.discard(key)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._cache.pop(key, None)
        self._gone.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._cache or (key in self._index and key not in self._gone)

    def __iter__(self) -> Iterator[str]:
        return iter([*(k for k in self._index if k not in self._gone and k not in self._cache), *self._cache])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of ``key`` without reading it."""
        if key in self._cache:
            return tuple(np.shape(self._cache[key]))
        if key not in self:
            raise KeyError(key)
        return tuple(self._index[key][3])

    def copy(self) -> dict[str, Any]:
        """Every array as a plain dict (reads them all)."""
        return {k: self[k] for k in self}

    def __repr__(self) -> str:
        return f"NpzArrays({str(self.path)!r}, keys={list(self)}, loaded={sorted(self.loaded)})"


def lazy_npz(path: str | os.PathLike, producer: str = "re-run training to produce it") -> NpzArrays:
    """The arrays of ``path`` read on first use (:class:`NpzArrays`)."""
    return NpzArrays(path, producer)


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
        """Last evaluated epoch's overall and many/medium/few accuracy."""
        if not len(self.metrics):
            raise RunFileError(f"{self.dir / 'metrics.csv'} has no evaluated epoch yet")
        last = self.metrics.iloc[-1]
        return {k: float(last[k]) for k in ("epoch", "acc", "acc_many", "acc_medium", "acc_few")}

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
    from .probes import NotRecordedError, not_recorded

    return NotRecordedError(not_recorded(arrays, key))


def load_run(path: str | os.PathLike) -> Run:
    """Read a run directory written by :func:`ltlab.run`; fail clearly on a missing or corrupt file.

    ``config`` and ``metrics`` are read at once; the arrays of ``per_class.npz`` and ``probes.npz`` on first
    use (their directories and array headers are checked here, see :class:`NpzArrays`)."""
    d = resolve_run_dir(path)
    config = read_config(d / "config.json")
    metrics = read_metrics(d / "metrics.csv")
    per_class = NpzArrays(d / "per_class.npz")  # arrays read on first use (NpzArrays)
    probes = NpzArrays(d / "probes.npz", missing=_probe_not_recorded) if (d / "probes.npz").exists() else {}
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
