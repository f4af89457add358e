"""`python -m autograder grade-all` run as a TA runs it: as root, on a folder of submissions, several at a time.

With the privilege drop real (the judge is root and the worker user can run the grading interpreter, which CI provides
as LMKIT_GRADING_PYTHON), a folder of references, stencils, crashers, a hang and an escaping daemon is graded with
`--jobs 2` and with `--jobs 1`: every row must be the same, because concurrent gradings never touch each other's
workers. A grading interpreter the worker user cannot run stops grade-all before it grades anything.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder.judge import users
from autograder.qa.adversarial import ADVERSARIES
from autograder.qa.mutants import write_submission

ROOT = Path(__file__).resolve().parent.parent
GRADING_PYTHON = os.environ.get("LMKIT_GRADING_PYTHON", sys.executable)
PARTS = ("preprocess", "samplers")
SEED = 2718
CRASHERS = ("os-exit-at-import", "os-exit-in-probe", "sys-exit-in-probe", "infinite-loop", "escaped-daemon")
"""Adversaries among the submissions: a worker killed at import and mid-test, a hang, a daemon that outlives its
worker (and would kill or tamper with anything its user can reach)."""
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")


@pytest.fixture(scope="module")
def fixtures_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grade-all-fixtures")
    subprocess.run([GRADING_PYTHON, "-m", "autograder", "fixtures", "--seed", str(SEED), "--out", str(out),
                    "--parts", *PARTS], cwd=ROOT, env=ENV, check=True, capture_output=True)
    return out


def _submissions(folder: Path, shared: Path) -> Path:
    folder.mkdir()
    for k in (1, 2, 3):
        write_submission((), folder / f"reference-{k}")
    for k in (1, 2):
        stencil = folder / f"stencil-{k}"
        stencil.mkdir()
        for path in (ROOT / "stencil").glob("*.py"):
            shutil.copy2(path, stencil / path.name)
    by_id = {a.id: a for a in ADVERSARIES}
    for name in CRASHERS:
        by_id[name].write(folder / name, shared)
    return folder


def _grade_all(submissions: Path, out: Path, jobs: int, fixtures_dir: Path) -> tuple[dict[str, dict], str]:
    done = subprocess.run([GRADING_PYTHON, "-m", "autograder", "grade-all", str(submissions), "--jobs", str(jobs),
                           "--csv", str(out), "--parts", *PARTS, "--fixtures", str(fixtures_dir),
                           "--timeout-scale", "0.2"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {row["submission"]: row for row in csv.DictReader(out.open())}, done.stdout + done.stderr


@needs_root
def test_concurrent_grading_as_root_gives_the_sequential_scores(fixtures_dir: Path, tmp_path: Path) -> None:
    if not users.can_run("nobody", GRADING_PYTHON):
        pytest.skip("needs a grading interpreter an unprivileged user can run (LMKIT_GRADING_PYTHON)")
    shared = Path(tempfile.mkdtemp(prefix="lm-grade-all-"))
    os.chmod(shared, 0o1777)
    workers = ("lmkit-worker1", "lmkit-worker2")
    existed = {user for user in workers if users.user_exists(user)}
    try:
        submissions = _submissions(tmp_path / "submissions", shared)
        assert len(list(submissions.iterdir())) >= 8
        parallel, console = _grade_all(submissions, tmp_path / "jobs2.csv", 2, fixtures_dir)
        sequential, _ = _grade_all(submissions, tmp_path / "jobs1.csv", 1, fixtures_dir)
        created = [user for user in workers if users.user_exists(user)]  # one worker user per job, made by grade-all
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        for user in set(workers) - existed:
            users.remove_user(user)
    assert created == list(workers), console[-2000:]
    assert parallel == sequential
    assert set(parallel) == {"reference-1", "reference-2", "reference-3", "stencil-1", "stencil-2", *CRASHERS}
    maximum = float(parallel["reference-1"]["max_score"])
    for k in (1, 2, 3):
        row = parallel[f"reference-{k}"]
        assert (float(row["score"]), row["status"], row["failed_tests"]) == (maximum, "ok", ""), row
    for k in (1, 2):
        assert float(parallel[f"stencil-{k}"]["score"]) == 0 and parallel[f"stencil-{k}"]["status"] == "ok"
    for name in CRASHERS:
        row = parallel[name]
        assert row["status"] == "ok" and 0 < float(row["preprocess"]) == float(row["preprocess_max"]), row
    assert float(parallel["infinite-loop"]["samplers"]) < float(parallel["infinite-loop"]["samplers_max"])
    assert "top_k_filter keeps" in parallel["infinite-loop"]["failed_tests"]


@needs_root
def test_an_interpreter_the_worker_user_cannot_run_stops_grade_all(fixtures_dir: Path, tmp_path: Path) -> None:
    if users.can_run("nobody", sys.executable):
        pytest.skip("this interpreter can be run by an unprivileged user")
    submissions = tmp_path / "submissions"
    write_submission((), submissions / "reference")
    done = subprocess.run([sys.executable, "-m", "autograder", "grade-all", str(submissions), "--csv",
                           str(tmp_path / "scores.csv"), "--parts", *PARTS, "--fixtures", str(fixtures_dir)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert f"cannot run {sys.executable}" in done.stderr and "--worker-user none" in done.stderr
    assert not (tmp_path / "scores.csv").exists()
