"""No import cycles inside ltlab/: every import statement of the source, module level and inside functions.

An edge A -> B for each ``import``/``from ... import`` in A that names an ltlab module B, plus B's parent
packages (importing ``ltlab.x.y`` runs ``ltlab/x/__init__.py`` first), except A's own parents (a
submodule never imports the package it is part of). Left out: imports under ``if TYPE_CHECKING:`` (they
never run), under ``if __name__ == "__main__":`` (a script entry point, which imports the module itself
afresh) and the lazy attribute lookup of a module ``__getattr__`` (importlib with a string), which
resolves an old name on first use, after both modules are loaded.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "ltlab"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ["ltlab", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_nodes(node: ast.AST):
    """Every node under ``node`` except the bodies of ``if TYPE_CHECKING:`` and ``if __name__ == "__main__":``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and any(s in ast.unparse(child.test) for s in ("TYPE_CHECKING", "__main__")):
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


def test_the_cycle_finder_finds_cycles_and_parent_package_edges(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    pkg = tmp_path / "ltlab"
    (pkg / "p").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "p" / "__init__.py").write_text("from .a import f\n")
    (pkg / "p" / "a.py").write_text("from .. import q\n")  # a submodule importing its own package: no edge
    (pkg / "q.py").write_text("def g():\n    from .p import a\n")  # a function-level import counts
    modules = {"ltlab": pkg / "__init__.py", "ltlab.p": pkg / "p" / "__init__.py", "ltlab.p.a": pkg / "p" / "a.py",
               "ltlab.q": pkg / "q.py"}
    graph = import_graph(modules)
    assert graph["ltlab.p.a"] == {"ltlab.q"} and graph["ltlab.q"] == {"ltlab.p", "ltlab.p.a"}
    assert find_cycle(graph) == ["ltlab.p", "ltlab.p.a", "ltlab.q", "ltlab.p"]


def test_no_import_cycles_in_ltlab():
    graph = import_graph(_modules())
    assert len(graph) > 60 and graph["ltlab.engine.trainer"] >= {"ltlab.stages", "ltlab.config"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
