"""Catalog of realistic student bugs ("mutants") of the reference solution.

A mutant is one or more `Edit`s of the reference (`autograder.recording.edits`, the machinery it shares with the
alternative correct solutions), each a small text patch inside one function: a mutant differs from the reference by its
bug alone, so the tests that fail it fail because of that bug. Whole new definitions (`Edit.replacement`) are for the
alternative correct solutions only; a mutant with one is refused. Each mutant names the hidden tests expected to catch
it by their ids ("<part>.<name>"); `selfcheck` and `tests/test_mutants.py` check that it fails at least one, that every
graded test is named by some mutant, and that its edits change no line of the reference outside their patches.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from autograder.parts import PARTS
from autograder.recording.edits import (  # noqa: F401 - the catalog modules and the kit tests import them from here
    MODULE_PARTS,
    REFERENCE_DIR,
    Edit,
    MutantError,
    PackageSubmission,
    write_submission,
)


@dataclass(frozen=True)
class Mutant:
    """A realistic student bug: the edit(s), what it does, and the hidden tests expected to catch it.

    Attributes:
        id: short unique identifier, e.g. "lstm-gate-order".
        description: one line saying what the student got wrong.
        edit: the change to the reference (a `patch` edit), or a tuple of them when the same mistake appears in
            several functions (e.g. `call` and `step` of one model).
        tests: ids of the hidden tests expected to fail (at least one must).
    """

    id: str
    description: str
    edit: Edit | tuple[Edit, ...]
    tests: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        replaced = [e.target for e in self.edits if e.replacement is not None]
        if replaced:
            raise MutantError(f"{self.id}: a mutant patches the reference; it may not replace {', '.join(replaced)}")

    @property
    def edits(self) -> tuple[Edit, ...]:
        return self.edit if isinstance(self.edit, tuple) else (self.edit,)

    @property
    def module(self) -> str:
        return self.edits[0].module

    @property
    def target(self) -> str:
        return ", ".join(e.target for e in self.edits)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for e in self.edits for p in MODULE_PARTS[e.module]))


def all_mutants() -> list[Mutant]:
    """Every mutant of the catalog, part by part."""
    catalogs = [importlib.import_module(f"{__name__}.{part.key}") for part in PARTS]  # one per part, in table order
    mutants = [m for catalog in catalogs for m in catalog.MUTANTS]
    ids = [m.id for m in mutants]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise MutantError(f"duplicate mutant ids: {duplicates}")
    return mutants
