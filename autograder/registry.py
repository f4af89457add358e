"""Registry of the hidden tests (judge side).

A hidden test is a function of one argument, the judge's `Context` (see `autograder.judge.Context`): it calls probes in
the worker with `ctx.call(probe, **kwargs)`, reads hidden inputs and expected values from `ctx.fixtures` (a mapping of
"<part>/<name>" to numpy arrays or JSON values), may use `ctx.seed` and `ctx.submission_dir`, and

- returns None (full credit) or a float in [0, 1] (partial credit);
- raises `TestFailure(message)` to fail, the message saying in words what was expected.

    @hidden_test("make_windows: labels are the inputs shifted by one", "preprocess", weight=1.5)
    def test_windows(ctx) -> None:
        ...

Weights are relative within a part; the judge scales them to the part's points from `autograder/points.json`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 30.0
"""Seconds each probe call of a test may take before the worker is stopped."""

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


class TestFailure(Exception):
    """Raised by a hidden test (or by `ctx.call` on a probe error, crash or timeout): the test scores 0."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class HiddenTest:
    """One registered hidden test."""

    name: str
    part: str
    weight: float
    fn: Callable[[Any], float | None]
    timeout: float = DEFAULT_TIMEOUT
    visibility: str = "visible"


ALL_TESTS: list[HiddenTest] = []
"""Every registered test in registration order (the report's order). Mutated in place, never rebound."""


def hidden_test(
    name: str, part: str, weight: float, timeout: float = DEFAULT_TIMEOUT, visibility: str = "visible"
) -> Callable[[Callable[[Any], float | None]], Callable[[Any], float | None]]:
    """Register the decorated function as a hidden test of `part` with a relative `weight`.

    Args:
        name: what the test checks, in words; unique over all tests (it is the test's name on Gradescope).
        part: the autograder part, a key of autograder/points.json.
        weight: relative weight within the part (> 0).
        timeout: seconds each probe call of this test may take before the worker is stopped.
        visibility: Gradescope visibility of the test ("visible", "hidden", "after_due_date", "after_published").
    """
    if weight <= 0:
        raise ValueError(f"weight of hidden test {name!r} must be > 0, got {weight}")
    if timeout <= 0:
        raise ValueError(f"timeout of hidden test {name!r} must be > 0, got {timeout}")
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility of hidden test {name!r} must be one of {VISIBILITIES}, got {visibility!r}")

    def register(fn: Callable[[Any], float | None]) -> Callable[[Any], float | None]:
        if any(test.name == name for test in ALL_TESTS):
            raise ValueError(f"a hidden test named {name!r} is already registered")
        ALL_TESTS.append(HiddenTest(name, part, float(weight), fn, float(timeout), visibility))
        return fn

    return register
