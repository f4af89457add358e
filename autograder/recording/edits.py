"""Edits of the reference solution, and submissions written from them: the machinery of the mutants (staff QA) and of
the alternative correct solutions (`autograder.recording.alternatives`, which also guard the fixtures build).

An `Edit` changes one function or method of one reference module, either by a small text patch inside that function
(`patch`: (old, new) pairs, each `old` occurring exactly once in the function's source) or by replacing the whole
definition (`replacement`: the new `def` source, any indentation; alternatives and adversarial submissions only, since a
mutant must differ from the reference by its bug alone). The change is located with `ast` in a copy of the module's
source, so the rest of the file stays byte for byte the reference. `write_submission` writes the reference's modules
with edits applied as a submission directory; `PackageSubmission` imports one in this process.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import itertools
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from autograder.parts import MODULES, sections_seeing

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "assignment"

MODULE_PARTS = {module: sections_seeing(module) for module in MODULES}
"""Autograder parts whose tests can see a change to each module."""


class MutantError(ValueError):
    """A malformed mutant or alternative, or one that no longer applies to the reference (target or patch text not
    found)."""


@dataclass(frozen=True)
class Edit:
    """One change to one function or method of a reference module.

    Attributes:
        module: module name inside the package, e.g. "lstm".
        target: qualified name of the function, e.g. "LSTMCell.call" or "top_k_filter".
        patch: (old, new) text replacements applied inside the function's source; each `old` must occur exactly once.
        replacement: the complete new definition (a `def`), replacing the old one.
    """

    module: str
    target: str
    patch: tuple[tuple[str, str], ...] = ()
    replacement: str | None = None

    def __post_init__(self) -> None:
        if (self.replacement is None) == (not self.patch):
            raise MutantError(f"{self.module}.{self.target}: give exactly one of patch and replacement")

    def apply(self, source: str) -> str:
        """The module source with this edit applied."""
        lines = source.splitlines(keepends=True)
        node = _find_definition(ast.parse(source), self.target, f"{self.module}.py")
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        start, end = first - 1, node.end_lineno or node.lineno
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        old = "".join(lines[start:end])
        if self.replacement is not None:
            new = textwrap.indent(textwrap.dedent(self.replacement).strip("\n") + "\n", indent)
        else:
            new = old
            for before, after in self.patch:
                count = new.count(before)
                if count != 1:
                    raise MutantError(f"{self.module}.{self.target}: patch text found {count} times (expected once): "
                                      f"{before!r}")
                new = new.replace(before, after)
        mutated = "".join(lines[:start]) + new + "".join(lines[end:])
        try:
            compile(mutated, f"{self.module}.py", "exec")
        except SyntaxError as exc:
            raise MutantError(f"{self.module}.{self.target}: the edited module does not compile: {exc}") from None
        return mutated


def _find_definition(tree: ast.Module, qualname: str, where: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    scope: Sequence[ast.stmt] = tree.body
    node: ast.AST | None = None
    for name in qualname.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == name), None)
        if node is None:
            raise MutantError(f"{where}: no definition named {qualname!r}")
        scope = node.body
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise MutantError(f"{where}: {qualname!r} is not a function")
    return node


@dataclass(frozen=True)
class Alternative:
    """A correct solution written differently from the reference; it must get full marks.

    Attributes:
        id: short unique identifier.
        description: one line saying how it differs.
        edits: the functions it replaces (possibly in several modules).
        public_pitfalls: public tests (node id prefixes below the repository, e.g.
            "public_tests/test_samplers.py::test_x") that it fails by design: they teach a rule of the handout
            that a careful student could still miss, and the hidden tests do not take points for it.
    """

    id: str
    description: str
    edits: tuple[Edit, ...] = field(default_factory=tuple)
    public_pitfalls: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for e in self.edits for p in MODULE_PARTS[e.module]))


def write_submission(edits: Iterable[Edit], directory: str | Path, reference: Path = REFERENCE_DIR) -> Path:
    """Copy the reference package's modules into `directory` (created) and apply `edits`; returns the directory.

    The result has the layout of a student submission: the package's modules at the top level, importing each other
    relatively.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for path in sorted(reference.glob("*.py")):
        shutil.copyfile(path, directory / path.name)
    by_module: dict[str, list[Edit]] = {}
    for edit in edits:
        by_module.setdefault(edit.module, []).append(edit)
    for module, module_edits in by_module.items():
        path = directory / f"{module}.py"
        if not path.exists():
            raise MutantError(f"the reference has no module {module}.py")
        source = path.read_text(encoding="utf-8")
        for edit in module_edits:
            source = edit.apply(source)
        path.write_text(source, encoding="utf-8")
    return directory


_counter = itertools.count()


class PackageSubmission:
    """A submission directory imported in this process as a package with a fresh unique name.

    `module(name)` is what the probes call (`sub.module("lstm")`), as with the worker's own accessor.
    """

    def __init__(self, directory: str | Path, label: str = "submission"):
        self.directory = Path(directory)
        safe = "".join(c if c.isalnum() else "_" for c in label)
        self.package = f"_graded_{safe}_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(self.package, self.directory / "__init__.py",
                                                      submodule_search_locations=[str(self.directory)])
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {self.directory} as a package")
        package = importlib.util.module_from_spec(spec)
        sys.modules[self.package] = package
        spec.loader.exec_module(package)

    def module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{name}")

    def unload(self) -> None:
        """Forget the package's modules (their classes stay alive only as long as something refers to them)."""
        for key in [k for k in sys.modules if k == self.package or k.startswith(self.package + ".")]:
            del sys.modules[key]
