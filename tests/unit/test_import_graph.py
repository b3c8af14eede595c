"""The tree imports without cycles, and sime_policy's role packages depend one way only.

Every import statement counts: module level, inside functions and under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sime_data", "migrations")
TREE = ("sime_data", "migrations", "sime_policy", "curation_app", "hardware")
#: sime_policy's role packages, each allowed to import only those after it (cli -> ... -> models)
LAYERS = ("cli", "pipeline", "collect", "training", "policy", "models")
#: packages beside the chain: simulation tasks and scripted experts (used by collect; rotations by training), and
#: the settings mechanism every config dataclass declares its fields with (it imports nothing of sime_policy)
SIDE = {"envs": {"envs"}, "experts": {"envs", "experts"}, "settings": set()}


def module_files(packages: tuple[str, ...] = PACKAGES, root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module below the given top-level packages."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, level: int, current: str, is_package: bool) -> str:
    """Absolute dotted name of a (possibly relative) import target seen in module `current`."""
    if level == 0:
        return name
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """Known modules that `module` imports anywhere in its source: top level, in functions, under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:  # `import a.b.c` of an attribute path: the deepest module named
            target = target.rpartition(".")[0]
        if target and target != module:
            out.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, module, is_package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in known else base)
    return out


def import_graph(packages: tuple[str, ...] = PACKAGES, root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of the same packages it imports."""
    files = module_files(packages, root)
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_graph_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import A\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\nA = 1\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = import_graph(("pkg",), tmp_path)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_graph_resolves_relative_imports_from_subpackages(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    graph = import_graph(("pkg",), tmp_path)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]


@pytest.mark.parametrize("packages", [PACKAGES, ("sime_policy",), ("hardware",), ("curation_app",), TREE],
                         ids=["store", "sime_policy", "hardware", "curation_app", "whole-tree"])
def test_no_import_cycles(packages):
    graph = import_graph(packages)
    assert len(graph) > 10
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _role(module: str) -> str | None:
    """The role package of a sime_policy module (None for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_sime_policy_roles_depend_one_way():
    wrong = []
    for module, targets in import_graph(("sime_policy",)).items():
        mine = _role(module)
        if mine is None:  # the package root re-exports the public API
            continue
        for target in targets:
            theirs = _role(target)
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
    graph = import_graph(("sime_policy", "hardware"))
    runner = {m for m in graph if m.startswith("sime_policy.collect.") and m not in
              ("sime_policy.collect.seeding", "sime_policy.collect.loading", "sime_policy.collect")}
    used = {t for m, targets in graph.items() if m.startswith("hardware") for t in targets}
    assert not used & runner, sorted(used & runner)


def test_the_store_never_imports_the_packages_that_use_it():
    graph = import_graph(TREE)
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.split(".")[0] in PACKAGES
                    for t in targets if t.split(".")[0] not in PACKAGES)
    assert not upward, upward
