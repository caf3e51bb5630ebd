"""The layers of ltlab: the base (RunConfig and the registries) imports nothing above it, no ltlab module
imports itself through others (issue 24), and the figure package ltlab.viz is on top, with ltlab.launch: nothing
in the base, run-file or engine layers imports it; its old top-level paths only warn and point at it."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ltlab"

# what building a RunConfig must not load: training, stages, run files, launching and figures
# (ltlab.plotting, ltlab.plot_*, ltlab.plotstyle, ltlab.widgets, ltlab.export, ltlab.paper_*, ltlab.workbench and
# ltlab.tweaks are the deprecated paths of ltlab.viz modules: see MOVED_TO_VIZ)
ABOVE_THE_BASE = ("ltlab.engine", "ltlab.stages", "ltlab.runs", "ltlab.launch", "ltlab.cli", "ltlab.batch",
                  "ltlab.sweeps", "ltlab.notebook_runner", "ltlab.plotting", "ltlab.plot_", "ltlab.plotstyle",
                  "ltlab.widgets", "ltlab.export", "ltlab.paper_", "ltlab.workbench", "ltlab.tweaks",
                  "ltlab.build", "ltlab.features", "ltlab.viz",
                  "ltlab.posthoc.steps", "ltlab.presets", "ltlab.probes", "ltlab.distributed", "ltlab.loggers")


def _above(module: str) -> bool:
    return any(module == p or module.startswith(p if p.endswith("_") else p + ".") or
               (p.endswith("_") and module.startswith(p)) for p in ABOVE_THE_BASE)


def _fresh_python_json(code: str):
    """Run ``code`` in a fresh interpreter on this checkout; the JSON its last printed line holds."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.subprocess
def test_runconfig_imports_nothing_above_the_base():
    code = ("import json, sys; from ltlab.config import RunConfig; "
            "RunConfig(); RunConfig(stage='classifier', init_from='x', classifier_init='reset', posthoc={'method': 'pn'}); "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('ltlab'))))")
    loaded = _fresh_python_json(code)
    assert "ltlab.config" in loaded and "ltlab.stage_options" in loaded
    assert [m for m in loaded if _above(m)] == []


def test_above_the_base_matches_the_issue_list():
    for name in ("ltlab.engine.trainer", "ltlab.stages", "ltlab.runs", "ltlab.launch.cli", "ltlab.launch.sweep.run",
                 "ltlab.plot_outputs", "ltlab.paper_figures", "ltlab.plotstyle", "ltlab.viz", "ltlab.viz.plotting",
                 "ltlab.viz.style", "ltlab.viz.paper_stats", "ltlab.workbench", "ltlab.tweaks"):
        assert _above(name), name
    for name in ("ltlab.config", "ltlab.data.samplers", "ltlab.models", "ltlab.losses.gcl", "ltlab.posthoc.estimators"):
        assert not _above(name), name


