"""The package imports without cycles.

(a) every module of ``rayal`` imports on its own in a fresh interpreter: one subprocess imports
them one after the other, dropping every ``rayal`` module from ``sys.modules`` before each, so
no module leans on another having been imported first (third-party packages stay loaded: one
torch import, not hundreds);
(b) the import graph inside ``rayal`` has no cycle: every ``import`` / ``from`` statement, at
module level and inside functions alike (a lazy import hides a circle, it does not break it).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rayal"


def rayal_modules() -> dict[str, Path]:
    """Dotted name -> source file of every module and package under ``rayal/``."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the rayal modules its import statements name (anywhere in its source)."""

    def owner(name: str) -> str | None:   # the module a dotted name lives in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(owner(a.name) for a in node.names if a.name.split(".")[0] == "rayal")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                if base.split(".")[0] != "rayal":
                    continue
                for alias in node.names:   # ``from pkg import submodule`` names the submodule
                    sub = f"{base}.{alias.name}"
                    deps.add(sub if sub in modules else owner(base))
        graph[name] = deps - {None, name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_find_cycle_reports_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle():
    graph = import_graph(rayal_modules())
    # module-level and function-level imports both count (plan_select imports the registry lazily)
    assert {"rayal.pool.labels", "rayal.selection.registry"} <= graph["rayal.pool.state"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


IMPORT_EACH = """
import importlib, json, os, sys, traceback
failed = {}
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "rayal" or m.startswith("rayal.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps(failed), flush=True)
os._exit(0)   # the answer is out: skip the interpreter's slow teardown of torch, ray, ...
"""


def test_every_module_imports_on_its_own():
    names = sorted(rayal_modules())
    proc = subprocess.run([sys.executable, "-c", IMPORT_EACH, *names], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failed, "\n".join(f"{name}:\n{text}" for name, text in failed.items())


def test_every_name_imported_from_rayal_exists():
    """``from rayal.x import name`` anywhere (inside functions too, where an import runs only
    when the function does) names something ``rayal.x`` has: a moved or renamed helper fails
    here, not in a service's background job."""
    import importlib

    missing = []
    for name, path in rayal_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.split(".")[0] == "rayal"):
                continue
            try:
                target = importlib.import_module(node.module)
            except ImportError as err:
                missing.append(f"{name}:{node.lineno}: {node.module} ({err})")
                continue
            for alias in node.names:
                if alias.name != "*" and not hasattr(target, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{name}:{node.lineno}: {node.module}.{alias.name}")
    assert not missing, "imports of names that do not exist:\n" + "\n".join(missing)
