"""Deferred imports: a module that is slow to import and seldom used gets a stand-in that imports it on first use.

The one such module is ``rfc3987_syntax``. Every process that shows a plotly figure imports it: plotly's
renderers import nbformat, nbformat validates with jsonschema, and jsonschema's format checks run
``from rfc3987_syntax import is_valid_syntax`` when the package is installed (jupyter-events pulls it in
beside JupyterLab). At import it builds an Earley parser of the RFC 3987 grammar: 0.6-1 s of CPU in every
kernel, sweep worker and ``python -m ltlab`` command, for jsonschema's ``iri`` format check, which no notebook
schema uses.

:func:`defer_rfc3987_syntax` puts a stand-in in ``sys.modules``. Its ``is_valid_syntax`` and any other attribute
import the real package on first use and hand over to it, so every check gives the same answer as before; only
the import moves to the first ``iri`` check (which never comes in ltlab's processes). ``ltlab.viz`` installs it
on import (before any figure module imports plotly), as do ``python -m ltlab`` and a sweep's workers.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

_LOCK = threading.RLock()


class DeferredModule(types.ModuleType):
    """Stands in for the module ``name`` until it is used: the listed ``functions`` forward each call to the real
    module, imported on the first call; any other attribute imports it at once. Submodules import as usual
    (``__path__`` is the real package's)."""

    def __init__(self, name: str, spec: importlib.machinery.ModuleSpec, functions: tuple[str, ...]):
        super().__init__(name)
        self.__spec__ = spec
        if spec.submodule_search_locations is not None:
            self.__path__ = list(spec.submodule_search_locations)
        self._ltlab_real: types.ModuleType | None = None
        for fname in functions:
            setattr(self, fname, self._forward(fname))

    def _forward(self, fname: str):
        def forward(*args: Any, **kwargs: Any) -> Any:
            return getattr(self._load(), fname)(*args, **kwargs)

        forward.__name__ = forward.__qualname__ = fname
        forward.__doc__ = f"Imports {self.__name__} on first use and calls its {fname}."
        return forward

    def _load(self) -> types.ModuleType:
        """The real module, imported once (its import replaces this stand-in in ``sys.modules``)."""
        if self._ltlab_real is None:
            with _LOCK:
                if self._ltlab_real is None:
                    if sys.modules.get(self.__name__) is self:
                        del sys.modules[self.__name__]
                    try:
                        self._ltlab_real = importlib.import_module(self.__name__)
                    except BaseException:
                        sys.modules.setdefault(self.__name__, self)  # a later use tries again
                        raise
        return self._ltlab_real

    def __getattr__(self, attr: str) -> Any:  # only for names the stand-in does not have
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._load(), attr)


def defer(name: str, functions: tuple[str, ...] = ()) -> bool:
    """Put a :class:`DeferredModule` for ``name`` in ``sys.modules``; False (nothing done) when the module is
    already imported or not installed (then ``import name`` fails as before)."""
    if name in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    with _LOCK:
        if name in sys.modules:
            return False
        sys.modules[name] = DeferredModule(name, spec, functions)
    return True


def defer_rfc3987_syntax() -> bool:
    """Defer ``rfc3987_syntax`` (see the module docstring); jsonschema uses its ``is_valid_syntax``."""
    return defer("rfc3987_syntax", ("is_valid_syntax",))
