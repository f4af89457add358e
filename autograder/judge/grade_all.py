"""Grading every submission of a folder into a CSV of scores (`python -m autograder grade-all`).

Each submission (a sub-folder or a .zip) is graded by its own `python -m autograder grade` process, `jobs` at a time,
with a wall-clock limit per submission. As root, each job slot has its own worker user (`lmkit-worker1` ...), created
when missing and checked first (`users.prepare_worker_user`), so concurrent gradings never share one: after a crash a
grading kills every process of its worker user.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from autograder.judge import fixture_files, users
from autograder.parts import NAMES as PARTS

ROOT = Path(__file__).resolve().parents[2]
WORKER_USER_PREFIX = "lmkit-worker"
DEFAULT_TIMEOUT = 900.0
"""Seconds per submission before its grading is stopped."""
CSV_DECIMALS = 2
"""Scores in the CSV are rounded as Gradescope shows them."""


def worker_users(prefix: str, jobs: int) -> list[str | None]:
    """The worker user of each job slot: one per slot, so that concurrent gradings never share one (after a crash
    a grading kills every process of its worker user). [None] * jobs when not root or `prefix` is 'none'."""
    if os.geteuid() != 0 or prefix == "none":
        return [None] * jobs
    return [f"{prefix}{k}" for k in range(1, jobs + 1)]


def grade_all(submissions: Path, csv_path: Path, fixtures: Path, *, jobs: int = 1, results_dir: Path | None = None,
              parts: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT, timeout_scale: float = 1.0,
              worker_user: str = WORKER_USER_PREFIX) -> int:
    """Grade every sub-folder and .zip of `submissions`; write one CSV row per submission to `csv_path` and keep each
    results.json in `results_dir` (default: a fresh temporary folder). Fixtures are built in `fixtures` when missing.

    worker_user: the prefix of the job slots' worker users as root (see `worker_users`), or 'none'.
    Returns the exit status: 0 when every submission was graded, 1 when some could not be (see the CSV's status
    column), 2 when grading could not start.
    """
    if not submissions.is_dir():
        print(f"grade-all: {submissions} is not a folder", file=sys.stderr)
        return 2
    jobs = max(1, jobs)
    slots = worker_users(worker_user, jobs)
    for name in filter(None, slots):
        problem = users.prepare_worker_user(name)
        if problem:
            print(f"grade-all: {problem}", file=sys.stderr)
            return 2
    fixture_files.ensure(fixtures, parts)
    entries = sorted(p for p in submissions.iterdir() if p.is_dir() or p.suffix == ".zip")
    results_dir = results_dir or Path(tempfile.mkdtemp(prefix="lm-results-"))
    results_dir.mkdir(parents=True, exist_ok=True)
    free: queue.Queue[str | None] = queue.Queue()
    for user in slots:
        free.put(user)

    def job(path: Path) -> dict:
        user = free.get()
        try:
            return _grade_one(path, results_dir / (re.sub(r"[^\w.-]", "_", path.stem) + ".json"), fixtures, user,
                              parts, timeout, timeout_scale)
        finally:
            free.put(user)

    rows = []
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for future in concurrent.futures.as_completed([pool.submit(job, p) for p in entries]):
            row = future.result()
            rows.append(row)
            print(f"{row['submission']}: {row.get('score', 0):g} ({row['status']})", flush=True)
    graded_parts = [p for p in PARTS if any(p in r for r in rows)]
    columns = ["submission", "score", "max_score", "status"] + [c for p in graded_parts for c in (p, f"{p}_max")]
    columns += ["failed_tests", "message"]
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["submission"]))
    not_graded = [r["submission"] for r in rows if r["status"] != "ok"]
    print(f"wrote {csv_path} ({len(rows)} submissions; results in {results_dir})")
    if not_graded:
        print(f"grade-all: {len(not_graded)} submission(s) not graded normally: {', '.join(sorted(not_graded))} "
              "(see the status and message columns)", file=sys.stderr)
    return 1 if not_graded else 0


def _grade_one(path: Path, results: Path, fixtures: Path, user: str | None, parts: Sequence[str] | None,
               timeout: float, timeout_scale: float) -> dict:
    """The CSV row of one submission, graded by `python -m autograder grade` in a process of its own."""
    command = [sys.executable, "-m", "autograder", "grade", "--submission", str(path), "--results", str(results),
               "--fixtures", str(fixtures), "--quiet", "--worker-user", user or "none",
               "--timeout-scale", str(timeout_scale)]
    if parts:
        command += ["--parts", *parts]
    row: dict = {"submission": path.stem if path.suffix == ".zip" else path.name}
    results.unlink(missing_ok=True)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()
        _sweep(user)
        return {**row, "score": 0, "status": "timeout", "message": f"not finished within {timeout:g} s"}
    try:
        data = json.loads(results.read_text())
        status = data.get("extra_data", {}).get("status", "internal-error")
    except (OSError, ValueError) as exc:
        tail = output.strip().splitlines()[-1:] or [f"{type(exc).__name__}: {exc}"]
        return {**row, "score": 0, "status": "internal-error", "message": tail[0][:300]}
    if process.returncode != 0 and status == "ok":
        status = "internal-error"
    row.update(score=_round(data["score"]), max_score=_round(data["extra_data"].get("max_score", 0)), status=status)
    for part, entry in data.get("extra_data", {}).get("parts", {}).items():
        row[part] = _round(entry["score"])
        row[f"{part}_max"] = _round(entry["max_score"])
    row["failed_tests"] = "; ".join(t["name"] for t in data.get("tests", []) if t.get("status") != "passed")
    if status != "ok":
        row["message"] = " ".join(data.get("output", "").split())[:300]
    return row


def _round(value: float) -> float:
    return round(float(value), CSV_DECIMALS)


def _sweep(user: str | None) -> None:
    """Kill what a stopped grading's worker left running as its job's user."""
    if user is not None:
        with users.hold_worker_user(users.resolve_user(user)):
            pass
