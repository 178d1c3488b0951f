"""The import graph of ``lab_tools`` points one way (issue 25; ``../shared/DESIGN.md``: CLI → recipe
→ stages → shared library): no import cycle between project modules and no private name
(``_x``) imported from another module. Every import counts, those inside functions too: a lazy
import still ties two modules together. And the light commands stay light: `lab --help`, every
``lab <command> --help`` and `lab taxonomy validate` import no heavy library."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[1] / "lab_tools"
HEAVY = ("torch", "transformers", "trl", "ray", "vllm", "ctranslate2", "llama_cpp", "lm_eval", "datasets",
         "accelerate", "peft")


def _modules() -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the package."""
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path]):
    """``(module, line, imported module, imported name or None)`` for every import of a project
    module anywhere in a module (top level, functions, branches); relative imports resolved. An
    import of ``a.b.c`` also runs ``a.b``'s and ``a``'s ``__init__``: those count as imported too."""
    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base, a.name) for a in node.names]
            for target, name in targets:
                if not target.startswith("lab_tools"):
                    continue
                found = owner(target)
                while found:
                    yield mod, node.lineno, found, name if found == owner(target) else None
                    found = owner(found.rpartition(".")[0]) if "." in found else None


def _graph(mods):
    edges: dict[str, dict[str, int]] = {}
    for mod, line, target, _ in _imports(mods):
        if target != mod and not mod.startswith(target + "."):  # a module's own packages are already loading
            edges.setdefault(mod, {}).setdefault(target, line)
    return edges


def _cycles(edges) -> list[list[str]]:
    """One concrete cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    cycles = []
    for comp in components:  # the shortest way from the smallest name back to itself (BFS)
        start = min(comp)
        parent: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parent:
            nxt = []
            for v in frontier:
                for w in sorted(edges.get(v, {})):
                    if w in comp and w not in parent:
                        parent[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        while len(path) == 1 or path[-1] != start:
            path.append(parent[path[-1]])
        cycles.append(path[::-1])
    return cycles


def _describe(cycle, edges, mods) -> str:
    arrows = []
    for a, b in zip(cycle, cycle[1:]):
        arrows.append(f"  {a} -> {b}   ({mods[a].relative_to(PACKAGE.parent)}:{edges[a][b]})")
    return "\n".join(arrows)


def test_no_import_cycle():
    mods = _modules()
    edges = _graph(mods)
    cycles = _cycles(edges)
    assert not cycles, "import cycles between project modules:\n" + "\n\n".join(
        _describe(c, edges, mods) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    edges = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert _cycles(edges) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []


def test_no_private_name_imported_across_modules():
    mods = _modules()
    bad = [f"{mods[mod].relative_to(PACKAGE.parent)}:{line}: from {target} import {name}"
           for mod, line, target, name in _imports(mods)
           if name and name.startswith("_") and not name.startswith("__") and target != mod
           and f"{target}.{name}" not in mods]
    assert not bad, "private names imported from another module (make them public where they belong):\n" + \
        "\n".join(sorted(set(bad)))


CODE = """
import os, sys
from lab_tools.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(os.environ["HEAVY"].split(",")))
print("HEAVY", heavy, "EXIT", code)
"""


def _lab(*args) -> str:
    env = {**os.environ, "HEAVY": ",".join(HEAVY)}
    out = subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, text=True, timeout=120, env=env)
    assert "HEAVY" in out.stdout, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("command", [[], ["taxonomy"], ["generate"], ["train"], ["evaluate"], ["release"], ["build"],
                                     ["chat"], ["bot"], ["ui"], ["serve"]])
def test_help_imports_no_heavy_library(command):
    assert _lab(*command, "--help") == "HEAVY [] EXIT 0"


def test_taxonomy_validate_imports_no_heavy_library(tmp_path):
    leaf = tmp_path / "compositional_skills" / "a" / "b"
    leaf.mkdir(parents=True)
    examples = [{"question": f"What is {i} plus {i}?", "answer": f"{i} plus {i} is {2 * i}."} for i in range(5)]
    (leaf / "qna.yaml").write_text(yaml.safe_dump({"version": 3, "created_by": "tester", "task_description":
                                                   "Add small numbers.", "seed_examples": examples}), encoding="utf-8")
    assert _lab("taxonomy", "validate", str(tmp_path)) == "HEAVY [] EXIT 0"
    assert _lab("taxonomy", "licenses", str(tmp_path)) == "HEAVY [] EXIT 0"
    bad = tmp_path / "compositional_skills" / "a" / "c"
    bad.mkdir()
    (bad / "qna.yaml").write_text("version: 3\n", encoding="utf-8")  # an invalid leaf: exit 1, still light
    assert _lab("taxonomy", "validate", str(tmp_path)) == "HEAVY [] EXIT 1"
