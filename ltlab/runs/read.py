"""Run directories: atomic writes, ``load_run`` and listing runs.

A run directory (docs/architecture.md, "Run directory") is the only contract between training and
analysis. Every file is written to a temporary name in the same folder, fsynced and renamed, so a
crash never leaves a half-written file.
"""
from __future__ import annotations

import io
import json
import os
import stat
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
    checkout = Path(__file__).resolve().parent.parent.parent
    if (checkout / "pyproject.toml").exists():
        return checkout
    return Path.cwd()


def runs_root() -> Path:
    return project_home() / "runs"


# ---------------------------------------------------------------------- atomic writes
TEMP_SUFFIX = ".tmp"
TEMP_PREFIX = ".ltlab-"  # every temporary file ltlab writes is .ltlab-<name>.<random>.tmp: only these are removed


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


def _umask() -> int:
    """The process umask (Linux: read from /proc, so no other thread sees a changed one; else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, keep_previous: str | os.PathLike | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file + fsync + rename + directory fsync.

    ``keep_previous``: first make the current ``path`` (if any) that file, so the last two versions
    survive (checkpoints). ``path`` exists at every moment once written (hard link, then rename; a
    plain rename where hard links are not supported). The file gets the mode a plain ``open`` would give
    (0666 less the umask, 0644 typically; ``mkstemp`` alone makes 0600, which collaborators on a shared file
    system cannot read). OSErrors name the path that failed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
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
    link = previous.with_name(f"{TEMP_PREFIX}{previous.name}.link{TEMP_SUFFIX}")
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)          # previous := current, while current stays in place
        os.replace(link, previous)
    except OSError:
        link.unlink(missing_ok=True)
        os.replace(path, previous)   # no hard links here: a short window with only the previous file


def is_ltlab_temp(name: str) -> bool:
    """Whether ``name`` is a temporary file ltlab writes (``.ltlab-*.tmp``), or one an ltlab before that prefix
    wrote next to one of its run files (``.<run file>.<random>.tmp``)."""
    if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
        return True
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return False
    inner = name[1:-len(TEMP_SUFFIX)]
    base, _, rand = inner.rpartition(".")
    return bool(base) and bool(rand) and (is_run_file(base) or base.endswith(".link") and is_run_file(base[:-5]))


def remove_stale_temps(run_dir: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed ltlab writer left in ``run_dir`` (:func:`is_ltlab_temp`: never another
    program's ``.*.tmp``); returns them. Call it only while holding the run directory's lock."""
    gone = []
    for p in Path(run_dir).glob(f".*{TEMP_SUFFIX}"):
        if not is_ltlab_temp(p.name) or not p.is_file() or p.is_symlink():
            continue
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
    from ..safe_io import dump_torch
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

    from ..safe_io import UnsafeFileError, load_torch
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
CHECKPOINT_FILE_KEY = "_loaded_from"  # load_checkpoint records which file it read (for messages); never saved


def _warn_older(run_dir: Path, path: Path, ckpt: dict, why: str) -> None:
    """Warn that ``path`` (checkpoint_prev.pt) stands in for an unreadable checkpoint.pt, and how many epochs it is
    behind metrics.csv (a model rebuilt from it, e.g. for features, is older than the metrics show)."""
    import warnings

    try:
        epoch = int(ckpt["epoch"])
    except (TypeError, ValueError):
        epoch = None
    behind = ""
    try:
        last = int(read_metrics(run_dir / "metrics.csv")["epoch"].iloc[-1])
        if epoch is not None and last > epoch:
            behind = (f"; metrics.csv ends at epoch {last}, so a model (features, post-hoc) rebuilt from it is "
                      f"{last - epoch} epoch(s) older than the metrics")
    except (RunFileError, IndexError, KeyError, ValueError):
        pass
    warnings.warn(f"{why.split(': ', 1)[0]} is unreadable ({why.split(': ', 1)[-1][:200]}); using {path.name} "
                  f"(end of epoch {epoch}) instead{behind}", stacklevel=3)


