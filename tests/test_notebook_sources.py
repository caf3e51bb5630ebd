"""The committed notebooks are exactly what ``tools/make_notebooks.py`` (with ``tools/nb_*.py``) writes."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def test_committed_notebooks_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "tools" / "make_notebooks.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)  # defines the notebooks; writes nothing unless run as a script
    generated = gen.all_notebooks()
    committed = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(generated) == committed, "a notebook without a generator, or a generator without its notebook"
    for name, cells in generated.items():
        want = nbformat.writes(gen.notebook(cells, name.split(".")[0].replace("_", "-")))
        got = (ROOT / "notebooks" / name).read_text()
        assert got.strip() == want.strip(), f"notebooks/{name} differs from its generator: edit tools/ and run " \
                                            "python tools/make_notebooks.py"
