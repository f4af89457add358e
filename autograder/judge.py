"""The judge (trusted): runs the hidden tests against one submission and writes Gradescope's results.json.

It imports neither TensorFlow nor the submission: hidden inputs and expected values come from the fixture files, and
everything that touches the submission runs in the worker process (`autograder.runner`). Other tools call `grade`.
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

from . import fixture_files
from . import parts as parts_table
from .context import HiddenValues
from .registry import ALL_TESTS, HiddenTest, TestFailure
from .runner import Limits, Sandbox, Worker, WorkerStartError, find_package_dir, hold_worker_user, resolve_user

ROOT = Path(__file__).resolve().parent.parent
POINTS_FILE = Path(__file__).resolve().parent / "points.json"
DEFAULT_FIXTURES = ROOT / "dist" / "fixtures"
PART_ORDER = parts_table.NAMES
"""Report order; the audit runs last because its points scale with the points earned before it."""
TIME_BUDGET = 540.0
"""Seconds for the whole grade (Gradescope stops the autograder at 10 minutes); later tests are skipped."""


def load_tests() -> list[HiddenTest]:
    """Register and return every hidden test (importing the hidden test modules and the audit)."""
    from . import audit, hidden  # noqa: F401 - imported for their registrations

    return list(ALL_TESTS)


def load_points(path: Path = POINTS_FILE) -> dict[str, float]:
    """{part: points} from points.json; a part with 0 points is switched off."""
    points = json.loads(path.read_text(encoding="utf-8"))
    return {str(part): float(value) for part, value in points.items()}


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
        parts: autograder parts to run (default: every part with points in points.json).
        fixtures_dir: directory with fixtures.npz and fixtures.json (default dist/fixtures under the kit's root).
        results_path: where to write results.json (not written when None).
        points: {part: points} overriding autograder/points.json (parts with 0 points are skipped).
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
    submission_dir = Path(submission_dir).resolve()
    points = dict(load_points() if points is None else points)
    tests = load_tests()
    fixtures_dir = Path(fixtures_dir) if fixtures_dir is not None else DEFAULT_FIXTURES
    fixtures, meta = fixture_files.load(fixtures_dir)
    wanted = [p for p in PART_ORDER if points.get(p, 0) > 0 and (parts is None or p in parts)]
    unknown = set(parts or ()) - set(PART_ORDER)
    if unknown:
        raise ValueError(f"unknown parts: {sorted(unknown)} (known: {', '.join(PART_ORDER)})")
    selected = [t for p in wanted for t in tests if t.part == p]

    package_dir = find_package_dir(submission_dir) if submission_dir.is_dir() else None
    notes: list[str] = []
    sandbox = worker = None
    no_worker = ""
    status = "ok"
    held = contextlib.ExitStack()  # the worker user, while the worker may run
    if package_dir is None:
        no_worker = ("no Python modules found in the submission: upload the zip written by `python -m stencil.submit` "
                     "(the modules at the top level, or in a single folder).")
        notes.append(no_worker)
        status = "empty"
    else:
        user = resolve_user(worker_user)
        log(f"worker user: {user.name if user else 'same as the judge (no privilege drop)'}")
        held.enter_context(hold_worker_user(user, log))
        try:
            sandbox = Sandbox(package_dir, user)
        except ValueError as exc:
            no_worker = str(exc)
            notes.append(no_worker)
            status = "unreadable"
        else:
            worker = Worker(sandbox, limits or Limits())

    deadline = started + time_budget
    results: list[dict] = []
    leaderboard: list[dict] = []
    earned = possible = 0.0
    internal_errors = []
    try:
        for part_index, part in enumerate(wanted, start=1):
            part_tests = [t for t in selected if t.part == part]
            maxima = split_points(points[part], [t.weight for t in part_tests])
            missing_fixtures = part not in ("audit",) and part not in meta.get("parts", [])
            for test_index, (test, max_score) in enumerate(zip(part_tests, maxima, strict=True), start=1):
                t0 = time.monotonic()
                ctx = Context(fixtures, int(meta["seed"]), sandbox.submission if sandbox else submission_dir,
                              worker, no_worker, test.timeout * timeout_scale, deadline)
                ctx.start_test(test.id)
                ctx.earned_fraction = earned / possible if possible else None
                if worker is not None:
                    worker.mark_output()
                credit, message = 0.0, ""
                if missing_fixtures:
                    message = f"autograder configuration error: no fixtures for part '{part}' (rebuild them)."
                    internal_errors.append(message)
                    status = "internal-error" if status == "ok" else status
                else:
                    try:
                        result = test.fn(ctx)
                        credit = 1.0 if result is None else min(1.0, max(0.0, float(result)))
                        if credit < 1.0:
                            message = f"partial credit: {credit:.0%}"
                    except WorkerStartError as exc:
                        message = f"{exc}"
                        internal_errors.append(f"worker start failed: {exc}")
                        status = "worker-start-failed"
                    except TestFailure as exc:
                        message = str(exc) or "failed"
                    except Exception as exc:  # noqa: BLE001 - a judge bug must cost one test, not the run
                        message = (f"the autograder could not check this ({type(exc).__name__}: {exc}); "
                                   "please tell the course staff.")
                        internal_errors.append(f"{test.name}: {traceback.format_exc()}")
                        status = "internal-error" if status == "ok" else status
                stdout, stderr = worker.output_since_mark() if worker is not None and credit < 1.0 else ("", "")
                score = round(max_score * credit, 4)
                earned += score
                possible += max_score
                leaderboard.extend(ctx.leaderboard_entries)
                results.append({
                    "name": f"{part}: {test.name}",
                    "number": f"{part_index}.{test_index}",
                    "score": score,
                    "max_score": max_score,
                    "status": "passed" if credit >= 1.0 else "failed",
                    "output": _test_output(message, stdout, stderr),
                    "visibility": "visible",
                    "tags": [part],
                    "extra_data": {"id": test.id},
                })
                log(f"{'PASS' if credit >= 1.0 else 'FAIL'} {score:6.2f}/{max_score:<6.2f} {part}: {test.name} "
                    f"({time.monotonic() - t0:.1f} s)")
    finally:
        worker_stats = {}
        if worker is not None:
            worker_stats = {"starts": worker.starts, "peak_rss_mb": round(worker.peak_rss_mb, 1),
                            "peak_private_mb": round(worker.peak_private_mb, 1),
                            "blocked_modules": sorted(worker.blocked)}
            import_errors = dict(worker.import_errors)
            import_errors.update({k: v for k, v in worker.blocked.items()})
            notes += [error for _, error in sorted(import_errors.items())]
            worker.stop()
        if sandbox is not None:
            sandbox.close()
        held.close()

    part_scores = {}
    for test in results:
        part = test["tags"][0]
        entry = part_scores.setdefault(part, {"score": 0.0, "max_score": 0.0})
        entry["score"] = round(entry["score"] + test["score"], 4)
        entry["max_score"] = round(entry["max_score"] + test["max_score"], 4)
    total = round(sum(t["score"] for t in results), 2)
    maximum = round(sum(t["max_score"] for t in results), 2)
    lines = [f"Score: {total:g} / {maximum:g}"]
    lines += [f"  {part}: {s['score']:g} / {s['max_score']:g}" for part, s in part_scores.items()]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    if internal_errors:
        lines += ["", "The autograder hit an internal problem on some tests; the course staff has been notified."]
    judge_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict[str, Any] = {
        "score": total,
        "output": "\n".join(lines),
        "execution_time": round(time.monotonic() - started, 1),
        "tests": results,
        "extra_data": {"status": status, "max_score": maximum, "parts": part_scores, "worker": worker_stats,
                       "judge_peak_rss_mb": round(judge_rss, 1),
                       "internal_errors": [e[-2000:] for e in internal_errors]},
    }
    if leaderboard:
        out["leaderboard"] = leaderboard
    for error in internal_errors:
        log(f"INTERNAL ERROR: {error}")
    if results_path is not None:
        results_path = Path(results_path)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(out, indent=2, allow_nan=False), encoding="utf-8")
    return out


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
