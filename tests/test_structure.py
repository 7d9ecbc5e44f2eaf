"""The package's import graph: no cycle, only downward imports in the layer order, no Streamlit.

The layers are those of the docstring of ``cgcnn/__init__.py``. Imports inside functions count too: deferring
an import hides a cycle from the interpreter, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cgcnn"

#: Rank of each top-level part of the package, from the docstring of cgcnn/__init__.py (lower = more basic).
LAYERS: dict[str, int] = {
    "cgcnn": 0,  # the package facade: names resolved lazily, nothing imported up front
    "errors": 0,
    "settings": 0,
    "paths": 0,
    "names": 0,
    "numerics": 0,
    "storage": 0,
    "_facade": 0,
    "data": 1,
    "nn": 2,
    "build": 2,
    "runs": 3,
    "testing": 3,
    "zoo": 4,
    "training": 5,
    "analysis": 5,
    "experiments": 6,
    "lessons": 7,
    "app": 8,
    "cli": 8,
    "__main__": 9,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """Every module of the package and every top-level package that ``name`` imports, at any depth."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from cgcnn.app import tables`` imports the module cgcnn.app.tables
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return found


GRAPH = {name: {m for m in _imports(name) if m in MODULES and m != name} for name in MODULES}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cgcnn"


def test_every_part_of_the_package_has_a_layer():
    assert {_layer(m) for m in MODULES} <= set(LAYERS), "add the new part to LAYERS and the package docstring"
    docstring = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    for part in LAYERS:
        if part not in ("cgcnn", "__main__"):
            assert f"cgcnn.{part}" in docstring, f"the package docstring does not place cgcnn.{part}"


def _allowed(module: str, target: str) -> bool:
    """Down the list, or within one part; the base modules (rank 0) may use each other."""
    low, high = LAYERS[_layer(target)], LAYERS[_layer(module)]
    return low < high or _layer(target) == _layer(module) or low == high == 0


def test_imports_only_go_down_the_layers():
    wrong = [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if not _allowed(module, target)
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_the_import_graph_has_no_cycle():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


#: No module of the package is longer than this: a longer one holds more than one concept (split it at its seams).
MAX_MODULE_LINES = 800


def test_no_module_is_over_the_line_limit():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them at their seams): {long}"


def test_the_library_never_imports_streamlit():
    users = [m for m in MODULES if any(i == "streamlit" or i.startswith("streamlit.") for i in _imports(m))]
    assert not users, f"cgcnn must not import streamlit (pages hold the widgets): {users}"
