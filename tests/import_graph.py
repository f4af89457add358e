"""The import graph of a package folder, read with `ast` (nothing is imported), for the kit's import-rule tests."""

from __future__ import annotations

import ast
from pathlib import Path


def _imported_names(tree: ast.Module, package: str) -> set[str]:
    """Absolute names of everything `tree` imports, anywhere: at the top, inside functions and classes, and inside
    `if __name__ == "__main__":` blocks (`python -m package.module` runs the module as __main__, and what its block
    imports may import the module back under its package name, which runs it a second time)."""
    found: set[str] = set()
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} | {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        todo.extend(ast.iter_child_nodes(node))
    return found


def import_graph(package_root: Path) -> dict[str, set[str]]:
    """{module: the modules of the same package that it imports} for every module under `package_root`.

    Modules are dotted names ("autograder.judge.runner"; a package is its `__init__`). An import of a name from a
    module (`from .a import f`) counts as an import of the module `a`.
    """
    paths = {}
    for path in sorted(package_root.rglob("*.py")):
        parts = path.relative_to(package_root.parent).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = (path, ".".join(parts[:-1]))
    graph = {}
    for module, (path, package) in paths.items():
        names = _imported_names(ast.parse(path.read_text(encoding="utf-8")), package)
        graph[module] = {name for name in names if name in paths and name != module}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a path [a, b, ..., a], or None; importing one's own package is no cycle."""
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if module.startswith(target + "."):
                continue  # a module importing its own package's __init__ runs it first, not again
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state and (cycle := visit(target, path + [module])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [])):
            return cycle
    return None
