"""No import cycles among the modules of ``streams/`` (developers' guide; issue 15).

Only module-level imports count: an import inside a function runs when the function
does, after every module has loaded, and is how the CLI defers heavy imports. A module
importing ``a.b.c`` also runs ``a`` and ``a.b``, except its own enclosing packages
(Python is already running those when a submodule imports a sibling).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _graph(root: Path) -> dict[str, set[str]]:
    files = {}
    for f in (root / "streams").rglob("*.py"):
        parts = f.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict[str, set[str]] = {m: set() for m in files}
    for m, f in files.items():
        package = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package[: len(package) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                parts = t.split(".") if t else []
                for k in range(1, len(parts) + 1):
                    dep = ".".join(parts[:k])
                    if dep in files and dep != m and not m.startswith(dep + "."):
                        graph[m].add(dep)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_streams_has_no_import_cycle() -> None:
    graph = _graph(ROOT)
    assert "streams.population.event_stream" in graph and graph["streams.population.event_stream"]
    assert _cycles(graph) == []


def test_population_modules_do_not_import_their_facade() -> None:
    """A submodule taking a name from ``streams.population`` itself would depend on the
    facade's import order (the graph above skips enclosing packages, so check here)."""
    package = ROOT / "streams" / "population"
    submodules = {f.stem for f in package.glob("*.py")} - {"__init__"}
    assert len(submodules) >= 10
    offenders = []
    for name in sorted(submodules):
        for node in ast.parse((package / f"{name}.py").read_text()).body:
            if isinstance(node, ast.Import) and "streams.population" in [a.name for a in node.names]:
                offenders.append(name)
            elif isinstance(node, ast.ImportFrom) and (
                node.module == "streams.population" or (node.level == 1 and node.module is None)
            ):
                if any(a.name not in submodules for a in node.names):
                    offenders.append(name)
    assert offenders == []


def test_the_cycle_check_sees_a_cycle(tmp_path: Path) -> None:
    for name, body in (("a", "from streams import b\n"), ("b", "import streams.c\n"), ("c", "from . import a\n")):
        (tmp_path / "streams").mkdir(exist_ok=True)
        (tmp_path / "streams" / f"{name}.py").write_text(body)
    (tmp_path / "streams" / "__init__.py").write_text("")
    assert _cycles(_graph(tmp_path)) == [["streams.a", "streams.b", "streams.c"]]
