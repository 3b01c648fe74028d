"""The library's import graph: layers by stage of the pipeline, no cycles, no private names
across modules, and the package docstring's map is the real graph."""
import ast
import re
from pathlib import Path

import fatsmb_lib

PACKAGE = Path(fatsmb_lib.__file__).parent
# lowest first: a module imports only from its own layer or one below it
LAYERS = ("support", "data", "models", "training", "studies", "course")


def modules(package: Path) -> list[str]:
    """Every module as "layer.module" (or "module" for a flat test package)."""
    return sorted(".".join(p.relative_to(package).with_suffix("").parts)
                  for p in package.rglob("*.py") if p.stem != "__init__")


def imports(package: Path, module: str) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every in-package import of ``module``."""
    tree = ast.parse((package / f"{module.replace('.', '/')}.py").read_text())
    here = module.split(".")[:-1]                     # the module's package, as parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 0:
                if not base.startswith("fatsmb_lib"):
                    continue                              # a third-party import
                parts = base.split(".")[1:]
            else:
                parts = here[:len(here) - (node.level - 1)] + (base.split(".") if base else [])
            target = ".".join(parts)
            for alias in node.names:
                candidate = f"{target}.{alias.name}" if target else alias.name
                if (package / f"{candidate.replace('.', '/')}.py").is_file():
                    found.append((candidate, None))       # from .pkg import module
                else:
                    found.append((target, alias.name))
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


def upward_imports(graph: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(module, target) pairs where ``target`` sits in a layer above ``module``'s."""
    layer = lambda name: LAYERS.index(name.split(".")[0])  # noqa: E731
    return [(m, t) for m, targets in graph.items() for t in targets if layer(t) > layer(m)]


def documented_map() -> dict[str, list[str]]:
    """The package docstring's map: {layer: its modules in the order written}."""
    block = fatsmb_lib.__doc__.split("::")[1].split("\n\n")[1]
    rows = {}
    for line in block.splitlines():
        if line.startswith(" " * 6):     # a continuation line: more modules of the layer above
            rows[layer] += re.findall(r"[a-z_0-9]+", line.split("#")[0])
            continue
        layer, _, rest = line.strip().partition(" ")
        rows[layer] = re.findall(r"[a-z_0-9]+", rest.split("#")[0])
    return rows


def test_every_module_sits_in_a_layer_and_imports_only_downwards():
    graph = graph_of(PACKAGE)
    assert {m.split(".")[0] for m in graph} == set(LAYERS)
    assert all(target in graph for targets in graph.values() for target in targets), graph
    assert upward_imports(graph) == []


def test_the_package_docstring_draws_the_real_graph():
    """Every module is listed once under its layer, layers in order, and a module imports
    only modules of its layer written to its left (or lower layers)."""
    documented = documented_map()
    assert tuple(documented) == LAYERS
    listed = [f"{layer}.{m}" for layer, names in documented.items() for m in names]
    assert sorted(listed) == modules(PACKAGE)
    graph = graph_of(PACKAGE)
    position = {name: i for i, name in enumerate(listed)}
    late = [(m, t) for m, targets in graph.items() for t in targets if position[t] > position[m]]
    assert late == []


def test_no_import_cycles():
    assert find_cycle(graph_of(PACKAGE)) is None


def test_no_private_names_imported_across_modules():
    private = [(m, target, name) for m in modules(PACKAGE) for target, name in imports(PACKAGE, m)
               if name is not None and name.startswith("_")]
    assert private == []


def test_the_checks_catch_a_cycle_a_private_import_and_an_upward_import(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "data" / "a.py").write_text("import numpy\nfrom .b import _hidden\n")
    (tmp_path / "data" / "b.py").write_text("from ..models import c\n")
    (tmp_path / "models" / "c.py").write_text("from fatsmb_lib.data.a import thing\n")
    assert imports(tmp_path, "data.a") == [("data.b", "_hidden")]
    graph = graph_of(tmp_path)
    assert find_cycle(graph) == ["data.a", "data.b", "models.c", "data.a"]
    assert upward_imports(graph) == [("data.b", "models.c")]