def load_checkpoint(run_dir: str | os.PathLike) -> dict:
    """Newest readable checkpoint of ``run_dir`` (falls back to the previous one if the newest is corrupt).

    Loaded with ``weights_only=True``: a checkpoint that names any other object (it could run code) raises
    :class:`~ltlab.safe_io.UnsafeFileError` at once, with no fallback and nothing built from it.
    """
    from ..safe_io import UnsafeFileError, load_torch
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
        if errors:  # the newest was unreadable: say so, with how far behind the metrics this one is
            _warn_older(Path(run_dir), path, ckpt, errors[0])
        ckpt[CHECKPOINT_FILE_KEY] = str(path)
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


class RunDirRefusedError(RunFileError):
    """A run directory this process may not write: it holds files that are not ltlab's, or a run that is not being
    resumed, or another process is writing it (:class:`RunDirLockedError`)."""


class RunDirLockedError(RunDirRefusedError):
    """Another process holds the run directory's lock (it is training into it); the message names its host and PID.
    A sweep skips such a run."""


# ---------------------------------------------------------------------- one writer per run directory
LOCK_FILE = ".ltlab.lock"
# the names ltlab writes into a run directory (fnmatch patterns); anything else there is someone else's
RUN_FILES = ("config.json", "metrics.csv", "per_class.npz", "probes.npz", "features_*.npz", "*.npz",
             "checkpoint.pt", "checkpoint_prev.pt", "posthoc_*.json", "*.ipynb", "events.out.tfevents.*",
             LOCK_FILE, ".sweep_job.json", ".sweep_result.json", ".sweep_running.json", ".sweep_worker.log",
             ".ipynb_checkpoints")


def is_run_file(name: str) -> bool:
    """Whether ``name`` is a file ltlab writes into a run directory (``RUN_FILES``)."""
    import fnmatch

    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES)


