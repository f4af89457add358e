"""Recording the hidden values: every hidden test runs against the reference solution with a recording context.

`record(seed, parts, fixtures)` runs each test of `parts` in this process against the reference package `assignment`
(imports TensorFlow: build time only). Each test's `ctx.hidden` and `ctx.expected` calls draw and compute their values,
which are added to `fixtures`; a test the reference does not pass stops the build with its message, so no course is
given expected values that a correct solution cannot meet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .inprocess import REFERENCE, InProcessContext, hidden_tests, run_test

UNRECORDED = ("quality",)
"""Parts not run at build time: the quality test grades a checkpoint the submission trained."""


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
    return fixtures


def build_fixtures(seed: int, parts: Sequence[str] | None = None) -> dict[str, Any]:
    """The hidden values of every part (or only `parts`) for fixture seed `seed`, recorded against the reference."""
    from .fixtures import BUILDERS
    from .fixtures import build_fixtures as build_by_part
    from .parts import WITH_FIXTURES

    parts = list(WITH_FIXTURES if parts is None else parts)
    return record(seed, parts, build_by_part(seed, [p for p in parts if p in BUILDERS]))
