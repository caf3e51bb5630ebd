"""ltlab.viz.deferred: the stand-in for a slow, seldom-used module imports it on first use and answers as it would.

In this process with a fake package (so the test sees when its code runs), and once in a fresh interpreter with
the real chain: a plotly figure's mime bundle (plotly -> nbformat -> jsonschema) leaves ``rfc3987_syntax``
unimported, and jsonschema's ``iri`` check gives the real package's answers.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ltlab.viz.deferred import DeferredModule, defer

PACKAGE = '''
import os
IMPORTS = int(os.environ.get("FAKE_SLOW_IMPORTS", "0")) + 1
os.environ["FAKE_SLOW_IMPORTS"] = str(IMPORTS)

def is_valid_syntax(kind, text):
    return kind == "iri" and " " not in text

def other():
    return "other"
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_slow_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PACKAGE)
    (pkg / "sub.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FAKE_SLOW_IMPORTS", "0")
    yield "fake_slow_pkg"
    for name in [m for m in sys.modules if m == "fake_slow_pkg" or m.startswith("fake_slow_pkg.")]:
        del sys.modules[name]


def _imports() -> int:
    import os
    return int(os.environ["FAKE_SLOW_IMPORTS"])


def test_the_function_imports_the_module_on_its_first_call_and_answers_as_the_module(fake):
    assert defer(fake, ("is_valid_syntax",))
    from fake_slow_pkg import is_valid_syntax  # what jsonschema does at its import

    assert _imports() == 0 and isinstance(sys.modules[fake], DeferredModule)
    assert is_valid_syntax("iri", "http://x/") is True and is_valid_syntax("iri", "a b") is False
    assert _imports() == 1 and not isinstance(sys.modules[fake], DeferredModule)
    assert sys.modules[fake].is_valid_syntax("iri", "a b") is False and _imports() == 1  # imported once


def test_any_other_attribute_imports_the_module_at_once(fake):
    assert defer(fake, ("is_valid_syntax",))
    import fake_slow_pkg

    assert _imports() == 0
    assert fake_slow_pkg.other() == "other" and _imports() == 1
    assert not hasattr(fake_slow_pkg, "__no_such_dunder__")


def test_a_submodule_imports_through_the_stand_in(fake):
    assert defer(fake, ("is_valid_syntax",))
    from fake_slow_pkg.sub import VALUE

    assert VALUE == 7 and _imports() == 0


def test_nothing_is_deferred_when_absent_or_already_imported(fake):
    assert not defer("no_such_module_for_ltlab", ("f",))
    with pytest.raises(ImportError):
        import no_such_module_for_ltlab  # noqa: F401
    import fake_slow_pkg  # noqa: F401

    assert not defer(fake, ("is_valid_syntax",)) and _imports() == 1


def test_a_failing_import_raises_at_first_use_and_is_tried_again(fake, tmp_path):
    (tmp_path / "fake_slow_pkg" / "__init__.py").write_text("raise RuntimeError('broken install')\n")
    assert defer(fake, ("is_valid_syntax",))
    from fake_slow_pkg import is_valid_syntax

    for _ in range(2):
        with pytest.raises(RuntimeError, match="broken install"):
            is_valid_syntax("iri", "x")
        assert isinstance(sys.modules[fake], DeferredModule)


CHAIN = textwrap.dedent('''
    import json, sys
    import ltlab.viz  # installs the stand-in
    from ltlab.viz import plotting  # noqa: F401 - plotly's figure builders
    import plotly.graph_objects as go
    go.Figure(go.Scatter(y=[1, 2]))._repr_mimebundle_({"application/vnd.plotly.v1+json"})
    import jsonschema
    loaded = {m: m in sys.modules for m in ("nbformat", "jsonschema")}
    deferred = type(sys.modules["rfc3987_syntax"]).__name__
    checker = jsonschema.FormatChecker()
    answers = [checker.conforms(v, "iri") for v in ("http://例え.jp/パス?q=1", "not an iri", "http://a b/")]
    real = type(sys.modules["rfc3987_syntax"]).__name__
    print(json.dumps({"loaded": loaded, "deferred": deferred, "answers": answers, "real": real}))
''')


@pytest.mark.subprocess
def test_a_figure_kernel_leaves_rfc3987_syntax_unimported_and_iri_checks_unchanged():
    pytest.importorskip("rfc3987_syntax")
    from rfc3987_syntax import is_valid_syntax

    out = subprocess.run([sys.executable, "-c", CHAIN], capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["loaded"] == {"nbformat": True, "jsonschema": True}  # the chain that imported it did run
    assert got["deferred"] == "DeferredModule" and got["real"] == "module"
    assert got["answers"] == [is_valid_syntax("iri", v) for v in ("http://例え.jp/パス?q=1", "not an iri",
                                                                   "http://a b/")]
    assert got["answers"][0] and not got["answers"][2]