def _is_ltlab_config(path: Path) -> bool:
    """Whether ``path`` is a config.json ltlab wrote (a JSON object with ``ltlab_version``); read only as a regular
    file of at most 16 MB."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > 1 << 24:
            return False
        config = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "ltlab_version" in config


def foreign_files(run_dir: str | os.PathLike) -> list[str]:
    """The entries of ``run_dir`` that ltlab did not write (not ``RUN_FILES``, not an ltlab temp file; a
    ``config.json`` that is not an ltlab config; a symlink or a folder where a run file belongs), sorted."""
    d = Path(run_dir)
    found = []
    for p in sorted(d.iterdir()):
        name = p.name
        if is_ltlab_temp(name):
            continue
        if not is_run_file(name):
            found.append(name)
        elif name == ".ipynb_checkpoints":
            if p.is_symlink() or not p.is_dir():
                found.append(name)
        elif p.is_symlink() or not p.is_file():
            found.append(name)
        elif name == "config.json" and not _is_ltlab_config(p):
            found.append(name)
    return found


_HELD: dict[str, list] = {}  # resolved run directory -> [fd, how many claims of this process hold it]


class RunDirLock:
    """The lock of one run directory held by this process (:func:`lock_run_dir`); ``release()`` or ``with``."""

    def __init__(self, run_dir: Path, key: str) -> None:
        self.run_dir, self._key, self._held = run_dir, key, True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        entry = _HELD.get(self._key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _HELD[self._key]
            os.close(entry[0])  # closing the descriptor releases the flock

    def __enter__(self) -> "RunDirLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"host {info['host']}, PID {info['pid']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its host and PID"


def lock_run_dir(run_dir: str | os.PathLike) -> RunDirLock:
    """Take the OS lock (``flock``) on ``run_dir/.ltlab.lock``, creating the folder; the kernel releases it when
    the process dies, however it dies, so a killed run never leaves a stale lock. The lock file then names this
    host and PID. Another process holding it: :class:`RunDirLockedError` naming its host and PID. A second claim
    by the same process shares the lock. Without ``fcntl`` (Windows) nothing is locked."""
    import socket

    d = Path(run_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error(f"cannot create the run directory {d}", exc) from exc
    key = str(d.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return RunDirLock(d, key)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return RunDirLock(d, key)
    path = d / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NONBLOCK", 0), 0o666 & ~_umask())
    except OSError as exc:
        raise RunDirRefusedError(f"cannot open the lock file {path} ({exc.strerror}); it must be a regular file "
                                 "ltlab can write") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunDirRefusedError(f"{path} is not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirLockedError(f"{d} is being written by another process ({_holder(fd)}); wait for it to "
                                    "finish (or stop it), or choose another run_dir") from None
        info = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1]
    return RunDirLock(d, key)


def checkpoint_stamp(run_dir: str | os.PathLike) -> tuple | None:
    """(inode, mtime, size) of ``run_dir/checkpoint.pt``, or None: whether another writer replaced it in between."""
    try:
        st = (Path(run_dir) / CHECKPOINTS[0]).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def refuse_foreign(run_dir: str | os.PathLike) -> None:
    """:class:`RunDirRefusedError` (nothing written) when ``run_dir`` exists and is not a folder, or holds entries
    that are not ltlab's (:func:`foreign_files`): a user's folder is never written into."""
    d = Path(run_dir)
    if d.exists() or d.is_symlink():
        if not d.is_dir():
            raise RunDirRefusedError(f"run_dir {d} exists and is not a folder; choose another run_dir")
        foreign = foreign_files(d)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise RunDirRefusedError(f"run_dir {d} holds files that are not ltlab's ({shown}); ltlab writes only into "
                                     "a new or empty folder or its own run directory: choose another run_dir")


def claim_run_dir(run_dir: str | os.PathLike, *, resume: bool = False, stamp: tuple | None = None) -> RunDirLock:
    """Make ``run_dir`` this process's to write, before anything is written into it; returns its lock (release
    it, or use ``with``, when the run is done).

    Refused with :class:`RunDirRefusedError` (nothing written) when it is not a folder or holds entries that are
    not ltlab's (:func:`foreign_files`: a user's ``config.json`` is never overwritten); with
    :class:`RunDirLockedError` when another process holds its lock; and, under the lock, when it already holds a
    run that is not being resumed, or (``resume``) its ``checkpoint.pt`` changed since ``stamp``
    (:func:`checkpoint_stamp` taken before it was read: another writer moved on). Then the temporary files of a
    killed ltlab writer are removed (only ltlab's own, :func:`is_ltlab_temp`).
    """
    d = Path(run_dir)
    refuse_foreign(d)
    lock = lock_run_dir(d)
    try:
        held = [n for n in (*CHECKPOINTS, "metrics.csv") if (d / n).exists()]
        if not resume and held:
            raise RunDirRefusedError(f"{d} already holds a run ({', '.join(held)}); pass resume=True to continue "
                                     "it, or choose another run_dir")
        if resume and checkpoint_stamp(d) != stamp:
            raise RunDirLockedError(f"{d}/checkpoint.pt was replaced by another process while this one read it; "
                                    "resume again once that process has finished")
        remove_stale_temps(d)
    except BaseException:
        lock.release()
        raise
    return lock


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


MAX_NPZ_BYTES = 1 << 32    # one array of a run file (features of a large training split stay below)
MAX_NPZ_MEMBERS = 10_000
MAX_TEXT_BYTES = 1 << 28   # metrics.csv, config.json and other text run files
MAX_TEST_ROWS = 1 << 24    # test images a run's logits may hold


def open_regular(path: Path, max_bytes: int | None = None, producer: str = "") -> io.BufferedReader:
    """``path`` opened for reading only if it is a regular file (after symlinks) of at most ``max_bytes``: a FIFO
    would block the read forever and ``/dev/zero`` never ends. RunFileError naming the file otherwise
    (:func:`ltlab.safe_io.open_regular`)."""
    from ..safe_io import open_regular as open_regular_file
    try:
        return open_regular_file(path, max_bytes, error=RunFileError,
                                 note=" from a run directory: remove or replace it")
    except FileNotFoundError:
        raise RunFileError(f"{path} is missing" + (f"; {producer}" if producer else "")) from None
    except OSError as exc:
        raise RunFileError(f"{path} cannot be opened ({exc.strerror})") from None


def npz_headers(fh: Any, path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """``{key: (shape, dtype)}`` of an open ``.npz`` from its members' ``.npy`` headers, without reading any data
    (so sizes can be checked before an array is allocated)."""
    import zipfile

    out = {}
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_NPZ_MEMBERS:
            raise ValueError(f"{len(infos)} members, more than {MAX_NPZ_MEMBERS}")
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with zf.open(info) as m:
                version = np.lib.format.read_magic(m)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(m)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(m)
                else:
                    raise ValueError(f"member {key!r}: unsupported .npy format version {version}")
            out[key] = (tuple(shape), dtype)
    fh.seek(0)
    return out


def _nbytes(shape: tuple, dtype: np.dtype) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * max(dtype.itemsize, 1)


def read_npz(path: Path, producer: str = "re-run training to produce it",
             check: Any = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` run file, read as plain data (``allow_pickle=False``) from a regular file only.

    Before any array is read, its header's shape and dtype are checked: no object arrays, at most
    ``MAX_NPZ_BYTES`` each, and ``check(headers)`` (e.g. :func:`validate_per_class` with the run's config: sizes
    against its classes and epochs) when given. Every failure is a RunFileError naming the file (and the key)."""
    fh = open_regular(path, None, producer)
    try:
        try:
            headers = npz_headers(fh, path)
        except RunFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError, ValueError, ...
            raise RunFileError(f"{path} is corrupt, truncated or unreadable ({type(exc).__name__}: {exc}); "
                               f"{producer}") from exc
        for key, (shape, dtype) in headers.items():
            if dtype.hasobject:
                raise RunFileError(f"{path}: {key!r} holds Python objects; run files hold numbers and text only")
            if _nbytes(shape, dtype) > MAX_NPZ_BYTES:
                raise RunFileError(f"{path}: {key!r} claims shape {shape} ({_nbytes(shape, dtype)} bytes), more "
                                   f"than a run file holds; it is not an ltlab file")
        if check is not None:
            check(headers)
        try:
            with np.load(fh, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001
            raise RunFileError(f"{path} is corrupt, truncated or unreadable ({type(exc).__name__}: {exc}); "
                               f"{producer}") from exc
    finally:
        fh.close()


def _describe(x: Any) -> tuple[tuple, np.dtype, np.ndarray | None]:
    """(shape, dtype, array or None) of an array or an npz header ``(shape, dtype)``."""
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], np.dtype):
        return x[0], x[1], None
    a = np.asarray(x)
    return a.shape, a.dtype, a


