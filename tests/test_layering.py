"""Imports flow one way (CLI -> analysis -> salient_timm -> timm/torch): no module imports one that imports it back,
at module level or inside a function (a lazy import hides a circle, it does not remove it)."""

import ast
import pathlib
from typing import Dict, List, Set

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {
    "salient_timm": ROOT / "salient_timm",
    "salient_analysis": ROOT / "analysis",
    "salient_train": ROOT / "salient_train",
}


def _modules() -> Dict[str, pathlib.Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: pathlib.Path, modules: Dict[str, pathlib.Path]) -> Set[str]:
    """Every package module ``name`` imports, anywhere in the file (package ``__init__`` re-exports excluded)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import x` names a module; `from .x import y` names one too
                module = f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name and m not in PACKAGES}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    cycles, done = [], set()

    def visit(node: str, path: List[str]) -> None:
        if node in path:
            cycles.append(path[path.index(node) :] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return cycles


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["salient_timm.spec"] and graph["salient_timm.train.cli"]  # the scan sees imports
    assert _cycles(graph) == []


def test_the_plugin_never_imports_the_toolkit_or_the_command_lines():
    modules = _modules()
    plugin = {name: _imports(name, path, modules) for name, path in modules.items() if name.startswith("salient_timm")}
    imported = {m for targets in plugin.values() for m in targets}
    assert {m for m in imported if m.startswith(("salient_analysis", "salient_train"))} == set()


def test_the_cycle_finder_finds_a_lazy_two_module_circle():
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
