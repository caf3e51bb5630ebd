"""Writing run files: atomic writes (temporary file, fsync, rename, directory fsync), JSON / CSV / ``.npz`` /
torch files, and the checkpoints (``checkpoint.pt`` and the previous one; loaded with ``weights_only=True``)."""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import RunFileError
from .read import read_metrics

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
