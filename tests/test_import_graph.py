"""The package's import graph, read from the source with ``ast``: no cycles, stages in order.

Every ``import`` counts wherever it stands (module level or inside a function), and so do the
lazy re-export tables (``_EXPORTS`` and the CLI's ``_COMMANDS``: dicts of module names imported
on first use). Imports under ``if TYPE_CHECKING:`` are left out: they never run. Importing
``frugal_search.a.b`` from outside ``frugal_search.a`` also runs ``frugal_search/a/__init__.py``,
so that edge is added too (the root package's own ``__init__`` is left out: everything is under it).

The stage order is docs/ARCHITECTURE.md's: optimizer < partition < proxy < search < report <
validate < train < cli, with ``units`` and ``_lazy`` below every stage; a module may import its own stage
and the stages before it, and another stage only through that stage's public names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "frugal_search"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
STAGES = ("optimizer", "partition", "proxy", "search", "report", "validate", "train", "cli")
BOTTOM = ("units", "_lazy")  # below every stage
TOP = ("", "__main__")  # the root package and ``python -m frugal_search``: above every stage


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under ``root`` (packages by their ``__init__``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except what sits in the body of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.If) and _is_type_checking(node) and child in node.body:
                continue
            stack.append(child)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The known module ``name`` lands in: itself, or the nearest package above it."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path], package: str) -> list[tuple[str, str | None]]:
    """``(imported module, name taken from it or None)`` for every runtime import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, str | None]] = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule, None) if submodule in modules else (base, alias.name))
        elif isinstance(node, ast.Dict) and node.values:
            values = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            if len(values) == len(node.values) and all(v.startswith(f"{package}.") for v in values):
                found += [(value, None) for value in values]  # a lazy table of module names
    return [(target, name) for target, name in found if target == package or target.startswith(f"{package}.")]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules its runtime imports run (implicit package ``__init__`` edges included)."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        for target, _ in imports_of(module, path, modules, package):
            resolved = _resolve(target, modules)
            if resolved is None or resolved == module:
                continue
            graph[module].add(resolved)
            parts = resolved.split(".")
            for depth in range(2, len(parts)):  # the packages above it, root excluded
                parent = ".".join(parts[:depth])
                if not (module == parent or module.startswith(f"{parent}.")):
                    graph[module].add(parent)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module, as one cycle through it each."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the package is small enough to recurse
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        next_frontier = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    next_frontier.append(target)
        frontier = next_frontier
    return component


def stage_rank(module: str, package: str = PACKAGE) -> int:
    """0 for ``units``/``_lazy``, 1.. for the stages in order, above them the root and ``__main__``."""
    first = module[len(package) + 1 :].split(".")[0] if module != package else ""
    if first in BOTTOM:
        return 0
    if first in STAGES:
        return 1 + STAGES.index(first)
    assert first in TOP, f"{module} is in no stage of docs/ARCHITECTURE.md: add it to the test's table"
    return 1 + len(STAGES)


def stage_of(module: str, package: str = PACKAGE) -> str:
    return module[len(package) + 1 :].split(".")[0] if module != package else ""


def public_names(path: Path) -> set[str] | None:
    """The names a package ``__init__`` exports (``__all__`` or its lazy ``_EXPORTS`` keys)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        targets = [t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
        value = getattr(node, "value", None)
        if "_EXPORTS" in targets and isinstance(value, ast.Dict):
            return {key.value for key in value.keys if isinstance(key, ast.Constant)}
        if "__all__" in targets and isinstance(value, (ast.List, ast.Tuple)):
            return {item.value for item in value.elts if isinstance(item, ast.Constant)}
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT, PACKAGE)


def test_the_walker_sees_function_level_imports_lazy_tables_and_skips_type_checking(tmp_path: Path) -> None:
    # A toy package whose only cycle is hidden in a function, plus a TYPE_CHECKING import that
    # would make a second cycle if it were counted, and a lazy table in the package __init__.
    package = tmp_path / "toy"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('_EXPORTS = {"f": "toy.a"}\n')
    (package / "a.py").write_text("from toy.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def later():\n    from toy import a\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.d import x\nfrom toy.a import y\n"
    )
    (package / "d.py").write_text("from . import c\n")
    toy = import_graph(package, "toy")
    assert toy["toy"] == {"toy.a"}
    assert toy["toy.a"] == {"toy.sub.b", "toy.sub"}
    assert toy["toy.sub.b"] == {"toy.a"}
    assert toy["toy.c"] == {"toy.a"} and toy["toy.d"] == {"toy.c"}
    assert find_cycles(toy) == [["toy.a", "toy.sub", "toy.sub.b", "toy.a"]] or find_cycles(toy) == [
        ["toy.a", "toy.sub.b", "toy.a"]
    ]


def test_no_import_cycle_between_modules_of_the_package(graph: dict[str, set[str]]) -> None:
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (function-level imports count), one per group of modules:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_every_module_imports_only_its_stage_and_the_stages_before_it(graph: dict[str, set[str]]) -> None:
    backwards = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if stage_rank(target) > stage_rank(module)
    )
    assert not backwards, "imports of a later stage (docs/ARCHITECTURE.md order):\n" + "\n".join(backwards)


def test_other_stages_are_reached_through_their_public_names() -> None:
    modules = module_names(ROOT, PACKAGE)
    exported = {
        name: public_names(path) for name, path in modules.items() if path.name == "__init__.py"
    }
    private = []
    for module, path in modules.items():
        for target, name in imports_of(module, path, modules, PACKAGE):
            resolved = _resolve(target, modules)
            if resolved is None or stage_of(resolved) == stage_of(module) or stage_rank(resolved) == 0:
                continue  # the same stage, or the shared bottom (units, _lazy)
            if stage_rank(module) > len(STAGES):
                continue  # the root package re-exports the stages; __main__ calls the CLI
            stage_package = f"{PACKAGE}.{stage_of(resolved)}"
            head, _, last = resolved.rpartition(".")
            if name is None and head == stage_package and last in (exported.get(stage_package) or set()):
                # "from stage import x" where x is both a submodule and an exported name: the name
                resolved, name = stage_package, last
            if resolved != stage_package or name is None:
                private.append(f"{module} imports {target}")
            elif name not in (exported.get(stage_package) or set()):
                private.append(f"{module} imports {name!r} that {stage_package} does not export")
    assert not private, "names another stage does not export:\n" + "\n".join(sorted(set(private)))
