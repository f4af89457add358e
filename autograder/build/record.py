"""Recording the hidden values: every hidden test runs against the reference solution with a recording context.

`record(seed, parts, fixtures)` runs each test of `parts` in this process against the reference package `assignment`
(imports TensorFlow: build time only). Each test's `ctx.hidden` and `ctx.expected` calls draw and compute their values,
which are added to `fixtures`; a test the reference does not pass stops the build with its message, so no course is
given expected values that a correct solution cannot meet. The tests of `UNRECORDED` parts run in an empty submission
directory instead, only to draw their hidden values: they fail there, once those are declared.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autograder.build.inprocess import REFERENCE, InProcessContext, hidden_tests, run_test
from autograder.judge.registry import TestFailure

UNRECORDED = ("quality",)
"""Parts the reference cannot pass at build time: the quality test grades a checkpoint the submission trained."""


class RecordingError(RuntimeError):
    """The reference solution fails a hidden test on the values drawn for it."""


def record(seed: int, parts: Sequence[str], fixtures: dict[str, Any]) -> dict[str, Any]:
    """Run every hidden test of `parts` against the reference, recording its hidden values into `fixtures`."""
    ctx = InProcessContext(fixtures, REFERENCE, seed)
    ctx.recording = True
    for test in hidden_tests([p for p in parts if p not in UNRECORDED]):
        outcome = run_test(test, ctx)
        if not outcome.passed:
            raise RecordingError(f"the reference solution fails {test.id} ({test.name}) with fixture seed {seed}: "
                                 f"{outcome.message}")
    declare_unrecorded(seed, parts, fixtures)
    return fixtures


def declare_unrecorded(seed: int, parts: Sequence[str], fixtures: dict[str, Any]) -> None:
    """Draw the hidden values of the tests of the `UNRECORDED` parts among `parts` into `fixtures`.

    Each test runs with a recording context in an empty submission directory, where it fails (TestFailure) for want of
    what the submission has to provide, after declaring its hidden values; a test that declares none, or that fails
    in any other way, stops the build.
    """
    with tempfile.TemporaryDirectory() as empty:
        ctx = InProcessContext(fixtures, REFERENCE, seed, Path(empty))
        ctx.recording = True
        for test in hidden_tests([p for p in parts if p in UNRECORDED]):
            ctx.start_test(test.id)
            try:
                test.fn(ctx)
            except TestFailure:
                pass
            if not any(key.startswith(f"{test.id}/") for key in fixtures):
                raise RecordingError(f"{test.id} ({test.name}) declared no hidden value in an empty submission")


def build_fixtures(seed: int, parts: Sequence[str] | None = None) -> dict[str, Any]:
    """The hidden values of every part (or only `parts`) for fixture seed `seed`, recorded against the reference."""
    from autograder.parts import WITH_FIXTURES

    return record(seed, list(WITH_FIXTURES if parts is None else parts), {})
