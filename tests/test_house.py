"""The house: no import circle inside the packages (function-local imports included), imports only flow
data_tools <- prm <- serving, and no module grows past 400 lines."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("data_tools", "prm", "serving")
LAYER = {"data_tools": 0, "prm": 1, "serving": 2}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imported(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every project module ``name`` imports, at module level or inside any function body."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            # A package's __init__ re-exporting its children, or a child importing a sibling through its
            # package, is not a circle between them.
            if t and t != name and not name.startswith(t + ".") and not t.startswith(name + "."):
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imported(m, p, mods) for m, p in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, found = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            strong(v)
    return found


def test_the_cycle_finder_finds_a_circle_through_function_bodies(tmp_path):
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from prm.scoring import Scorer\n")
    assert "prm.scoring" in imported("prm.model", src, modules())


def test_no_import_circle_in_any_package():
    assert cycles(graph()) == []


def test_imports_flow_one_way_even_inside_functions():
    wrong = sorted((m, t) for m, targets in graph().items() for t in targets
                   if LAYER[t.split(".")[0]] > LAYER[m.split(".")[0]])
    assert wrong == []


def test_no_module_over_400_lines():
    big = {str(p.relative_to(ROOT)): n for p in modules().values() if (n := len(p.read_text().splitlines())) > 400}
    assert big == {}
