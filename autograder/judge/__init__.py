"""The judge (trusted): runs the hidden tests against one submission and writes Gradescope's results.json.

It imports neither TensorFlow nor the submission: hidden inputs and expected values come from the fixture files, and
everything that touches the submission runs in the worker process (`autograder.judge.runner`). Other tools call `grade`.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autograder import course as courses
from autograder import parts as parts_table
from autograder.judge import fixture_files
from autograder.judge.context import HiddenValues
from autograder.judge.registry import ALL_TESTS, HiddenTest, Scaled, TestFailure
from autograder.judge.runner import Limits, Sandbox, Worker, WorkerStartError, find_package_dir
from autograder.judge.users import hold_worker_user, resolve_user

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FIXTURES = ROOT / "dist" / "fixtures"
PART_ORDER = parts_table.NAMES
"""Report order; the audit runs last because its points scale with the points earned before it."""
TIME_BUDGET = 540.0
"""Seconds for the whole grade (Gradescope stops the autograder at 10 minutes); later tests are skipped."""


def load_tests() -> list[HiddenTest]:
    """Register and return every hidden test (importing the hidden test modules and the audit)."""
    from autograder.judge import audit, hidden  # noqa: F401 - imported for their registrations

    return list(ALL_TESTS)


def load_points() -> dict[str, float]:
    """{section: points} of the course this autograder was built for (`autograder.course.built`)."""
    return dict(courses.built().points)


def split_points(total: float, weights: Sequence[float]) -> list[float]:
    """`total` split in proportion to `weights`, in hundredths that add up exactly (largest remainder)."""
    cents = round(total * 100)
    exact = [cents * w / sum(weights) for w in weights]
    floors = [math.floor(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: floors[i] - exact[i])
    for i in order[: cents - sum(floors)]:
        floors[i] += 1
    return [f / 100 for f in floors]


class Context(HiddenValues):
    """What a hidden test receives while grading: its stored hidden values (`ctx.hidden`, `ctx.expected`) and calls
    into the worker.

    Attributes:
        fixtures: hidden inputs and expected values, {"<key>": numpy array or JSON value}.
        seed: the seed the fixtures were built with (use it to seed model initialisation in probes).
        submission_dir: the directory holding the submission's modules (a read-only copy).
        earned_fraction: fraction of the points earned by the tests run so far (None when no other test ran).
    """

    def __init__(self, fixtures: Mapping[str, Any], seed: int, submission_dir: Path, worker: Worker | None,
                 no_worker_reason: str, timeout: float, deadline: float):
        self.fixtures = fixtures
        self.seed = seed
        self.submission_dir = submission_dir
        self.earned_fraction: float | None = None
        self.leaderboard_entries: list[dict] = []
        self._worker = worker
        self._no_worker_reason = no_worker_reason
        self._timeout = timeout
        self._deadline = deadline

    def call(self, probe: str, **kwargs: Any) -> Any:
        """Run `probe` in the worker on the submission; returns its plain-data value.

        Raises TestFailure when the student's code raises, crashes the worker, exceeds the test's timeout or its
        memory, or when the time budget of the whole grade is used up.
        """
        if self._worker is None:
            raise TestFailure(self._no_worker_reason)
        remaining = self._deadline - time.monotonic()
        if remaining <= 1:
            raise TestFailure("not run: the time budget of the whole autograder run was used up by earlier tests.")
        return self._worker.call(probe, kwargs, min(self._timeout, remaining))

    def leaderboard(self, name: str, value: float | str, order: str = "desc") -> None:
        """Report a leaderboard entry (order "asc": smaller is better)."""
        self.leaderboard_entries.append({"name": name, "value": value, "order": order})


def _test_output(message: str, stdout: str, stderr: str) -> str:
    parts = [message] if message else []
    if stdout.strip():
        parts.append(f"Your code printed (stdout):\n{stdout.rstrip()}")
    if stderr.strip():
        parts.append(f"Standard error:\n{stderr.rstrip()}")
    return "\n\n".join(parts)


def grade(
    submission_dir: str | Path,
    parts: Sequence[str] | None = None,
    *,
    fixtures_dir: str | Path | None = None,
    results_path: str | Path | None = None,
    points: Mapping[str, float] | None = None,
    worker_user: str | None = "auto",
    limits: Limits | None = None,
    time_budget: float = TIME_BUDGET,
    timeout_scale: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Grade one submission and return Gradescope's results dict (also written to `results_path` when given).

    Args:
        submission_dir: the submitted files: the modules at the top level or inside a single folder.
        parts: graded sections to run (default: every section with points in the course).
        fixtures_dir: directory with fixtures.npz and fixtures.json (default dist/fixtures under the kit's root).
        results_path: where to write results.json (not written when None).
        points: {section: points} overriding the course's (sections with 0 points or none are skipped).
        worker_user: "auto" (as root: drop to the user `student` when it exists and can run this interpreter), a
            user name (required to exist when the judge is root), or None for no privilege drop.
        limits: the worker's resource limits (defaults of `runner.Limits`).
        time_budget: seconds for the whole run; tests after it are failed as not run.
        timeout_scale: factor on every test's per-call timeout (slower machines).
        log: receives progress lines for staff (default: nothing).
    Returns:
        {"score", "output", "execution_time", "tests": [{"name", "number", "score", "max_score", "status", "output",
        "visibility", "tags"}], "extra_data": {"status", "max_score", ...}} plus "leaderboard" when a test reported
        one (only keys of Gradescope's results specification at the top level). extra_data["status"] is "ok"
        (graded), "empty" (no modules found), "unreadable" (the submission could not be copied),
        "worker-start-failed" (an environment problem: the worker could not run) or "internal-error" (a judge or
        fixture problem); anything but "ok" is for the staff to look at.
    """
    started = time.monotonic()
    log = log or (lambda line: None)
    points = dict(load_points() if points is None else points)
    fixtures, meta = fixture_files.load(Path(fixtures_dir) if fixtures_dir is not None else DEFAULT_FIXTURES)
    run = _Run(Path(submission_dir).resolve(), fixtures, meta, started + time_budget, timeout_scale, log)
    wanted = _wanted_parts(points, parts)
    with contextlib.ExitStack() as cleanup:
        _start_worker(run, worker_user, limits or Limits(), cleanup, _seen_modules(wanted))
        for part_index, part in enumerate(wanted, start=1):
            part_tests = [t for t in load_tests() if t.part == part]
            maxima = split_points(points[part], [t.weight for t in part_tests])
            for test_index, (test, max_score) in enumerate(zip(part_tests, maxima, strict=True), start=1):
                _run_test(run, test, f"{part_index}.{test_index}", max_score)
    document = _document(run, time.monotonic() - started)
    if results_path is not None:
        results_path = Path(results_path)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(document, indent=2, allow_nan=False), encoding="utf-8")
    return document


