"""The package's import graph is one-way: no cycles, and nothing imports the command line.

Every ``testbed`` import counts, also those inside functions: a function-local import that
closes a cycle breaks the package as soon as someone moves it to the top.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "testbed"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: pathlib.Path) -> set[str]:
    """The testbed modules ``path`` imports anywhere in its body (``from testbed import x``
    counts as importing the module ``testbed.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("testbed"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("testbed"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found - {"testbed"}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle() -> None:
    assert len(MODULES) > 20
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH) or [])


def test_nothing_imports_the_command_line() -> None:
    # Only the command's entry point (testbed._early, behind testbed.__main__) may.
    importers = sorted(m for m, deps in GRAPH.items() if "testbed.cli" in deps and m != "testbed._early")
    assert importers == []
    for script in (PACKAGE.parent / "experiments").glob("*.py"):
        assert "testbed.cli" not in _imports(script), script.name


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("testbed.demos", "testbed.policies"),
        ("testbed.demos", "testbed.rollout"),
        ("testbed.policies", "testbed.training"),
        ("testbed.rollout", "testbed.demos"),
        ("testbed.experts.sb3", "testbed.training"),
        ("testbed.clone_io", "testbed.demos"),
        ("testbed.scenarios", "testbed.experts"),
    ],
)
def test_lower_layers_do_not_reach_up(low: str, high: str) -> None:
    """The one-way flow: data below the harness, the harness below training."""
    reachable, todo = set(), [low]
    while todo:
        for nxt in GRAPH[todo.pop()] - reachable:
            reachable.add(nxt)
            todo.append(nxt)
    assert high not in reachable


def test_every_module_imports_in_a_fresh_interpreter_in_reverse_order() -> None:
    """Importing the top of the stack first, then each module down to the bottom, in one
    fresh interpreter: a cycle would surface as a partially initialised module."""
    names = sorted(MODULES, reverse=True)
    code = "import importlib\nfor n in " + repr(names) + ":\n    importlib.import_module(n)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