# ---------------------------------------------------------------------- the static import graph
# An edge A -> B for each ``import`` / ``from ... import`` in A that names an ltlab module B, at module level,
# inside functions and in ``if __name__ == "__main__":`` blocks (``python -m ltlab.x`` runs that block with
# ltlab.x loaded as ``__main__``: a path from there back to ltlab.x loads the module a second time), plus B's
# parent packages (importing ``ltlab.x.y`` runs ``ltlab/x/__init__.py`` first), except A's own parents (a
# submodule never imports the package it is part of). Left out: imports under ``if TYPE_CHECKING:`` (they
# never run) and the lazy attribute lookup of a module ``__getattr__`` (importlib with a string).
def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = ["ltlab", *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_nodes(node: ast.AST):
    """Every node under ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (n for stmt in child.orelse for n in [stmt, *_runtime_nodes(stmt)])
            continue
        yield child
        yield from _runtime_nodes(child)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
                full = ".".join([*base, *([node.module] if node.module else [])])
                targets |= {f"{full}.{a.name}" if f"{full}.{a.name}" in modules else full for a in node.names}
        edges = set()
        for t in targets:
            if t in modules or any(p in modules for p in _parents(t)):
                edges |= {m for m in (*_parents(t), t) if m in modules}
        graph[name] = edges - {name, *_parents(name)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_cycles_main_blocks_and_parent_package_edges(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    pkg = tmp_path / "ltlab"
    (pkg / "p").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "p" / "__init__.py").write_text("from .a import f\n")
    (pkg / "p" / "a.py").write_text("from .. import q\n")  # a submodule importing its own package: no edge
    (pkg / "q.py").write_text("def g():\n    from .p import a\n")  # a function-level import counts
    (pkg / "w.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import q\n"
                              "if __name__ == '__main__':\n    from .r import main\n")
    (pkg / "r.py").write_text("def main():\n    from . import w\n")  # python -m ltlab.w loads w twice
    graph = import_graph(_modules(pkg))
    assert graph["ltlab.p.a"] == {"ltlab.q"} and graph["ltlab.q"] == {"ltlab.p", "ltlab.p.a"}
    assert graph["ltlab.w"] == {"ltlab.r"}  # the __main__ block counts, TYPE_CHECKING does not
    assert find_cycle(graph) == ["ltlab.p", "ltlab.p.a", "ltlab.q", "ltlab.p"]
    del graph["ltlab.q"]
    assert find_cycle(graph) == ["ltlab.r", "ltlab.w", "ltlab.r"]


def test_no_import_cycles_in_ltlab():
    graph = import_graph(_modules())
    assert len(graph) > 60 and graph["ltlab.engine.trainer"] >= {"ltlab.stages", "ltlab.config"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# ---------------------------------------------------------------------- ltlab.viz on top
# The layers below the top, by the modules (or packages) they are made of. ltlab.viz (figures, export, widgets,
# the paper figures) and ltlab.launch (CLI, sweeps, notebook runs; ltlab.__main__ is its ``python -m ltlab`` entry)
# are the top: they may import any layer, and only they (and the deprecated shims at the figure modules' old
# paths) may import ltlab.viz.
BASE = ("ltlab.config", "ltlab.stage_options", "ltlab.losses", "ltlab.models", "ltlab.data", "ltlab.schedules",
        "ltlab.metrics", "ltlab.space", "ltlab.methods_ref", "ltlab.posthoc.estimators", "ltlab.posthoc.functional",
        "ltlab.safe_io")
RUN_FILES = ("ltlab.runs",)
ENGINE = ("ltlab.engine", "ltlab.stages", "ltlab.build", "ltlab.features", "ltlab.probes", "ltlab.posthoc",
          "ltlab.distributed", "ltlab.loggers", "ltlab.progress")
TOP = ("ltlab.viz", "ltlab.launch", "ltlab.__main__")
# old path -> new module (each old path is a shim: warns once, then is the new module itself)
MOVED_TO_VIZ = {"plotting": "plotting", "plot_classifier": "plot_classifier", "plot_gradients": "plot_gradients",
                "plot_outputs": "plot_outputs", "plotstyle": "style", "export": "export", "widgets": "widgets",
                "workbench": "workbench", "tweaks": "tweaks", "paper_figures": "paper_figures",
                "paper_numbers": "paper_numbers", "paper_stats": "paper_stats"}


def _in(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in layer)


def test_only_the_top_imports_ltlab_viz():
    graph = import_graph(_modules())
    shims = {f"ltlab.{old}" for old in MOVED_TO_VIZ}
    for layer in (BASE, RUN_FILES, ENGINE, TOP):  # every layer names modules that exist
        assert all(any(_in(m, (p,)) for m in graph) for p in layer), layer
    below = [m for m in graph if _in(m, BASE + RUN_FILES + ENGINE)]
    assert "ltlab.config" in below and "ltlab.runs" in below and "ltlab.engine.trainer" in below
    offenders = {m: sorted(t for t in graph[m] if _in(t, ("ltlab.viz",)))
                 for m in graph if not _in(m, TOP) and m not in shims}
    assert {m: t for m, t in offenders.items() if t} == {}
    # the shims load their module by name at run time (no static edge): each is only that
    for old, new in MOVED_TO_VIZ.items():
        assert f"ltlab.viz.{new}" in graph and graph[f"ltlab.{old}"] == set(), old
        assert f'importlib.import_module("ltlab.viz.{new}")' in (PACKAGE / f"{old}.py").read_text()



def test_the_run_files_package_splits_one_module_and_keeps_its_names():
    """ltlab.runs is a package (paths, errors, files, lock, read, run, state: all in the run-file layer, no cycle
    among them); every name stays importable from ltlab.runs, rebuild_model (ltlab.build) on first use only."""
    import ltlab.build
    import ltlab.runs

    graph = import_graph(_modules())
    subs = sorted(m for m in graph if m.startswith("ltlab.runs."))
    assert subs == [f"ltlab.runs.{m}" for m in ("errors", "files", "lock", "paths", "read", "run", "state")]
    assert all(_in(m, RUN_FILES) for m in subs) and "ltlab.build" not in graph["ltlab.runs"]
    assert find_cycle({m: graph[m] & {"ltlab.runs", *subs} for m in ("ltlab.runs", *subs)}) is None
    assert ltlab.runs.rebuild_model is ltlab.build.rebuild_model and "rebuild_model" in dir(ltlab.runs)
    assert ltlab.runs.atomic_write_bytes is ltlab.runs.files.atomic_write_bytes
    assert ltlab.runs.load_run is ltlab.runs.run.load_run
    assert ltlab.runs.check_finished is ltlab.runs.state.check_finished


@pytest.mark.subprocess
def test_importing_ltlab_viz_loads_none_of_its_modules():
    code = ("import json, sys; import ltlab.viz; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('ltlab', 'plotly', 'torch', 'ipywidgets')))))")
    # ltlab.viz.deferred: the stand-in for rfc3987_syntax (no import of its own beyond the standard library)
    assert _fresh_python_json(code) == ["ltlab", "ltlab.viz", "ltlab.viz.deferred"]


@pytest.mark.subprocess
def test_the_old_figure_paths_warn_once_and_are_the_viz_modules():
    code = ("import json, warnings, importlib\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import ltlab.plotting\n"
            "    import ltlab.plotting\n"  # the second import finds the module cached: no second warning
            "    from ltlab import plotting\n"
            "import ltlab.viz.plotting\n"
            "out = {'first': [[c.category.__name__, str(c.message), c.filename] for c in caught],\n"
            "       'same': ltlab.plotting is ltlab.viz.plotting and plotting is ltlab.viz.plotting}\n"
            f"for old, new in {MOVED_TO_VIZ!r}.items():\n"
            "    with warnings.catch_warnings(record=True) as caught:\n"
            "        warnings.simplefilter('always')\n"
            "        module = importlib.import_module('ltlab.' + old)\n"
            "    out[old] = [[c.category.__name__, str(c.message)] for c in caught if 'moved to' in str(c.message)]\n"
            "    out[old + ' is'] = module is importlib.import_module('ltlab.viz.' + new)\n"
            "print(json.dumps(out))\n")
    out = _fresh_python_json(code)
    assert out["first"] == [["DeprecationWarning", "ltlab.plotting moved to ltlab.viz.plotting; the old path is "
                                "removed in ltlab 0.3", "<string>"]]
    assert out["same"] is True and out["plotting"] == []
    for old, new in MOVED_TO_VIZ.items():
        if old != "plotting":  # (already imported above: cached, so no second warning)
            assert out[old] == [["DeprecationWarning", f"ltlab.{old} moved to ltlab.viz.{new}; the old path is "
                                 "removed in ltlab 0.3"]], old
        assert out[old + " is"] is True, old


def test_monkeypatching_the_old_path_patches_the_new_module(monkeypatch):
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("ltlab.export")
    from ltlab.viz import export
    assert old is export
    monkeypatch.setattr(old, "slug", lambda name: "patched")
    assert export.slug("x") == "patched"


# ---------------------------------------------------------------------- stage options as plain data
def test_stage_options_name_the_registered_stages():
    from ltlab.stage_options import STAGE_OPTIONS, alias_names
    from ltlab.stages import STAGES

    assert list(STAGE_OPTIONS) == list(STAGES)
    for name, stage in STAGES.items():
        opts = STAGE_OPTIONS[name]
        assert (stage.name, stage.defaults, stage.choices, stage.aliases, stage.needs_init_from, stage.distributed) == \
               (opts.name, opts.defaults, opts.choices, opts.aliases, opts.needs_init_from, opts.distributed)
        assert set(opts.choices) <= set(opts.defaults)
        assert all(key is None or key in opts.defaults for key in opts.aliases.values())
    assert alias_names() == list(dict.fromkeys(a for s in STAGES.values() for a in s.aliases))


@pytest.mark.subprocess
def test_the_old_search_path_warns_once_and_is_the_launch_module():
    """ltlab.search moved under ltlab.launch (it starts runs); the old path warns once and is that module."""
    code = ("import json, warnings\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import ltlab.search\n"
            "import ltlab.launch.search\n"
            "print(json.dumps([[str(c.message) for c in caught if 'moved to' in str(c.message)],\n"
            "                  ltlab.search is ltlab.launch.search]))\n")
    assert _fresh_python_json(code) == [
        ["ltlab.search moved to ltlab.launch.search; the old path is removed in ltlab 0.3"], True]
