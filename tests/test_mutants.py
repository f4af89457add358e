"""Kill matrix of the hidden tests, in process: every catalogued student bug fails at least one of the hidden tests
named for it, every graded test is named by a mutant, and every alternative correct solution passes every test.

Each mutant and alternative is written as a submission directory (the reference's modules with the edits applied)
and imported under a fresh package name, so modules that import each other (lstm.py uses rnn.py's language model)
see the edited code. Hidden tests run exactly as the judge runs them, with probes called in this process through a
plain-data check. Fixtures are built once per part for the whole module.
"""

from __future__ import annotations

import ast
import difflib
import textwrap
from collections.abc import Callable

import pytest

from autograder.parts import GRADED
from autograder.qa.mutants import (
    MODULE_PARTS,
    REFERENCE_DIR,
    Edit,
    Mutant,
    MutantError,
    PackageSubmission,
    all_mutants,
    write_submission,
)
from autograder.recording import inprocess
from autograder.recording.alternatives import ALTERNATIVES

MUTANTS = all_mutants()
GRADED_PARTS = GRADED


@pytest.fixture(scope="module")
def fixtures_for() -> Callable[[tuple[str, ...]], dict]:
    """fixtures_for(parts): the fixtures of these parts, each part built once for the whole module."""
    from autograder.recording.record import build_fixtures

    built: dict[str, dict] = {}

    def get(parts: tuple[str, ...]) -> dict:
        merged: dict = {}
        for part in parts:
            if part not in built:
                # the reference's first draws: test_alternative_solution_passes_every_test checks the
                # alternatives on exactly these values (the guard itself: test_record.py)
                built[part] = build_fixtures(inprocess.SEED, parts=[part], guards=())
            merged.update(built[part])
        return merged

    return get


def _submission(edits, tmp_path, label: str) -> PackageSubmission:
    return PackageSubmission(write_submission(edits, tmp_path / "submission"), label)


# ---------------------------------------------------------------------------------------------------- the catalog
def test_catalog_covers_every_part_with_at_least_40_bugs() -> None:
    assert len(MUTANTS) >= 40
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))
    covered = {p for m in MUTANTS for p in m.parts}
    assert set(GRADED_PARTS) <= covered
    for m in MUTANTS:
        assert m.description and "\n" not in m.description, m.id
        assert m.tests, f"{m.id}: name the hidden tests that catch it"


def test_every_graded_test_is_named_by_a_mutant() -> None:
    named = {test_id for m in MUTANTS for test_id in m.tests}
    unnamed = [t.id for t in inprocess.hidden_tests(GRADED_PARTS) if t.id not in named]
    assert not unnamed, f"graded tests no mutant is expected to fail (add a mutant that only they catch): {unnamed}"


def test_named_tests_exist_and_belong_to_the_mutants_parts() -> None:
    tests = inprocess.hidden_tests(GRADED_PARTS)
    for m in MUTANTS:
        for test in inprocess.matching(tests, m.tests):
            assert test.part in m.parts, (m.id, test.name)


@pytest.mark.parametrize("candidate", MUTANTS + ALTERNATIVES, ids=lambda c: c.id)
def test_edits_apply_to_the_reference_and_compile(candidate, tmp_path) -> None:
    directory = write_submission(candidate.edits, tmp_path)
    for module in {e.module for e in candidate.edits}:
        source = (directory / f"{module}.py").read_text(encoding="utf-8")
        assert source != (REFERENCE_DIR / f"{module}.py").read_text(encoding="utf-8"), (candidate.id, module)
        compile(source, module, "exec")
    assert sorted(p.name for p in directory.glob("*.py")) == sorted(p.name for p in REFERENCE_DIR.glob("*.py"))


def test_no_mutant_replaces_a_whole_function() -> None:
    assert not [m.id for m in MUTANTS if any(e.replacement is not None for e in m.edits)]
    rewrite = Edit("samplers", "greedy", replacement="def greedy(logits):\n    return 0\n")
    with pytest.raises(MutantError, match="may not replace"):
        Mutant("greedy-zero", "greedy returns 0", rewrite)