class _Run:
    """The state of one grading: the worker, the results so far, notes and internal errors."""

    def __init__(self, submission_dir: Path, fixtures: Mapping[str, Any], meta: Mapping[str, Any], deadline: float,
                 timeout_scale: float, log: Callable[[str], None]):
        self.submission_dir = submission_dir
        self.fixtures = fixtures
        self.meta = meta
        self.deadline = deadline
        self.timeout_scale = timeout_scale
        self.log = log
        self.sandbox: Sandbox | None = None
        self.worker: Worker | None = None
        self.no_worker = ""
        self.status = "ok"
        self.notes: list[str] = []
        self.internal_errors: list[str] = []
        self.results: list[dict] = []
        self.leaderboard: list[dict] = []
        self.worker_stats: dict[str, Any] = {}

    def internal_error(self, message: str, status: str = "internal-error") -> None:
        self.internal_errors.append(message)
        if self.status == "ok" or status == "worker-start-failed":
            self.status = status

    @property
    def earned_fraction(self) -> float | None:
        possible = sum(r["max_score"] for r in self.results)
        return sum(r["score"] for r in self.results) / possible if possible else None


def _wanted_parts(points: Mapping[str, float], parts: Sequence[str] | None) -> list[str]:
    """The parts to run, in report order: those with points, restricted to `parts` when given."""
    unknown = set(parts or ()) - set(PART_ORDER)
    if unknown:
        raise ValueError(f"unknown parts: {sorted(unknown)} (known: {', '.join(PART_ORDER)})")
    return [p for p in PART_ORDER if points.get(p, 0) > 0 and (parts is None or p in parts)]


