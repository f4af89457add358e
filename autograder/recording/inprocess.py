"""Run hidden tests in this process against a submission package (one TensorFlow import for many submissions).

The judge normally sends every probe call to a sandboxed worker process. Here `InProcessContext.call` runs the probe
directly, after a round trip of the request and of the reply through the worker protocol's own encoding
(`autograder.worker.protocol`, with its size and nesting limits), so a test sees exactly what it would see from the
worker. This is how the fixtures are recorded (`autograder.recording.record`) and the fast path of `selfcheck` and of
the kill-matrix tests; it trusts the submission (use it for the reference, its mutants and the alternatives, never for
student code).
"""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.judge.context import HiddenValues
from autograder.worker import protocol

SEED = 1234
"""Fixture seed of the in-process runs (any seed works: the fixtures are checked against the reference at build)."""


def plain(value: Any) -> Any:
    """`value` as the other end of the worker protocol receives it: a round trip through the protocol's own `encode`
    and `decode_payload` (tuples become lists, numpy scalars Python numbers, arrays fresh copies), with its size and
    nesting limits; ProtocolError when the protocol cannot carry it."""
    frame = protocol.encode(value)
    protocol.payload_length(frame[: protocol.PREFIX.size])
    return protocol.decode_payload(frame[protocol.PREFIX.size :])


class ReferenceSubmission:
    """The submission accessor the probes expect, serving the reference package `assignment`."""

    def module(self, name: str) -> Any:
        import importlib

        return importlib.import_module(f"assignment.{name}")


REFERENCE = ReferenceSubmission()


class InProcessContext(HiddenValues):
    """What the judge gives a hidden test (hidden values, seed, call), with probes run in this process; with
    `recording` it draws and stores the hidden values instead of replaying them (the fixtures build)."""

    def __init__(self, fixtures: dict, submission: Any, seed: int = SEED, submission_dir: Any = None):
        self.fixtures = fixtures
        self.seed = seed
        self.submission = submission
        self.submission_dir = submission_dir
        self.earned_fraction: float | None = None

    def leaderboard(self, name: str, value: Any, order: str = "desc") -> None:
        """Leaderboard entries are ignored in process."""

    def call(self, probe: str, **kwargs: Any) -> Any:
        from autograder.judge.registry import TestFailure
        from autograder.worker import probes  # noqa: F401 - registers every probe
        from autograder.worker.probes.registry import PROBES

        try:  # the request and the reply travel as the judge and the worker frame them
            request = plain({"probe": probe, "kwargs": kwargs})
            reply = PROBES[probe](self.submission, **request["kwargs"])
            return plain({"ok": True, "value": reply})["value"]
        except Exception as exc:  # noqa: BLE001 - as in the worker, any error of the submission fails the test
            raise TestFailure(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class Outcome:
    """The result of one hidden test (`id`, `test`: its id and name): its score in [0, 1] and the failure message
    (None when it passed)."""

    id: str
    test: str
    part: str
    score: float
    message: str | None
    seconds: float

    @property
    def passed(self) -> bool:
        return self.score >= 1.0


def hidden_tests(parts: Iterable[str] | None = None) -> list:
    """The registered hidden tests of `parts` (all graded parts when None), in report order."""
    from autograder.judge import hidden  # noqa: F401 - registers the tests
    from autograder.judge.registry import ALL_TESTS

    wanted = None if parts is None else set(parts)
    return [t for t in ALL_TESTS if (t.part in wanted if wanted is not None else t.part != "quality")]


def run_test(test: Any, ctx: InProcessContext, attempt: int = 0) -> Outcome:
    """Run one hidden test; any exception (a crashing probe, a broken reply) scores 0 with its message. A recording
    context draws the test's hidden values with draw `attempt` of its generator.

    The global random seeds (Python, numpy, TensorFlow) are reset first, so that an outcome does not depend on which
    tests ran before in this process (tf.data shuffles, for one, combine their seed with the global one).
    """
    import keras

    from autograder.judge.registry import TestFailure

    keras.utils.set_random_seed(ctx.seed)
    ctx.start_test(test.id, attempt)
    start = time.perf_counter()
    try:
        result = test.fn(ctx)
    except TestFailure as exc:
        return Outcome(test.id, test.name, test.part, 0.0, str(exc) or "failed", time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - the judge scores an internal error of a test as a failure too
        return Outcome(test.id, test.name, test.part, 0.0, f"{type(exc).__name__}: {exc}",
                       time.perf_counter() - start)
    score = 1.0 if result is None else float(result)
    message = None if score >= 1.0 else f"partial credit {score:g}"
    return Outcome(test.id, test.name, test.part, score, message, time.perf_counter() - start)


def run_tests(tests: Sequence[Any], fixtures: dict, submission: Any, seed: int = SEED) -> list[Outcome]:
    """Run `tests` in order against `submission` (an object with `module(name)`)."""
    ctx = InProcessContext(fixtures, submission, seed)
    return [run_test(t, ctx) for t in tests]


def run_package(directory: str | Path, label: str, parts: Iterable[str], fixtures: dict,
                seed: int = SEED) -> list[Outcome]:
    """Import the package in `directory` under a fresh name, run the hidden tests of `parts` against it, unload it."""
    from autograder.recording.edits import PackageSubmission

    submission = PackageSubmission(directory, label)
    try:
        return run_tests(hidden_tests(parts), fixtures, submission, seed)
    finally:
        submission.unload()


_POOL_FIXTURES: dict = {}
"""The fixtures in a process of `map_with_fixtures`'s pool, set once by its initializer."""


def _set_pool_fixtures(fixtures: dict) -> None:
    _POOL_FIXTURES.update(fixtures)


def _with_pool_fixtures(fn: Callable[[Any, dict], Any], item: Any) -> Any:
    return fn(item, _POOL_FIXTURES)


def map_with_fixtures(fn: Callable[[Any, dict], Any], items: Sequence[Any], fixtures: dict, jobs: int) -> list:
    """[fn(item, fixtures) for item in items], in order, in `jobs` fresh processes that each receive the fixtures
    once (in this process when jobs <= 1 or there is one item). `fn` must be picklable: a module-level function or a
    functools.partial of one."""
    if jobs <= 1 or len(items) < 2:
        return [fn(item, fixtures) for item in items]
    context = multiprocessing.get_context("spawn")  # no fork of a process that has TensorFlow's threads
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_set_pool_fixtures,
                                                initargs=(fixtures,)) as pool:
        return list(pool.map(functools.partial(_with_pool_fixtures, fn), items))


def matching(tests: Sequence[Any], ids: Iterable[str]) -> list[Any]:
    """The tests with the given ids, in the order of `ids`; ValueError for an id that names no test."""
    by_id = {t.id: t for t in tests}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise ValueError(f"no hidden test has the id {unknown[0]!r}")
    return [by_id[i] for i in ids]
