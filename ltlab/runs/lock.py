"""One writer per run directory: the OS lock (``.ltlab.lock``), the files ltlab writes there (anything else is
someone else's and refused), the temporary files a killed writer left, and claiming a directory before writing."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from .errors import RunDirLockedError, RunDirRefusedError
from .files import CHECKPOINTS, TEMP_PREFIX, TEMP_SUFFIX, _umask, path_error

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