def _seen_modules(sections: Sequence[str]) -> list[str]:
    """The student modules the worker imports: those the sections see, in table order (a course's submission has only
    the modules of its parts)."""
    seen = {module for name in sections for module in parts_table.SECTION_BY_NAME[name].sees}
    return [module for module in parts_table.MODULES if module in seen]


def _start_worker(run: _Run, worker_user: str | None, limits: Limits, cleanup: contextlib.ExitStack,
                  modules: Sequence[str]) -> None:
    """Find the submission's modules, hold the worker user and prepare the sandbox and the (lazily started) worker;
    `cleanup` stops them. Without modules, or when the submission cannot be copied, no test can call the worker."""
    package_dir = find_package_dir(run.submission_dir) if run.submission_dir.is_dir() else None
    if package_dir is None:
        run.no_worker = ("no Python modules found in the submission: upload the zip written by `python -m "
                         "stencil.submit` (the modules at the top level, or in a single folder).")
        run.notes.append(run.no_worker)
        run.status = "empty"
        return
    user = resolve_user(worker_user)
    run.log(f"worker user: {user.name if user else 'same as the judge (no privilege drop)'}")
    cleanup.enter_context(hold_worker_user(user, run.log))
    try:
        run.sandbox = Sandbox(package_dir, user)
    except ValueError as exc:
        run.no_worker = str(exc)
        run.notes.append(run.no_worker)
        run.status = "unreadable"
        return
    cleanup.callback(run.sandbox.close)
    run.worker = Worker(run.sandbox, limits, modules=modules)
    cleanup.callback(_stop_worker, run)


def _stop_worker(run: _Run) -> None:
    """Stop the worker and keep its statistics and import problems for the report."""
    worker = run.worker
    run.worker_stats = {"starts": worker.starts, "peak_rss_mb": round(worker.peak_rss_mb, 1),
                        "peak_private_mb": round(worker.peak_private_mb, 1), "blocked_modules": sorted(worker.blocked)}
    import_errors = {**worker.import_errors, **worker.blocked}
    run.notes += [error for _, error in sorted(import_errors.items())]
    worker.stop()


