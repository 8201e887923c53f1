"""The package's shape, held as tests: no import cycle, and pytest known only to the pytest layer."""

from __future__ import annotations

import ast
from pathlib import Path

import ecrmirror

PACKAGE = Path(ecrmirror.__file__).parent
# The modules that speak pytest: hooks, collectors and items, options, reports, the fixtures.
PYTEST_LAYER = {
    "ecrmirror.plugin",
    "ecrmirror.items",
    "ecrmirror.options",
    "ecrmirror.reporting",
    "ecrmirror.scheduling",
    "ecrmirror.emulator.fixtures",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(name: str) -> set[str]:
    """Every module `name` imports, at the top or inside a function (a lazy import is still one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from ecrmirror import versions` imports the module ecrmirror.versions
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def ours(name: str) -> set[str]:
    return {module for module in imported(name) if module in MODULES and module != name}


def test_the_layout_is_read_whole() -> None:
    # Guards the tests below against reading nothing: the kinds' modules are where they should be.
    for expected in (
        "ecrmirror.versions",
        "ecrmirror.repositories",
        "ecrmirror.replication",
        "ecrmirror.run",
    ):
        assert expected in MODULES
    assert ours("ecrmirror.versions") >= {"ecrmirror.repositories", "ecrmirror.replication", "ecrmirror.run"}


def test_no_module_of_ecrmirror_imports_itself_back() -> None:
    graph = {name: ours(name) for name in MODULES}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        for nxt in sorted(graph[name]):
            if nxt in path:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_only_the_pytest_layer_knows_pytest() -> None:
    speaks_pytest = {
        name for name in MODULES if {"pytest", "_pytest"} & {m.split(".")[0] for m in imported(name)}
    }

    assert speaks_pytest <= PYTEST_LAYER, (
        f"domain code importing pytest: {sorted(speaks_pytest - PYTEST_LAYER)}"
    )


def test_nothing_below_the_pytest_layer_reaches_up_into_it() -> None:
    reaching_up = {
        name: sorted(ours(name) & PYTEST_LAYER)
        for name in MODULES
        if name not in PYTEST_LAYER | {"ecrmirror"}
    }

    assert {name: up for name, up in reaching_up.items() if up} == {}