def _config_int(config: dict | None, key: str) -> int | None:
    v = (config or {}).get(key)
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def validate_per_class(arrays: dict[str, Any], config: dict | None, path: Path) -> None:
    """Check ``per_class.npz`` (arrays, or their npz headers before reading) against the run's ``config``: ``acc``
    (evaluations, C) float in [0, 1], ``epochs`` increasing 0-based epochs below ``config['epochs']``,
    ``class_counts`` (C,) non-negative integers, ``test_logits`` (M, C) finite floats, ``test_labels`` (M,) in
    [0, C). RunFileError naming file and key."""
    def bad(key: str, why: str) -> RunFileError:
        return RunFileError(f"{path}: {key!r} {why}; the file is corrupt or was not written by ltlab.run")

    missing = [k for k in ("acc", "class_counts") if k not in arrays]
    if missing:
        raise bad(missing[0], "is missing")
    num_classes, epochs = _config_int(config, "num_classes"), _config_int(config, "epochs")
    shape, dtype, counts = _describe(arrays["class_counts"])
    if len(shape) != 1 or dtype.kind not in "iu" or (num_classes and shape[0] != num_classes):
        raise bad("class_counts", f"must be {num_classes or 'C'} integers, got shape {shape} of {dtype}")
    c = shape[0]
    if counts is not None and (counts < 0).any():
        raise bad("class_counts", "holds a negative count")
    shape, dtype, acc = _describe(arrays["acc"])
    if len(shape) != 2 or shape[1] != c or dtype.kind != "f" or (epochs and shape[0] > epochs):
        raise bad("acc", f"must be (evaluations <= {epochs or 'epochs'}, {c}) floats, got shape {shape} of {dtype}")
    if acc is not None and not (np.isfinite(acc).all() and ((acc >= 0) & (acc <= 1)).all()):
        raise bad("acc", "holds values outside [0, 1] or NaN/inf")
    if "epochs" in arrays:
        eshape, edtype, ep = _describe(arrays["epochs"])
        if eshape != (shape[0],) or edtype.kind not in "iu":
            raise bad("epochs", f"must be {shape[0]} integers (one per row of acc), got shape {eshape} of {edtype}")
        if ep is not None and ((ep < 0).any() or (np.diff(ep) <= 0).any() or (epochs and (ep >= epochs).any())):
            raise bad("epochs", f"must be increasing 0-based epochs below {epochs or 'the run epochs'}")
    if "test_logits" in arrays:
        lshape, ldtype, logits = _describe(arrays["test_logits"])
        if len(lshape) != 2 or lshape[1] != c or ldtype.kind != "f" or lshape[0] > MAX_TEST_ROWS:
            raise bad("test_logits", f"must be (test images, {c}) floats, got shape {lshape} of {ldtype}")
        if logits is not None and not np.isfinite(logits).all():
            raise bad("test_logits", "holds NaN/inf")
        if "test_labels" not in arrays:
            raise bad("test_labels", "is missing (test_logits has no labels)")
        yshape, ydtype, labels = _describe(arrays["test_labels"])
        if yshape != (lshape[0],) or ydtype.kind not in "iu":
            raise bad("test_labels", f"must be {lshape[0]} integer labels, got shape {yshape} of {ydtype}")
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= c):
            raise bad("test_labels", f"holds labels outside 0..{c - 1}")
    for key, x in arrays.items():
        kshape, kdtype, _ = _describe(x)
        if kdtype.kind not in "biufU":
            raise bad(key, f"has dtype {kdtype}; run files hold numbers and text")


