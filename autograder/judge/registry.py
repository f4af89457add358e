"""Registry of the hidden tests (judge side).

A hidden test is a function of one argument, a context (`autograder.judge.context.HiddenValues`): it declares its hidden
inputs with `ctx.hidden(key, make)` and its expected values with `ctx.expected(key, oracle)`, calls probes in the
worker with `ctx.call(probe, **kwargs)`, may use `ctx.seed` and `ctx.submission_dir`, and

- returns None (full credit) or a float in [0, 1] (partial credit);
- raises `TestFailure(message)` to fail, the message saying in words what was expected.

    @hidden_test("make_windows: labels are the inputs shifted by one", "preprocess", weight=1.5)
    def test_windows(ctx) -> None:
        ids = ctx.hidden("ids", lambda: ctx.rng.integers(0, 500, 23).astype(np.int32))
        inputs, labels = ...  # ctx.call("call", module="preprocess", function="make_windows", args=[ids, 4])
        ...

`python -m autograder fixtures` runs every test against the reference with a recording context: `make` and `oracle`
run there (and only there: they may import TensorFlow, Keras and the reference), their values are stored, and a test
the reference fails stops the build. Grading replays the stored values. A test's id is "<part>.<function name without
test_>"; it names the test's stored values and the mutants that must fail it, so it must not change.

Weights are relative within a section; the judge scales them to the section's points in the course.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 30.0
"""Seconds each probe call of a test may take before the worker is stopped."""


class Scaled(float):
    """A test's result when it passed but is worth only a fraction of its points (the audit: the fraction of points
    earned in the other parts); `reason` says why, in words shown to the student."""

    def __new__(cls, fraction: float, reason: str) -> Scaled:
        value = super().__new__(cls, fraction)
        value.reason = reason
        return value


class TestFailure(Exception):
    """Raised by a hidden test (or by `ctx.call` on a probe error, crash or timeout): the test scores 0."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class HiddenTest:
    """One registered hidden test: `id` is stable ("<part>.<name>"), `name` is what Gradescope shows."""

    id: str
    name: str
    part: str
    weight: float
    fn: Callable[[Any], float | None]
    timeout: float = DEFAULT_TIMEOUT


ALL_TESTS: list[HiddenTest] = []
"""Every registered test in registration order (the report's order). Mutated in place, never rebound."""


def hidden_test(
    name: str, part: str, weight: float, timeout: float = DEFAULT_TIMEOUT
) -> Callable[[Callable[[Any], float | None]], Callable[[Any], float | None]]:
    """Register the decorated function as a hidden test of `part` with a relative `weight`; its id is
    "<part>.<function name without the test_ prefix>".

    Args:
        name: what the test checks, in words; unique over all tests (it is the test's name on Gradescope).
        part: the autograder part, a name in `autograder.parts`.
        weight: relative weight within the part (> 0).
        timeout: seconds each probe call of this test may take before the worker is stopped.
    """
    if weight <= 0:
        raise ValueError(f"weight of hidden test {name!r} must be > 0, got {weight}")
    if timeout <= 0:
        raise ValueError(f"timeout of hidden test {name!r} must be > 0, got {timeout}")

    def register(fn: Callable[[Any], float | None]) -> Callable[[Any], float | None]:
        test_id = f"{part}.{fn.__name__.removeprefix('test_')}"
        if any(test.name == name or test.id == test_id for test in ALL_TESTS):
            raise ValueError(f"a hidden test named {name!r} or with id {test_id!r} is already registered")
        ALL_TESTS.append(HiddenTest(test_id, name, part, float(weight), fn, float(timeout)))
        return fn

    return register
