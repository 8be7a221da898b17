"""The import structure docs/architecture.md promises, checked from the source.

Imports are read with ``ast``, so imports inside functions and under ``TYPE_CHECKING``
count too: a lazy import hides a dependency from the interpreter, not from a reader.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.support import REPO

_ROOTS = ("stella", "pipelines", "transforms", "runners", "schemas")
_SURFACES = ("stella.cli", "stella.service")  # the only stella packages that may launch pipelines


@cache
def _modules() -> dict[str, Path]:
    found = {}
    for root in _ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported_names(module: str) -> Iterator[str]:
    """Every module an import statement of ``module`` names (relative ones resolved).

    ``from package import submodule`` names the submodule, not the package.
    """
    path = _modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in _modules() else base


@cache
def _graph() -> dict[str, frozenset[str]]:
    """Project module -> the project modules it imports."""
    modules = _modules()
    graph = {}
    for module in modules:
        targets = set()
        for name in _imported_names(module):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = frozenset(targets)
    return graph


@cache
def _third_party(module: str) -> frozenset[str]:
    """Top-level names of the non-project, non-stdlib packages ``module`` imports."""
    tops = {name.split(".")[0] for name in _imported_names(module) if name}
    return frozenset(
        t for t in tops if t not in _ROOTS and t not in sys.stdlib_module_names and t != "__future__"
    )


def _closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in _graph()[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _unit(module: str) -> str:
    """The module map's unit: a ``stella`` subpackage or top-level module, or a top-level folder."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "stella" else parts[0]


def test_no_import_cycles() -> None:
    graph, index, low, stack, on_stack, cycles = _graph(), {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


# Modules inside a port package that are rules every implementation shares, not implementations.
_PORT_RULES = {"stella.targets.egress": "the egress allowlist every target checks before connecting"}


def test_interfaces_reach_no_implementation() -> None:
    ports = sorted(
        m.rpartition(".")[0] for m in _modules() if m.startswith("stella.") and m.endswith(".interface")
    )
    assert {
        "stella.adapters",
        "stella.documents",
        "stella.encryption",
        "stella.signers",
        "stella.targets",
    } <= set(ports)
    implementations = {
        m
        for m in _modules()
        for port in ports
        if m.startswith(port + ".") and not m.endswith(".interface") and m not in _PORT_RULES
    }
    for rule in _PORT_RULES:  # a rule is a leaf of its port: it names no implementation either
        assert not _closure(rule) & implementations, rule
    for port in ports:
        reached = _closure(f"{port}.interface") & implementations
        assert reached == set(), f"{port}.interface reaches implementations {sorted(reached)}"


def test_only_surfaces_launch_pipelines() -> None:
    for module, targets in _graph().items():
        launched = {t for t in targets if t.split(".")[0] in ("pipelines", "runners")}
        if module.startswith("stella") and not module.startswith(_SURFACES):
            assert launched == set(), f"{module} imports {sorted(launched)}"
        if module.startswith("stella"):
            assert not {t for t in targets if t.startswith("transforms")}, module


def test_beam_only_where_documented() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    paragraph = text[text.index("Beam inside `stella/`:") :].split("\n\n")[0]
    documented = set(re.findall(r"`(stella/[\w/]+\.py)`", paragraph))
    using = {
        str(_modules()[m].relative_to(REPO))
        for m in _modules()
        if m.startswith("stella") and "apache_beam" in _third_party(m)
    }
    assert using == documented


def test_package_docstrings_say_what_is_there() -> None:
    for module, path in _modules().items():
        if path.name != "__init__.py":
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert len(docstring.split()) >= 6, f"{module}: placeholder docstring {docstring!r}"
    schemas = ast.get_docstring(ast.parse((REPO / "schemas" / "__init__.py").read_text())) or ""
    for shipped in sorted((REPO / "schemas").iterdir()):
        if shipped.suffix in (".avsc", ".json"):
            assert f"``{shipped.name}``" in schemas, shipped.name


def _documented_map() -> dict[str, tuple[set[str], set[str]]]:
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text[text.index("## Module map") :]
    section = section[: section.find("\n## ", 1)]
    rows = {}
    for cells in re.findall(r"^\| `([\w.]+)` \|[^|]*\| ([^|]*) \| ([^|]*) \|$", section, re.M):
        unit, project, external = cells
        rows[unit] = (set(re.findall(r"`([\w.]+)`", project)), set(re.findall(r"`([\w.]+)`", external)))
    return rows


def _actual_map() -> dict[str, tuple[set[str], set[str]]]:
    actual: dict[str, tuple[set[str], set[str]]] = {}
    for module, targets in _graph().items():
        project, external = actual.setdefault(_unit(module), (set(), set()))
        project.update(_unit(t) for t in targets if _unit(t) != _unit(module))
        external.update(_third_party(module))
    return actual


def _row(unit: str, deps: tuple[set[str], set[str]]) -> str:
    def cell(names: set[str]) -> str:
        return ", ".join(f"`{n}`" for n in sorted(names)) or "–"

    return f"| `{unit}` | … | {cell(deps[0])} | {cell(deps[1])} |"


def test_module_map_matches_the_imports() -> None:
    documented, actual = _documented_map(), _actual_map()
    wrong = [_row(unit, deps) for unit, deps in sorted(actual.items()) if documented.get(unit) != deps]
    stale = sorted(set(documented) - set(actual))
    assert not wrong and not stale, (
        f"docs/architecture.md, ## Module map: update these rows (or remove {stale}):\n" + "\n".join(wrong)
    )


def test_errors_all_lists_every_error() -> None:
    from stella import errors

    tree = ast.parse(_modules()["stella.errors"].read_text())
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert classes | {"EXIT_CODES"} == set(errors.__all__)


def _public_definitions(tree: ast.Module) -> set[str]:
    """Functions and classes a module defines at top level without a leading underscore."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {node.name for node in tree.body if isinstance(node, kinds) and not node.name.startswith("_")}


def _declared_all(tree: ast.Module) -> list[str] | None:
    """The literal ``__all__`` of a module, or None."""
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            return list(ast.literal_eval(value))
    return None


_ALL_ROOTS = ("stella", "pipelines", "transforms", "runners")


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m.split(".")[0] in _ALL_ROOTS))
def test_all_lists_what_the_module_offers(module: str) -> None:
    """Every module declares ``__all__``; it names only what exists and every public function and class."""
    path = _modules()[module]
    tree = ast.parse(path.read_text())
    declared = _declared_all(tree)
    if declared is None and (module.endswith("__main__") or all(_is_docstring(node) for node in tree.body)):
        return  # a script entry point or a package that only documents itself: nothing to offer
    assert declared is not None, f"{path.relative_to(REPO)}: no literal __all__"
    assert len(declared) == len(set(declared)), f"{module}.__all__ repeats a name"
    imported = importlib.import_module(module)
    missing = sorted(name for name in declared if not hasattr(imported, name))
    assert not missing, f"{module}.__all__ names what it does not have: {missing}"
    unlisted = sorted(_public_definitions(tree) - set(declared))
    assert not unlisted, f"{module}: public but not in __all__: {unlisted} (list them, or make them _private)"
