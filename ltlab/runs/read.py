"""Reading run files safely: regular files only, sizes bounded, ``.npz`` headers checked before any array is
read (:func:`read_npz`), every file's values validated against the run's config, and :class:`NpzArrays` (the
arrays of a run ``.npz`` read on first use, the large ones memory-mapped)."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Iterator, MutableMapping

import numpy as np
import pandas as pd

from .errors import RunFileError
from .paths import METRIC_COLUMNS


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
