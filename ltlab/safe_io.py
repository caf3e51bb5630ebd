"""Reading files ltlab did not write without running code from them.

Run directories and data folders get shared, and a pickle runs whatever its ``__reduce__`` asks for.
So ltlab unpickles only plain data:

- torch files (checkpoints, backbone weights) load with ``torch.load(weights_only=True)`` and
  nothing allow-listed: tensors, numbers, strings, bytes, None and dict / OrderedDict / list / tuple.
  :func:`dump_torch` stores the numpy arrays and scalars of what it saves as tensors and records
  where they were under :data:`NUMPY_KEY`, so :func:`load_torch` gives back the same types
  (:func:`to_plain` / :func:`from_plain`).
- CIFAR batch files (dicts of lists, strings, ints and one numpy array) go through
  :class:`CifarUnpickler`, which resolves only numpy's array reconstruction.

Anything else raises :class:`UnsafeFileError` naming the file and the object, before it is built.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import io
import os
import pickle
import re
from collections import OrderedDict
from pathlib import PurePath
from typing import Any

import numpy as np
import torch

NUMPY_KEY = "numpy_arrays"  # [kind, *path] of every numpy array ("array") or scalar ("scalar") saved as a tensor
_LEAVES = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device, torch.Size)
_TENSORS = (torch.Tensor, torch.nn.Parameter)


class UnsafeFileError(ValueError):
    """A file asks the unpickler for an object ltlab does not load (it could run code)."""


# ---------------------------------------------------------------------- torch files
def _where(path: tuple) -> str:
    return "/".join(map(str, path)) or "<top>"


def _tensor(a: np.ndarray | np.generic, path: tuple) -> torch.Tensor:
    a = np.asarray(a)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"cannot save {_where(path)}: a numpy {a.dtype} array; a checkpoint holds numeric arrays only "
                        "(store strings as a list)")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if not (a.flags.c_contiguous and a.flags.writeable):
        a = a.copy(order="C")
    try:
        return torch.from_numpy(a)
    except TypeError as exc:  # e.g. float128
        raise TypeError(f"cannot save {_where(path)}: {exc}") from exc


def _plain(obj: Any, path: tuple, marks: list) -> Any:
    kind = type(obj)
    if kind in _LEAVES or kind in _TENSORS:
        return obj
    if isinstance(obj, PurePath):
        return str(obj)  # e.g. a RunConfig's root given as a Path
    if isinstance(obj, (np.ndarray, np.generic)):
        marks.append(["scalar" if isinstance(obj, np.generic) else "array", *path])
        return _tensor(obj, path)
    if kind in (dict, OrderedDict):
        bad = [k for k in obj if type(k) not in _LEAVES]
        if bad:
            raise TypeError(f"cannot save {_where(path)}: key {bad[0]!r} is a {type(bad[0]).__name__}; "
                            "use str or int keys")
        out = {k: _plain(v, (*path, k), marks) for k, v in obj.items()}
        if all(out[k] is obj[k] for k in obj):
            return obj  # unchanged: keeps an OrderedDict's attributes (a state_dict's _metadata)
        return kind(out)
    if kind in (list, tuple):
        out = [_plain(v, (*path, i), marks) for i, v in enumerate(obj)]
        return obj if all(a is b for a, b in zip(out, obj)) else kind(out)
    raise TypeError(f"cannot save {_where(path)}: a {kind.__module__}.{kind.__qualname__}; checkpoints hold only "
                    "tensors, numpy arrays, numbers, strings, None and dict/list/tuple (so they load with "
                    "torch.load(weights_only=True))")


def to_plain(obj: Any) -> tuple[Any, list[list]]:
    """``(obj with numpy arrays/scalars as tensors, where they were)``; paths become strings; TypeError naming
    any other object.

    Containers without numpy inside are returned as they are; the others are rebuilt with the same type.
    """
    marks: list[list] = []
    return _plain(obj, (), marks), marks


def from_plain(obj: Any, marks: list[list]) -> Any:
    """Undo :func:`to_plain`: the tensors at ``marks`` back to numpy arrays / scalars."""
    kinds = {tuple(m[1:]): m[0] for m in marks}
    prefixes = {p[:i] for p in kinds for i in range(len(p))}

    def back(o: Any, path: tuple) -> Any:
        if path in kinds:
            a = o.numpy()
            return a[()] if kinds[path] == "scalar" else a
        if path not in prefixes:
            return o
        if isinstance(o, dict):
            return type(o)((k, back(v, (*path, k))) for k, v in o.items())
        return type(o)(back(v, (*path, i)) for i, v in enumerate(o))
    return back(obj, ())


def dump_torch(obj: dict[str, Any]) -> bytes:
    """``torch.save`` bytes of ``obj`` that load with ``weights_only=True`` (numpy recorded under NUMPY_KEY).

    Tensors also keep checkpoints fast: torch.save writes a few large tensors far faster than it pickles
    numpy arrays.
    """
    plain, marks = to_plain(obj)
    if marks:
        plain = {**plain, NUMPY_KEY: marks}
    buf = io.BytesIO()
    torch.save(plain, buf)
    return buf.getvalue()


def _unsafe_globals(path: str | os.PathLike, exc: Exception) -> list[str]:
    """The globals ``path``'s pickle names that weights_only refuses (read without unpickling)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files: read the name from torch's message
        return re.findall(r"GLOBAL (\S+)", str(exc))[:1]


