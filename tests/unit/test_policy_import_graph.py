"""sime_policy and hardware import without cycles, and sime_policy's role packages depend one way only.

Every import statement counts: module level, inside functions and under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: sime_policy's role packages, each allowed to import only those after it (cli -> ... -> models)
LAYERS = ("cli", "pipeline", "collect", "training", "policy", "models")
#: packages beside the chain: simulation tasks and scripted experts (used by collect; rotations by training)
SIDE = {"envs": {"envs"}, "experts": {"envs", "experts"}}


def modules_below(package: str, root: Path = REPO) -> dict[str, Path]:
    """Dotted name -> file of every module in a top-level package of the repository."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules a module's source imports, wherever the statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def note(target: str) -> None:
        while target and target not in known:  # an attribute path: keep the module part
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                note(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            for alias in node.names:
                note(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found


def graph_of(*packages: str, root: Path = REPO) -> dict[str, set[str]]:
    """Import graph of the modules of some top-level packages (edges between those modules only)."""
    files: dict[str, Path] = {}
    for package in packages:
        files.update(modules_below(package, root))
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle [a, ..., a] of the graph, or None."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def walk(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt in on_stack:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in done:
                cycle = walk(nxt)
                if cycle:
                    return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done:
            cycle = walk(node)
            if cycle:
                return cycle
    return None


def role(module: str) -> str | None:
    """The role package of a sime_policy module (None for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_graph_counts_function_level_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    graph = graph_of("pkg", root=tmp_path)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert a_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]


@pytest.mark.parametrize("package", ["sime_policy", "hardware"])
def test_no_import_cycles(package):
    graph = graph_of(package)
    assert len(graph) > 10
    cycle = a_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_sime_policy_roles_depend_one_way():
    graph = graph_of("sime_policy")
    wrong = []
    for module, targets in graph.items():
        mine = role(module)
        if mine is None:  # the package root re-exports the public API
            continue
        for target in targets:
            theirs = role(target)
            if theirs is None:
                wrong.append(f"{module} -> {target} (the package root)")
            elif mine in SIDE:
                if theirs not in SIDE[mine]:
                    wrong.append(f"{module} -> {target}")
            elif theirs in SIDE or theirs == mine:
                continue
            elif LAYERS.index(theirs) < LAYERS.index(mine):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against cli -> pipeline -> collect -> training -> policy -> models:\n" + "\n".join(wrong)


def test_hardware_uses_no_simulation_runner():
    graph = graph_of("sime_policy", "hardware")
    runner = {m for m in graph if m.startswith("sime_policy.collect.") and m not in
              ("sime_policy.collect.seeding", "sime_policy.collect.loading", "sime_policy.collect")}
    used = {t for m, targets in graph.items() if m.startswith("hardware") for t in targets}
    assert not used & runner, sorted(used & runner)
