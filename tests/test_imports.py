"""The library's import graph: no cycles, and no module reaches into another's private names."""
import ast
from pathlib import Path

import fatsmb_lib

PACKAGE = Path(fatsmb_lib.__file__).parent


def modules(package: Path) -> list[str]:
    return sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__")


def imports(package: Path, module: str) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every in-package import of ``module``."""
    tree = ast.parse((package / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 0 and not base.startswith("fatsmb_lib"):
                continue                                  # a third-party import
            target = base.removeprefix("fatsmb_lib").lstrip(".")
            if not target:                                # from . import x / from fatsmb_lib import x
                found += [(alias.name, None) for alias in node.names]
            else:
                found += [(target, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name.removeprefix("fatsmb_lib."), None) for alias in node.names
                      if alias.name.startswith("fatsmb_lib.")]
    return found


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A list of modules forming an import cycle, or None (depth-first search)."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        if state.get(module) == "open":
            return path[path.index(module):] + [module]
        if state.get(module) == "done":
            return None
        state[module] = "open"
        for target in graph[module]:
            cycle = visit(target, path + [module])
            if cycle:
                return cycle
        state[module] = "done"
        return None

    for module in graph:
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def graph_of(package: Path) -> dict[str, list[str]]:
    return {m: sorted({target for target, _ in imports(package, m)}) for m in modules(package)}


def test_graph_covers_only_real_modules():
    graph = graph_of(PACKAGE)
    assert all(target in graph for targets in graph.values() for target in targets), graph
    assert {"run", "model", "batches"} <= set(graph["stages"])


def test_no_import_cycles():
    assert find_cycle(graph_of(PACKAGE)) is None


def test_no_private_names_imported_across_modules():
    private = [(m, target, name) for m in modules(PACKAGE) for target, name in imports(PACKAGE, m)
               if name is not None and name.startswith("_")]
    assert private == []


def test_the_checks_catch_a_cycle_and_a_private_import(tmp_path):
    (tmp_path / "a.py").write_text("import numpy\nfrom .b import _hidden\n")
    (tmp_path / "b.py").write_text("from . import c\n")
    (tmp_path / "c.py").write_text("from fatsmb_lib.a import thing\n")
    assert imports(tmp_path, "a") == [("b", "_hidden")]
    assert find_cycle(graph_of(tmp_path)) == ["a", "b", "c", "a"]
