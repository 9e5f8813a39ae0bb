"""No import cycles (issue 12): every module of host/synack_host/ and of firmware/synack/
is parsed with ``ast`` and its imports of the same package are followed, relative and
absolute, including imports inside functions (a lazy import is still a dependency of the
design); only imports under ``if TYPE_CHECKING:`` are left out. Each cycle is reported as
an ``a -> b -> a`` path."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# True: imports under `if TYPE_CHECKING:` count too (type-only cycles are then reported)
COUNT_TYPE_CHECKING_IMPORTS = False


def package_modules(pkg_dir: Path, pkg_name: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py under ``pkg_dir`` (a package's
    ``__init__.py`` is the package itself)."""
    modules = {}
    for path in sorted(pkg_dir.rglob("*.py")):
        parts = [pkg_name, *path.relative_to(pkg_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST):
    """Every Import/ImportFrom in ``node``, at any depth, except the bodies of
    ``if TYPE_CHECKING:`` (their ``else:`` still counts)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif (isinstance(child, ast.If) and _is_type_checking(child.test)
              and not COUNT_TYPE_CHECKING_IMPORTS):
            for stmt in child.orelse:
                yield from _import_nodes(ast.Module(body=[stmt], type_ignores=[]))
        else:
            yield from _import_nodes(child)


def module_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (source ``path``) imports.
    ``from p import x`` depends on ``p.x`` when that is a module, else on ``p``."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    deps = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                # `import a.b.c` runs a.b.c; find the deepest part that is one of ours
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target:
                    deps.add(target)
            continue
        if node.level:
            base_parts = package.split(".")
            if node.level > 1:
                base_parts = base_parts[: -(node.level - 1)]
            base = ".".join(base_parts)
            source = base + "." + node.module if node.module else base
        else:
            source = node.module or ""
        for alias in node.names:
            sub = source + "." + alias.name
            if sub in modules:
                deps.add(sub)
            elif source in modules:
                deps.add(source)
    return deps


def import_graph(pkg_dir: Path, pkg_name: str) -> dict[str, set[str]]:
    modules = package_modules(pkg_dir, pkg_name)
    return {name: module_imports(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _shortest_path(graph, start: str, goal: str, within: set[str]) -> list[str]:
    previous = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while path[-1] != start:
                path.append(previous[path[-1]])
            return path[::-1]
        for child in sorted(graph.get(node, ())):
            if child in within and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError("no path %s -> %s in a strongly connected component" % (start, goal))


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every import cycle as ``a -> b -> a``: a self-import, and, in each strongly connected
    component of more than one module, for every import edge u -> v inside it, the shortest
    way back from v to u (so each edge that takes part in a cycle is shown at least once)."""
    cycles = set()
    for node, deps in graph.items():
        if node in deps:
            cycles.add((node,))
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        for u in component:
            for v in sorted(graph.get(u, ())):
                if v in members and v != u:
                    loop = [u, *_shortest_path(graph, v, u, members)[:-1]]
                    first = loop.index(min(loop))  # one rotation per cycle
                    cycles.add(tuple(loop[first:] + loop[:first]))
    return sorted(" -> ".join([*loop, loop[0]]) for loop in cycles)


def assert_no_cycles(pkg_dir: Path, pkg_name: str) -> None:
    cycles = find_cycles(import_graph(pkg_dir, pkg_name))
    assert not cycles, "%d import cycle(s) in %s:\n  %s" % (
        len(cycles),
        pkg_name,
        "\n  ".join(cycles),
    )


def test_host_has_no_import_cycles():
    assert_no_cycles(ROOT / "host" / "synack_host", "synack_host")


def test_firmware_has_no_import_cycles():
    assert_no_cycles(ROOT / "firmware" / "synack", "synack")


# -- the finder itself ----------------------------------------------------------------------


def test_finder_reports_a_three_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == ["a -> b -> c -> a"]


def test_finder_reports_none_for_a_dag():
    graph = {"a": {"b", "c"}, "b": {"c", "d"}, "c": {"d"}, "d": set()}
    assert find_cycles(graph) == []


def test_finder_reports_self_import_and_every_loop_of_a_component():
    graph = {"a": {"a", "b"}, "b": {"a", "c"}, "c": {"b"}}
    assert find_cycles(graph) == ["a -> a", "a -> b -> a", "b -> c -> b"]


@pytest.fixture
def package(tmp_path):
    def write(files: dict[str, str]) -> Path:
        root = tmp_path / "pkg"
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return root

    return write


def test_graph_resolves_relative_absolute_and_lazy_imports(package):
    root = package(
        {
            "__init__.py": "",
            "a.py": "from . import b\nfrom .sub import c\n",
            "b.py": "def f():\n    import pkg.sub.c\n",
            "sub/__init__.py": "NAME = 1\n",
            "sub/c.py": "from ..a import thing\nfrom .. import sub\n",
            "sub/d.py": "from . import NAME\nfrom typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from ..a import X\nelse:\n    from .. import b\n",
        }
    )
    assert import_graph(root, "pkg") == {
        "pkg": set(),
        "pkg.a": {"pkg.b", "pkg.sub.c"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a", "pkg.sub"},
        "pkg.sub.d": {"pkg.sub", "pkg.b"},
    }
    assert find_cycles(import_graph(root, "pkg")) == [
        "pkg.a -> pkg.b -> pkg.sub.c -> pkg.a",
        "pkg.a -> pkg.sub.c -> pkg.a",
    ]
