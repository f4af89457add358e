"""Recording the hidden values: every hidden test runs against the reference solution with a recording context.

`record(seed, parts, fixtures)` runs each test of `parts` in this process against the reference package `assignment`
(imports TensorFlow: build time only). Each test's `ctx.hidden` and `ctx.expected` calls draw and compute their values.
The test then runs, on exactly those values, against every guard: each alternative correct solution
(`autograder.recording.alternatives`) whose edited modules the test's section sees. When the reference or a guard
fails, the values are drawn again (the test's generator is seeded by the fixture seed, the test id and the attempt, so
a build is reproducible), up to `MAX_ATTEMPTS` draws; then the build stops with every failure's message. So a course's
fresh fixture seed cannot give expected values, or hidden inputs, that a correct solution written another way does not
meet (float32 ties, for one, can fall differently for two correct top-p filters). The tests of `UNRECORDED` parts run
in an empty submission directory instead, only to draw their hidden values: they fail there, once those are declared.

Recording must use the worker's kernels (`KERNEL_ENVIRONMENT`, set before TensorFlow is imported), or the values it
checks are not the ones a graded submission computes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.judge.registry import TestFailure
from autograder.recording.inprocess import REFERENCE, InProcessContext, hidden_tests, run_test

UNRECORDED = ("quality",)
"""Parts the reference cannot pass at build time: the quality test grades a checkpoint the submission trained."""
MAX_ATTEMPTS = 6
"""Draws of one test's hidden values before the build gives up. A test that a correct solution fails on one draw in
8 (the rate of the top-p tie before its redraw) then stops a build with probability 8^-6 < 4e-6; one that fails on
every draw (a test no correct solution passes) always does."""


class RecordingError(RuntimeError):
    """The reference solution or an alternative correct solution fails a hidden test on every draw of its values, or
    the process does not have the worker's kernels."""


@dataclass(frozen=True)
class Guard:
    """A correct solution that every recorded test of its `parts` must pass: `label` names it in messages, and
    `submission` is what the probes call (an object with `module(name)`)."""

    label: str
    parts: tuple[str, ...]
    submission: Any


def use_worker_kernels() -> None:
    """Give this process the worker's kernel settings before TensorFlow is imported; RecordingError when TensorFlow
    was already imported with other settings."""
    from autograder.judge.runner import KERNEL_ENVIRONMENT

    differ = {k: v for k, v in KERNEL_ENVIRONMENT.items() if os.environ.get(k) != v}
    if not differ:
        return
    if "tensorflow" in sys.modules:
        raise RecordingError(
            "TensorFlow was imported before the worker's kernel settings were set: set "
            + " ".join(f"{k}={v}" for k, v in differ.items()) + " before importing it (python -m autograder fixtures "
            "does), so that the fixtures are recorded with the kernels a graded submission runs on")
    os.environ.update(KERNEL_ENVIRONMENT)


@contextlib.contextmanager
def alternative_guards(parts: Sequence[str]) -> Iterator[list[Guard]]:
    """The shipped alternatives that touch `parts`, written to a temporary directory and imported in this process."""
    from autograder.recording.alternatives import ALTERNATIVES
    from autograder.recording.edits import PackageSubmission, write_submission

    submissions: list[PackageSubmission] = []
    with tempfile.TemporaryDirectory(prefix="lm-alternatives-") as tmp:
        guards = []
        for alternative in ALTERNATIVES:
            if set(alternative.parts) & set(parts):
                directory = write_submission(alternative.edits, Path(tmp) / alternative.id)
                submissions.append(PackageSubmission(directory, f"route_{alternative.id}"))
                guards.append(Guard(f"alternative {alternative.id}", alternative.parts, submissions[-1]))
        try:
            yield guards
        finally:
            for submission in submissions:
                submission.unload()


def record_test(test: Any, seed: int, guards: Sequence[Guard]) -> tuple[dict[str, Any], list[list[str]]]:
    """Record one test: (its hidden values, and for each rejected draw the labels of the solutions that failed it).

    Draw `attempt` = 0, 1, ... records the test against the reference and replays it against every guard of its part;
    the first draw that every one passes is kept. RecordingError after `MAX_ATTEMPTS` rejected draws.
    """
    rejected: list[list[str]] = []
    messages: list[str] = []
    for attempt in range(MAX_ATTEMPTS):
        values: dict[str, Any] = {}
        ctx = InProcessContext(values, REFERENCE, seed)
        ctx.recording = True
        outcomes = [("reference", run_test(test, ctx, attempt))]
        if outcomes[0][1].passed:
            replay = [g for g in guards if test.part in g.parts]
            outcomes += [(g.label, run_test(test, InProcessContext(values, g.submission, seed))) for g in replay]
        failed = [(label, outcome.message) for label, outcome in outcomes if not outcome.passed]
        if not failed:
            return values, rejected
        rejected.append([label for label, _ in failed])
        messages += [f"draw {attempt}, {label}: {message}" for label, message in failed]
    raise RecordingError(f"{test.id} ({test.name}) with fixture seed {seed}: no draw of its hidden values in "
                         f"{MAX_ATTEMPTS} lets every correct solution pass; " + "; ".join(messages))


def record(seed: int, parts: Sequence[str], fixtures: dict[str, Any], guards: Sequence[Guard] | None = None,
           redraws: dict[str, list[list[str]]] | None = None) -> dict[str, Any]:
    """Run every hidden test of `parts` against the reference and the guards, recording its values into `fixtures`.

    Args:
        guards: the correct solutions each test must let pass (None: the shipped alternatives of `parts`).
        redraws: when given, gets test id -> the failing labels of each rejected draw, for every test redrawn.
    """
    use_worker_kernels()
    recorded = [p for p in parts if p not in UNRECORDED]
    with contextlib.ExitStack() as stack:
        if guards is None:
            guards = stack.enter_context(alternative_guards(recorded))
        for test in hidden_tests(recorded):
            values, rejected = record_test(test, seed, guards)
            fixtures.update(values)
            if rejected and redraws is not None:
                redraws[test.id] = rejected
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


def build_fixtures(seed: int, parts: Sequence[str] | None = None,
                   redraws: dict[str, list[list[str]]] | None = None,
                   guards: Sequence[Guard] | None = None) -> dict[str, Any]:
    """The hidden values of every part (or only `parts`) for fixture seed `seed`, recorded against the reference and
    guarded by the shipped alternatives (or by `guards`: `()` records the reference's first draws, as kit tests that
    check the alternatives on those values themselves do); `redraws` as in `record`."""
    from autograder.parts import WITH_FIXTURES

    return record(seed, list(WITH_FIXTURES if parts is None else parts), {}, guards=guards, redraws=redraws)
