"""Mutants of part 6 (modern.py and optim.py)."""

from __future__ import annotations

from autograder.qa.mutants import Mutant

MUTANTS: list[Mutant] = []