def _probe_limit(config: dict | None) -> int | None:
    """Most values one probes.npz array of this run can hold: (epochs + 1) x max(steps per epoch, C) x C, times 4
    for slack (per epoch per class, class x class matrices, the first epoch at step grain); None without a config."""
    c, epochs, batch = (_config_int(config, k) for k in ("num_classes", "epochs", "batch_size"))
    counts = (config or {}).get("class_counts")
    if not (c and epochs and batch and isinstance(counts, list)):
        return None
    try:
        steps = int(sum(int(n) for n in counts)) // batch + 1
    except (TypeError, ValueError):
        return None
    width = max(c, 3)
    return 4 * (epochs + 1) * max(steps, width) * width


def validate_probes(arrays: dict[str, Any], config: dict | None, path: Path) -> None:
    """Check ``probes.npz`` (arrays or npz headers): numbers (or text: scalars and the short ``*_names`` lists such
    as ``by_group_names``), at most 3 dimensions, each array
    at most :func:`_probe_limit` values for the run's epochs, classes and steps; ``epochs`` increasing and
    non-negative. RunFileError naming file and key."""
    limit = _probe_limit(config)
    for key, x in arrays.items():
        shape, dtype, a = _describe(x)
        names = key.endswith("_names") and len(shape) == 1 and shape[0] <= 16  # e.g. by_group_names
        if dtype.kind not in "biufU" or (dtype.kind == "U" and shape != () and not names):
            raise RunFileError(f"{path}: {key!r} has dtype {dtype} and shape {shape}; probes are numbers (and a few "
                               "names)")
        size = _nbytes(shape, np.dtype(np.int8))
        if len(shape) > 3 or (limit is not None and size > limit):
            raise RunFileError(f"{path}: {key!r} has shape {shape}, more than a run of {config.get('epochs')} epochs "
                               f"and {config.get('num_classes')} classes records; the file is corrupt or was not "
                               "written by ltlab.run")
    if "epochs" in arrays:
        _, _, ep = _describe(arrays["epochs"])
        if ep is not None and (ep.ndim != 1 or (ep < 0).any() or (np.diff(ep) <= 0).any()):
            raise RunFileError(f"{path}: 'epochs' must be increasing non-negative epochs")