def _changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines of `before` that a line diff against `after` removes, and the lines of `after` that it adds."""
    old, new = before.splitlines(), after.splitlines()
    changes = [op for op in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes() if op[0] != "equal"]
    removed = [line for _, i1, i2, _, _ in changes for line in old[i1:i2]]
    added = [line for _, _, _, j1, j2 in changes for line in new[j1:j2]]
    return removed, added


def _holds_a_line_of(line: str, texts: list[str]) -> bool:
    """Whether `line` contains a non-blank line of one of `texts` (a patch text may start or end mid-line)."""
    return any(part.strip() and part.strip() in line for text in texts for part in text.splitlines())


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_mutant_changes_only_the_lines_of_its_patches(mutant: Mutant) -> None:
    """A line diff of the edited module against the reference shows the patches and nothing else: each removed line
    holds a line of an old text, each added line a line of a new text (or is a removed line with an old text cut out
    of it), and there are no more of them than those texts have lines."""
    for module in {e.module for e in mutant.edits}:
        reference = (REFERENCE_DIR / f"{module}.py").read_text(encoding="utf-8")
        edited = reference
        for edit in (e for e in mutant.edits if e.module == module):
            edited = edit.apply(edited)
        patches = [pair for e in mutant.edits if e.module == module for pair in e.patch]
        olds, news = [old for old, _ in patches], [new for _, new in patches]
        removed, added = _changed_lines(reference, edited)
        cut_lines = {line.replace(old, new) for line in removed for old, new in patches if old in line}
        assert all(_holds_a_line_of(line, olds) for line in removed), (removed, olds)
        assert all(_holds_a_line_of(line, news) or line in cut_lines for line in added), (added, news)
        assert len(removed) <= sum(len(old.splitlines()) for old in olds), removed
        assert len(added) <= sum(max(len(new.splitlines()), 1) for new in news), added


def test_an_edit_changes_only_its_function() -> None:
    source = textwrap.dedent('''
        import math


        class Cell:
            @staticmethod
            def rate(x):
                """Doc."""
                return x * 2

            def other(self):
                return 1


        def rate(x):
            return x * 2
    ''')
    patched = Edit("m", "Cell.rate", patch=(("x * 2", "x * 3"),)).apply(source)
    assert patched == source.replace("return x * 2\n\n    def", "return x * 3\n\n    def")
    replaced = Edit("m", "Cell.rate", replacement="def rate(x):\n    return -x\n").apply(source)
    tree = ast.parse(replaced)
    cell = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assert [n.name for n in cell.body] == ["rate", "other"] and not cell.body[0].decorator_list
    assert replaced.endswith("def rate(x):\n    return x * 2\n")


@pytest.mark.parametrize("edit", [
    Edit("m", "missing", patch=(("a", "b"),)),
    Edit("m", "Cell.rate", patch=(("x * 5", "x"),)),
    Edit("m", "Cell.rate", replacement="def rate(x:\n"),
], ids=["no such function", "patch text absent", "does not compile"])
def test_a_stale_edit_is_refused_with_a_clear_error(edit: Edit) -> None:
    with pytest.raises(MutantError, match=r"m(\.py)?[.:]"):
        edit.apply("class Cell:\n    def rate(self, x):\n        return x * 2\n")


def test_module_parts_cover_every_reference_module_with_student_code() -> None:
    for module in MODULE_PARTS:
        assert (REFERENCE_DIR / f"{module}.py").is_file(), module


# ---------------------------------------------------------------------------------------------------- kill matrix
def test_the_reference_passes_every_hidden_test(fixtures_for, tmp_path) -> None:
    sub = _submission((), tmp_path, "reference")
    failed = [o for o in inprocess.run_tests(inprocess.hidden_tests(GRADED_PARTS), fixtures_for(GRADED_PARTS), sub)
              if not o.passed]
    assert not failed, [(o.test, o.message) for o in failed]


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_mutant_fails_a_named_test(mutant: Mutant, fixtures_for, tmp_path) -> None:
    sub = _submission(mutant.edits, tmp_path, mutant.id)
    fixtures = fixtures_for(mutant.parts)
    ctx = inprocess.InProcessContext(fixtures, sub)
    outcomes = []
    for test in inprocess.matching(inprocess.hidden_tests(mutant.parts), mutant.tests):
        outcome = inprocess.run_test(test, ctx)
        if not outcome.passed:
            return
        outcomes.append(outcome.test)
    pytest.fail(f"{mutant.id} ({mutant.description}) passed every test named for it: {outcomes}")


@pytest.mark.parametrize("alternative", ALTERNATIVES, ids=lambda a: a.id)
def test_alternative_solution_passes_every_test(alternative, fixtures_for, tmp_path) -> None:
    sub = _submission(alternative.edits, tmp_path, alternative.id)
    outcomes = inprocess.run_tests(inprocess.hidden_tests(alternative.parts), fixtures_for(alternative.parts), sub)
    failed = [(o.test, o.message) for o in outcomes if not o.passed]
    assert not failed, failed
