"""The public tests against known submissions, through selfcheck's own runner: every student module has its public
test file, an alternative correct solution passes its files, and a mutant the handout rules out fails them.

The rate over the whole mutant catalog (at least selfcheck.PUBLIC_KILL_RATE) takes a few CPU minutes and is checked
by `python -m autograder selfcheck` (or `--public only`), which exits 1 below it.
"""

from __future__ import annotations

from pathlib import Path

from autograder.parts import MODULES
from autograder.qa import selfcheck
from autograder.qa.mutants import all_mutants
from autograder.recording.alternatives import ALTERNATIVES

ROOT = Path(__file__).resolve().parent.parent


def test_every_student_module_has_its_public_test_file():
    assert set(selfcheck.PUBLIC_TEST_FILES) == set(MODULES)
    files = {p.name for p in (ROOT / "public_tests").glob("test_*.py")}
    assert set(selfcheck.PUBLIC_TEST_FILES.values()) == files


def test_public_tests_pass_an_alternative_and_catch_the_probability_tie_mutant(tmp_path):
    alternative = next(a for a in ALTERNATIVES if a.id == "sort-free-samplers")
    mutant = next(m for m in all_mutants() if m.id == "top-p-ties-split")
    correct, wrong = selfcheck._public_rows([alternative, mutant], jobs=2, scratch=tmp_path)
    assert correct.status == 0 and not correct.error, correct
    assert wrong.caught and wrong.failed.startswith("public_tests/test_samplers.py::"), wrong