def _run_test(run: _Run, test: HiddenTest, number: str, max_score: float) -> None:
    """Run one hidden test and append its Gradescope result; any failure costs this test only."""
    started = time.monotonic()
    ctx = Context(run.fixtures, int(run.meta["seed"]), run.sandbox.submission if run.sandbox else run.submission_dir,
                  run.worker, run.no_worker, test.timeout * run.timeout_scale, run.deadline)
    ctx.start_test(test.id)
    ctx.earned_fraction = run.earned_fraction
    if run.worker is not None:
        run.worker.mark_output()
    credit, message, passed = 0.0, "", False
    if test.part != "audit" and test.part not in run.meta.get("parts", []):
        message = f"autograder configuration error: no fixtures for part '{test.part}' (rebuild them)."
        run.internal_error(message)
    else:
        try:
            result = test.fn(ctx)
            credit = 1.0 if result is None else min(1.0, max(0.0, float(result)))
            if isinstance(result, Scaled):
                message, passed = result.reason, True
            elif credit < 1.0:
                message = f"partial credit: {credit:.0%}"
        except WorkerStartError as exc:
            message = f"{exc}"
            run.internal_error(f"worker start failed: {exc}", "worker-start-failed")
        except TestFailure as exc:
            message = str(exc) or "failed"
        except Exception as exc:  # noqa: BLE001 - a judge bug must cost one test, not the run
            message = (f"the autograder could not check this ({type(exc).__name__}: {exc}); "
                       "please tell the course staff.")
            run.internal_error(f"{test.name}: {traceback.format_exc()}")
    passed = passed or credit >= 1.0
    stdout, stderr = run.worker.output_since_mark() if run.worker is not None and not passed else ("", "")
    score = round(max_score * credit, 2)
    run.leaderboard.extend(ctx.leaderboard_entries)
    run.results.append({
        "name": f"{test.part}: {test.name}",
        "number": number,
        "score": score,
        "max_score": max_score,
        "status": "passed" if passed else "failed",
        "output": _test_output(message, stdout, stderr),
        "visibility": "visible",
        "tags": [test.part],
        "extra_data": {"id": test.id},
    })
    run.log(f"{'PASS' if passed else 'FAIL'} {score:6.2f}/{max_score:<6.2f} {test.part}: {test.name} "
            f"({time.monotonic() - started:.1f} s)")


def _document(run: _Run, seconds: float) -> dict[str, Any]:
    """Gradescope's results dict of a finished run."""
    part_scores: dict[str, dict[str, float]] = {}
    for test in run.results:
        entry = part_scores.setdefault(test["tags"][0], {"score": 0.0, "max_score": 0.0})
        entry["score"] = round(entry["score"] + test["score"], 2)
        entry["max_score"] = round(entry["max_score"] + test["max_score"], 2)
    total = round(sum(t["score"] for t in run.results), 2)
    maximum = round(sum(t["max_score"] for t in run.results), 2)
    lines = [f"Score: {total:g} / {maximum:g}"]
    lines += [f"  {part}: {s['score']:g} / {s['max_score']:g}" for part, s in part_scores.items()]
    if run.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in run.notes]
    if run.internal_errors:
        lines += ["", "The autograder hit an internal problem on some tests; the course staff has been notified."]
    for error in run.internal_errors:
        run.log(f"INTERNAL ERROR: {error}")
    document: dict[str, Any] = {
        "score": total,
        "output": "\n".join(lines),
        "execution_time": round(seconds, 1),
        "tests": run.results,
        "extra_data": {"status": run.status, "max_score": maximum, "parts": part_scores, "worker": run.worker_stats,
                       "judge_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                       "internal_errors": [e[-2000:] for e in run.internal_errors]},
    }
    if run.leaderboard:
        document["leaderboard"] = run.leaderboard
    return document


def format_summary(results: Mapping[str, Any], failures_only: bool = False) -> str:
    """A readable report of a results dict: one line per test (or per failed test), failure messages indented, then
    the totals by part."""
    lines = []
    for test in results["tests"]:
        if failures_only and test["status"] == "passed":
            continue
        mark = "PASS" if test["status"] == "passed" else "FAIL"
        lines.append(f"{mark} {test['score']:6.2f}/{test['max_score']:<6.2f} {test['name']}")
        if test["status"] != "passed" and test["output"]:
            text = test["output"] if len(test["output"]) <= 1200 else test["output"][:1200] + " ..."
            lines += ["         " + line for line in text.splitlines()]
    lines += ["", results["output"], f"({results['execution_time']} s)"]
    return "\n".join(lines)


def error_results(message: str) -> dict[str, Any]:
    """Results for a run that could not grade at all (every point lost, the reason shown)."""
    return {"score": 0.0, "output": f"The autograder failed: {message}", "tests": [],
            "execution_time": 0, "extra_data": {"fatal": message}}


if __name__ == "__main__":  # pragma: no cover - use python -m autograder
    sys.exit("use: python -m autograder grade --submission DIR")