def read_per_class(path: Path, config: dict | None) -> dict[str, np.ndarray]:
    """``per_class.npz`` read with its sizes checked against ``config`` before reading and its values after."""
    arrays = read_npz(path, check=lambda headers: validate_per_class(headers, config, path))
    validate_per_class(arrays, config, path)
    return arrays


def read_probes(path: Path, config: dict | None) -> dict[str, np.ndarray]:
    """``probes.npz`` read with :func:`validate_probes` on its headers (before reading) and its arrays."""
    arrays = read_npz(path, check=lambda headers: validate_probes(headers, config, path))
    validate_probes(arrays, config, path)
    return arrays


def validate_metrics(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Check ``metrics.csv`` values: ``epoch`` non-negative and strictly increasing (no duplicated rows), ``acc`` in
    [0, 1], ``acc_many/medium/few`` in [0, 1] or NaN (an empty group), ``lr``, ``train_loss``, ``seconds`` finite
    (``lr``, ``seconds`` >= 0). RunFileError naming the file, the column and the row."""
    def bad(col: str, rows: Any, why: str) -> RunFileError:
        row = int(np.flatnonzero(np.asarray(rows))[0]) + 2  # the line in the file (after the header)
        return RunFileError(f"{path}: column {col!r} line {row} {why}; the file is corrupt or was edited")

    epoch = df["epoch"].to_numpy()
    if (epoch < 0).any():
        raise bad("epoch", epoch < 0, "is negative")
    if len(epoch) > 1 and (np.diff(epoch) <= 0).any():
        raise bad("epoch", np.r_[False, np.diff(epoch) <= 0], "does not increase (a duplicated or reordered row)")
    for col in ("acc", "acc_many", "acc_medium", "acc_few"):
        v = df[col].to_numpy(dtype=float)
        out = ~((v >= 0) & (v <= 1)) & ~(np.isnan(v) & (col != "acc"))
        if out.any():
            raise bad(col, out, "is not an accuracy in [0, 1]")
    for col, low in (("lr", 0.0), ("train_loss", -np.inf), ("seconds", 0.0)):
        v = df[col].to_numpy(dtype=float)
        out = ~np.isfinite(v) | (v < low)
        if out.any():
            raise bad(col, out, "is not a finite number" + (" >= 0" if low == 0 else ""))
    return df


def read_metrics(path: Path) -> pd.DataFrame:
    producer = "it is written by ltlab.run after every evaluated epoch"
    fh = open_regular(path, MAX_TEXT_BYTES, producer)
    try:
        with fh:
            df = pd.read_csv(fh)
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
        if (df["epoch"] != df["epoch"].round()).any():
            raise ValueError("an epoch is not a whole number")
        df = df.astype({"epoch": int})
    except (ValueError, TypeError, OverflowError) as exc:
        raise RunFileError(f"{path} holds missing or non-numeric values ({exc}); it is corrupt or truncated") from exc
    return validate_metrics(df, path)


def read_json(path: Path, producer: str = "it is written by ltlab.run when the run starts") -> Any:
    fh = open_regular(path, MAX_TEXT_BYTES, producer)
    try:
        with fh:
            return json.loads(fh.read().decode())
    except Exception as exc:  # noqa: BLE001 - JSONDecodeError, UnicodeDecodeError, OSError, RecursionError
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
                 missing=None, check=None):
        self.path = Path(path)
        self.producer = producer
        self.missing = missing  # (self, key) -> KeyError raised for a key the file lacks (None: KeyError(key))
        # check(arrays): validation of {key: (shape, dtype) header or array}: on every header when the file is
        # indexed, and with an array's values when it is first read (validate_per_class / validate_probes)
        self.check = check
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
        fh = open_regular(self.path, None, self.producer)  # a FIFO or /dev/zero would hang the read
        try:
            stat = os.fstat(fh.fileno())
            index = {}
            with fh, zipfile.ZipFile(fh) as zf:
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
                    if _nbytes(shape, dtype) > MAX_NPZ_BYTES:
                        key = info.filename[:-4]
                        raise RunFileError(f"{self.path}: {key!r} claims shape {shape} ({_nbytes(shape, dtype)} "
                                           f"bytes), more than the {MAX_NPZ_BYTES} an array of a run file can be; "
                                           "it is not an ltlab file")
                    index[info.filename[:-4]] = (info, fh.tell() if stored else None, dtype, shape, fortran, stored)
        except RunFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - BadZipFile, ValueError, EOFError, OSError, ...
            raise self._fail(exc) from exc
        self._index, self._stamp = index, (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self.check is not None:
            self.check(self._headers())

    def _headers(self) -> dict[str, tuple]:
        return {k: (tuple(v[3]), v[2]) for k, v in self._index.items()}

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
        value = self._read(key)
        if self.check is not None:
            self.check({**self._headers(), key: value})
        self._cache[key] = value
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


# ---------------------------------------------------------------------- how far a run directory got
def run_state(run_dir: str | os.PathLike) -> str:
    """``"complete"``, ``"partial"`` (``checkpoint.pt``, not finished) or ``"new"``.

    Complete: ``checkpoint.pt`` exists and ``metrics.csv`` ends at epoch ``epochs - 1`` of the run's own
    ``config.json`` (the epochs the run actually used)."""
    d = Path(run_dir)
    if not (d / "checkpoint.pt").exists():
        return "new"
    return "complete" if _epochs_done(d) == _epochs_planned(d) else "partial"


def _epochs_planned(d: Path) -> int | None:
    try:
        return int(json.loads((d / "config.json").read_text())["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _epochs_done(d: Path) -> int:
    try:
        return int(pd.read_csv(d / "metrics.csv")["epoch"].iloc[-1]) + 1
    except (OSError, ValueError, KeyError, IndexError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return 0


def check_finished(init_from: str | os.PathLike) -> None:
    """Refuse a stage-one run (``init_from``) that has not trained all its epochs (stopped by
    ``epochs_per_call``, killed, ...): the one check every second stage goes through, whether started by
    ``ltlab.run``, ``python -m ltlab`` or a sweep. FileNotFoundError when it does not exist."""
    d = Path(init_from)
    if not d.is_dir():
        raise FileNotFoundError(f"init_from={init_from}: no such run directory; point init_from at a finished "
                                "stage-one run directory")
    if run_state(d) != "complete":
        raise ValueError(f"init_from={init_from}: stage one is unfinished ({_epochs_done(d)} of "
                         f"{_epochs_planned(d) or '?'} epochs done); finish it first with -p run_dir {init_from} "
                         "-p resume True (and no epochs_per_call), then run this stage")
