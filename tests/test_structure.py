"""The shape of the code: no import cycle, and no module over ~350 lines (issue 12).

Read statically with `ast`, so nothing is imported. An import at module level runs when the
module loads: those must never form a cycle. An import inside a function runs when it is
called (late binding, used to keep `--help` light), and one under `TYPE_CHECKING` never runs;
cycles that close only through such imports are listed in `KNOWN_LATE_CYCLES` (none today), so
a new one fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREES = ("tools", "assistant", "posebank")
MAX_LINES = 350

# Cycles that close only through an import inside a function.
KNOWN_LATE_CYCLES: list[list[str]] = []


def modules(root: Path = ROOT, trees: tuple[str, ...] = TREES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three trees."""
    found = {}
    for tree in trees:
        for path in sorted((root / tree).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: list[ast.stmt], at_module_level: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """(import statement, runs at load time) for each import in `body`, at any depth."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, at_module_level
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _imports(node.body, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            # For type checkers only: never runs, but still a dependency (a circle through one
            # means a type lives a level too high), so it counts as a late import.
            yield from _imports(node.body, False)
            yield from _imports(node.orelse, at_module_level)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from _imports(inner, at_module_level)


def import_graph(
    root: Path = ROOT, trees: tuple[str, ...] = TREES
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Our modules each module imports: (at load time, inside functions or for type checkers)."""
    known = modules(root, trees)
    eager: dict[str, set[str]] = {name: set() for name in known}
    late: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, at_load in _imports(ast.parse(path.read_text()).body, True):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from package import module` needs that module, not the package's names.
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                targets = [t for t in submodules if t in known]
                if len(targets) < len(submodules):
                    targets.append(base)
            for target in targets:
                if target in known and target != name:
                    (eager if at_load else late)[name].add(target)
    return eager, late


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def late_cycles(root: Path = ROOT, trees: tuple[str, ...] = TREES) -> list[list[str]]:
    """Cycles that close only through imports inside functions (allowed late binding) or under
    `TYPE_CHECKING`."""
    eager, late = import_graph(root, trees)
    both = {name: eager[name] | late[name] for name in eager}
    return cycles(both)


def test_no_module_level_import_cycle():
    eager, _ = import_graph()
    assert cycles(eager) == []


def test_the_cycle_finder_finds_one():
    """So that the test above can fail: a planted two-module circle is found."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    eager, _ = import_graph()
    assert "tools.jobs.journal" in eager["tools.jobs.client"]  # the graph sees real imports


def test_a_circle_through_a_type_checking_import_is_found(tmp_path):
    """So that the test below can fail on a type-only circle: one planted in a scratch tree."""
    tree = tmp_path / "pkg"
    tree.mkdir()
    (tree / "__init__.py").write_text("")
    (tree / "a.py").write_text(
        "import typing\n\nif typing.TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (tree / "b.py").write_text("from pkg import a\n")
    eager, late = import_graph(tmp_path, ("pkg",))
    assert eager["pkg.a"] == set() and late["pkg.a"] == {"pkg.b"}
    assert late_cycles(tmp_path, ("pkg",)) == [["pkg.a", "pkg.b"]]


def test_cycles_through_late_imports_are_only_the_known_ones():
    """A cycle through an import inside a function is legal late binding but still a circle:
    listed here so that a new one shows (and a fixed one leaves the list)."""
    assert late_cycles() == KNOWN_LATE_CYCLES


def test_no_module_is_over_the_line_limit():
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in modules().values()
    }
    too_long = {path for path, count in lengths.items() if count > MAX_LINES}
    assert not too_long, {path: lengths[path] for path in too_long}