def open_regular(path: str | os.PathLike, max_bytes: int | None = None, *, error: type[Exception] = ValueError,
                 note: str = "") -> io.BufferedReader:
    """``path`` opened for reading only if it is a regular file (after symlinks) of at most ``max_bytes``: a FIFO
    would block a read (``torch.load``) forever and a device never ends. ``error`` (with ``note`` after the
    reason) names the file otherwise; a missing or unopenable file raises the OSError ``os.open`` gives."""
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path} is not a regular file (a FIFO, device or folder); ltlab reads only regular files{note}")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"{path} is {st.st_size} bytes, more than the {max_bytes} a run file of this kind can be; it "
                        "is not an ltlab file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_torch(path: str | os.PathLike, *, fix: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, numpy restored; :class:`UnsafeFileError` (plus ``fix``)
    when the file names any other object. Other failures (corrupt, truncated) propagate as torch raises them."""
    try:
        with open_regular(path) as fh:
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = sorted(_unsafe_globals(path, exc), key=lambda g: g.startswith("numpy."))  # strangers first
        detail = str(exc).partition("WeightsUnpickler error:")[2].strip().split("\n")[0].strip()
        if not found and detail and not detail.startswith("Unsupported operand"):  # refused content, not garbage
            raise UnsafeFileError(f"{path} was refused by the weights_only loader ({detail[:200]}): ltlab never "
                                  f"unpickles anything but tensors, numbers, strings and containers. {fix}".rstrip()
                                  ) from None
        if not found:
            raise
        names = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise UnsafeFileError(f"{path} contains {names}: ltlab loads torch files with weights_only=True (tensors, "
                              f"numbers, strings and containers only) and never unpickles other objects, which "
                              f"could run code. {fix}".rstrip()) from None
    except OSError as exc:  # torch reading a truncated file object: "Invalid argument" from a seek past the end
        raise ValueError(f"{path} is truncated or corrupt (torch could not read it: {exc})") from exc
    if isinstance(obj, dict) and NUMPY_KEY in obj:
        marks = obj.pop(NUMPY_KEY)
        try:
            obj = from_plain(obj, marks)
        except (AttributeError, KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"{path} is corrupt: its {NUMPY_KEY!r} list does not fit its contents ({exc})") from exc
    return obj


# ---------------------------------------------------------------------- CIFAR pickles
def _cifar_globals() -> dict[tuple[str, str], Any]:
    """What CIFAR batch files reference: numpy's array reconstruction under its numpy 1 and 2 module names
    (``_reconstruct``, protocols <= 4; ``_frombuffer``, protocol 5), ``ndarray`` and ``dtype``; and
    ``_codecs.encode``, which Python 3 writes for bytes at protocol 2 (re-pickled CIFAR-format files)."""
    a = np.zeros(1, np.uint8)
    reconstruct, frombuffer = a.__reduce__()[0], a.__reduce_ex__(5)[0]
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): codecs.encode}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class CifarUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batch files (latin1, as written by Python 2): only :func:`_cifar_globals` resolve."""

    ALLOWED = _cifar_globals()

    def __init__(self, file, path: str | os.PathLike) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)  # Python 2 names (__builtin__) as Python 3's
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeFileError(f"not a CIFAR batch file: {self.path} contains {module}.{name}") from None


def unpickle_cifar(path: str | os.PathLike) -> Any:
    """Read a CIFAR batch / meta pickle with :class:`CifarUnpickler`."""
    with open(path, "rb") as f:
        return CifarUnpickler(f, path).load()
