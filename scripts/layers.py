"""The library's import graph, measured: modules, floors, circles, imports that point back up.

    .venv/bin/python scripts/layers.py [--modules] [--check]

Reads every module of `raytune_inc/` and `actors/` (no import is run) and every import in it, those in
function bodies included (marked "deferred"). Prints:

- floors: a module with no import of ours is on floor 1, any other one floor above the highest it imports
  (the modules of a circle share one floor), and how many modules stand on each;
- circles: groups of modules that import each other, directly or not;
- the layers of docs (ARCHITECTURE.md's table, `LAYERS` below, bottom first) and every import from a
  layer to one above it ("points back up");
- the PyTorch backend's imports of a run, strategy, speculation or Ray module (it must have none).

`--modules` lists each module with its floor and layer. `--check` exits 1 where there is a circle, an import
that points back up, or a backend import of the run's side.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("raytune_inc", "actors")

# Bottom first: a module may import its own layer and those below. The first prefix that matches places a module.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "raytune_inc.space",
            "raytune_inc.criterion",
            "raytune_inc.errors",
            "raytune_inc.records",
            "raytune_inc.running",
            "raytune_inc.versions",
        ),
    ),
    ("strategies", ("raytune_inc.strategies",)),
    ("commit and speculation", ("raytune_inc.committed_path", "raytune_inc.pass_model", "raytune_inc.speculation")),
    ("history", ("raytune_inc.history",)),
    ("torch backend", ("raytune_inc.pytorch",)),
    (
        "run",
        (
            "raytune_inc.workers",
            "raytune_inc.settings",
            "raytune_inc.deadline",
            "raytune_inc.evaluation",
            "raytune_inc.monitor",
            "raytune_inc.run",
        ),
    ),
    ("executors", ("raytune_inc.sequential", "raytune_inc.driver", "raytune_inc.simulation", "raytune_inc.synthetic")),
    ("ray", ("raytune_inc.ray_session", "actors", "raytune_inc.ray_executor")),
    ("space tuning", ("raytune_inc.executors", "raytune_inc.space_tuning")),
    ("model level", ("raytune_inc.model", "raytune_inc.neural_compressor")),
    ("reports and command line", ("raytune_inc.report", "raytune_inc.cli", "raytune_inc.__main__", "raytune_inc.examples")),
    ("package", ("raytune_inc",)),
]
# What the backend must not know about (ARCHITECTURE.md): runs, strategies, speculation, Ray.
BACKEND = "raytune_inc.pytorch"
BACKEND_MUST_NOT = ("raytune_inc.run", "raytune_inc.settings", "raytune_inc.space_tuning", "raytune_inc.strategies",
                    "raytune_inc.speculation", "raytune_inc.pass_model", "raytune_inc.committed_path", "raytune_inc.driver",
                    "raytune_inc.sequential", "raytune_inc.ray_executor", "raytune_inc.ray_session", "raytune_inc.executors",
                    "raytune_inc.model", "actors", "ray")  # fmt: skip


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    deferred: bool  # inside a function body


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _resolve(source: str, is_package: bool, level: int, name: str | None) -> str:
    base = source.split(".") if is_package else source.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """The imports of module `name`: ours (as the modules they name) and Ray's (as "ray")."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: list[Import] = []

    def add(target: str, node: ast.AST, deferred: bool) -> None:
        while target and target not in known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in known or target == "ray":
            out.append(Import(name, target, node.lineno, deferred))

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # names for type checkers only, never imported when the code runs
            if isinstance(child, ast.Import):
                for alias in child.names:
                    top = alias.name.split(".")[0]
                    add("ray" if top == "ray" else alias.name, child, inner)
            elif isinstance(child, ast.ImportFrom):
                module = _resolve(name, is_package, child.level, child.module) if child.level else (child.module or "")
                if module.split(".")[0] == "ray":
                    add("ray", child, inner)
                    continue
                for alias in child.names:
                    submodule = f"{module}.{alias.name}"
                    add(submodule if submodule in known else module, child, inner)
            visit(child, inner)

    visit(tree, False)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def layer_of(name: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return rank
    raise SystemExit(f"{name}: in no layer of LAYERS; add it there")


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def floors(graph: dict[str, set[str]], groups: list[list[str]]) -> dict[str, int]:
    """Floor 1: imports nothing of ours; else one above the highest module it imports (a circle is one floor)."""
    group_of = {m: tuple(g) for g in groups for m in g}
    memo: dict[str, int] = {}

    def floor(node: str) -> int:
        if node in memo:
            return memo[node]
        members = group_of.get(node, (node,))
        for m in members:
            memo[m] = 0  # in progress
        below = [floor(t) for m in members for t in graph[m] if t not in members]
        value = 1 + max(below, default=0)
        for m in members:
            memo[m] = value
        return value

    sys.setrecursionlimit(10000)
    return {m: floor(m) for m in graph}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="list each module with its floor and layer")
    parser.add_argument("--check", action="store_true", help="exit 1 on a circle, an upward import or a backend import of the run")
    args = parser.parse_args()
    found = modules()
    known = set(found)
    edges = list(dict.fromkeys(i for name, path in found.items() for i in imports_of(name, path, known)))  # one per line
    graph: dict[str, set[str]] = {name: set() for name in found}
    for i in edges:
        if i.target in known and i.target != i.source and not i.source.startswith(i.target + "."):
            graph[i.source].add(i.target)  # a package's own __init__ is where its modules live, not a dependency
    groups = circles(graph)
    floor = floors(graph, groups)
    ours = [i for i in edges if i.target in known and i.target != i.source]
    up = [i for i in ours if layer_of(i.target) > layer_of(i.source) and not i.source.startswith(i.target + ".")]
    backend = [
        i for i in edges if i.source.startswith(BACKEND) and any(i.target == p or i.target.startswith(p + ".") for p in BACKEND_MUST_NOT)
    ]
    per_floor: dict[int, int] = defaultdict(int)
    for value in floor.values():
        per_floor[value] += 1
    backend_floors = sorted({floor[m] for m in found if m.startswith(BACKEND)})
    print(f"modules: {len(found)}; imports of ours: {len(ours)} ({sum(i.deferred for i in ours)} deferred, in function bodies)")
    print(f"floors: {max(floor.values())} (" + ", ".join(f"{f}: {n}" for f, n in sorted(per_floor.items())) + " modules)")
    print(f"the backend ({BACKEND}) stands on floors {backend_floors[0]}-{backend_floors[-1]}")
    print(f"circles: {len(groups)}")
    for g in groups:
        print("  " + " <-> ".join(g))
    print(f"imports that point back up (layers of LAYERS): {len(up)}")
    for i in up:
        print(f"  {i.source}:{i.line} -> {i.target} ({LAYERS[layer_of(i.source)][0]} -> {LAYERS[layer_of(i.target)][0]})"
              + (" deferred" if i.deferred else ""))  # fmt: skip
    print(f"backend imports of runs, strategies, speculation or Ray: {len(backend)}")
    for i in backend:
        print(f"  {i.source}:{i.line} -> {i.target}" + (" (deferred)" if i.deferred else ""))
    if args.modules:
        for name in sorted(found, key=lambda m: (floor[m], m)):
            print(f"  floor {floor[name]:2d}  {LAYERS[layer_of(name)][0]:26s} {name}")
    return 1 if args.check and (groups or up or backend) else 0


if __name__ == "__main__":
    raise SystemExit(main())
