"""Whole grading runs of adversarial submissions (autograder/qa/adversarial) through `python -m autograder grade`.

The kit is copied into a root-only directory (as setup.sh leaves /autograder/source on Gradescope) with fixtures built
there, and every submission is graded by the CLI, which calls `judge.grade` and writes results.json. When the tests
run as root, the worker really drops its privileges to a dedicated user (created here when missing and removed
afterwards); otherwise the attacks that only the privilege drop stops are skipped. Each run must give a valid
results.json whose score is exactly the points of the tests expected to pass, no hidden value in any output, and a
clear message on the first failing test. Grading the reference twice gives the same result.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autograder.judge import users
from autograder.judge.registry import DEFAULT_TIMEOUT
from autograder.qa.adversarial import ADVERSARIES, Adversary
from autograder.qa.mutants import write_submission

ROOT = Path(__file__).resolve().parent.parent
SEED = 4321
WORKER_USERS = ("lmworker", "lmworker2")
"""One user per concurrent grading run: after a crash the judge kills every process of its worker's user."""
IS_ROOT = os.geteuid() == 0
GRADING_PYTHON = os.environ.get("LMKIT_GRADING_PYTHON", sys.executable)
"""The interpreter that grades (judge and worker): CI points this at one outside root's home, so that the worker's
user can run it and the privilege drop is exercised for real."""
TIMEOUT_SCALE = 1.0
"""Per-call timeouts as deployed (30 s) wherever nothing should hang. The slowest probe call of preprocess and samplers
takes about 0.25 s on an idle 2-core machine, so two gradings at a time on a loaded machine keep a wide margin (at
0.1, a probe of fork-30-children once took longer than its 3 s)."""
HANG_TIMEOUT_SCALE = 1 / 3
"""Per-call timeouts of the runs whose submission hangs in a probe: the hang is stopped after 10 s (10 s of CPU for an
infinite loop, not a minute or the whole time budget), while the probes that do finish in that run still have 40 times
the slowest one's time."""
ALL_PARTS = tuple(sorted({p for a in ADVERSARIES for p in a.parts}))


DROP_SKIP = ("only the privilege drop stops this attack: it needs the judge to run as root with an interpreter "
             "that an unprivileged user can run")


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A root-only copy of the kit with fixtures for the graded parts; yields (kit dir, shared dir, worker users or
    "none")."""
    base = tmp_path_factory.mktemp("kit")
    os.chmod(base, 0o700)
    kit_dir = base / "source"
    for name in ("autograder", "assignment", "data"):
        shutil.copytree(ROOT / name, kit_dir / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    parts = [p for p in ALL_PARTS if p != "audit"]
    subprocess.run([GRADING_PYTHON, "-m", "autograder", "fixtures", "--seed", str(SEED), "--out",
                    str(kit_dir / "dist" / "fixtures"), "--parts", *parts], cwd=kit_dir, env=env, check=True,
                   capture_output=True)
    created = [name for name in WORKER_USERS if IS_ROOT and users.ensure_user(name)]
    drop = IS_ROOT and users.can_run(WORKER_USERS[0], GRADING_PYTHON)  # not when it lives in root's home (pyenv)
    shared = Path(tempfile.mkdtemp(prefix="lm-adversary-"))
    os.chmod(shared, 0o1777)
    yield kit_dir, shared, WORKER_USERS if drop else "none"
    shutil.rmtree(shared, ignore_errors=True)
    for name in created:
        users.remove_user(name)


def _hangs(adversary: Adversary) -> bool:
    """Whether the adversary's submission hangs in a probe (the judge must stop it with the per-call timeout)."""
    return "did not finish within" in adversary.message


def _grade(kit_dir: Path, submission: Path, results: Path, parts, user: str,
           timeout_scale: float) -> tuple[dict | None, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [GRADING_PYTHON, "-m", "autograder", "grade", "--submission", str(submission), "--results", str(results),
         "--parts", *parts, "--fixtures", str(kit_dir / "dist" / "fixtures"), "--worker-user", user,
         "--timeout-scale", str(timeout_scale), "--quiet"],
        cwd=kit_dir, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    data = json.loads(results.read_text(encoding="utf-8")) if results.is_file() else None
    return data, done.stdout + done.stderr, seconds


@pytest.fixture(scope="module")
def graded(kit, tmp_path_factory):
    """Grade every adversary (and the reference twice), two at a time; {id: (results, console output, seconds)}."""
    kit_dir, shared, users = kit
    free: queue.Queue = queue.Queue()
    for user in ("none",) * 2 if users == "none" else users:
        free.put(user)

    def grade(submission: Path, results: Path, parts, timeout_scale: float) -> tuple[dict | None, str, float]:
        user = free.get()  # never two concurrent runs with the same worker user
        try:
            return _grade(kit_dir, submission, results, parts, user, timeout_scale)
        finally:
            free.put(user)

    scratch = tmp_path_factory.mktemp("adversaries")
    jobs = {}
    for adversary in ADVERSARIES:
        if adversary.needs_drop and users == "none":
            continue
        jobs[adversary.id] = (adversary.write(scratch / adversary.id / "submission", shared), adversary.parts,
                              HANG_TIMEOUT_SCALE if _hangs(adversary) else TIMEOUT_SCALE)
    reference = write_submission((), scratch / "reference" / "submission")
    for label in ("reference-1", "reference-2"):
        jobs[label] = (reference, ALL_PARTS, TIMEOUT_SCALE)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {key: pool.submit(grade, sub, scratch / f"{key}.json", parts, scale)
                   for key, (sub, parts, scale) in jobs.items()}
        out = {key: future.result() for key, future in futures.items()}
    time.sleep(3)  # give escaped processes time to tamper with results.json after the judge wrote it
    for key in out:
        results_path = scratch / f"{key}.json"
        out[key] = (json.loads(results_path.read_text()) if results_path.is_file() else None, *out[key][1:])
    return out


@pytest.fixture(scope="module")
def secrets(kit) -> list[str]:
    """Strings that only the hidden side knows: slices of the fixture texts and lines of the hidden tests' code."""
    from autograder.judge import fixture_files

    kit_dir, _, _ = kit
    fixtures, _ = fixture_files.load(kit_dir / "dist" / "fixtures")
    def strings(value) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [s for v in value.values() for s in strings(v)] if isinstance(value, dict) else []

    texts = [t for key, value in fixtures.items() if key.startswith("preprocess.") for t in strings(value)]
    found = [t[i : i + 24] for t in texts for i in range(0, max(len(t) - 24, 1), 97) if len(t[i : i + 24].strip()) > 16]
    for path in (ROOT / "autograder" / "judge" / "hidden").glob("*.py"):
        found += [line.strip() for line in path.read_text().splitlines() if "ctx.fixtures[" in line
                  and len(line.strip()) > 30]
    assert len(found) > 50
    return found


def _expected_status(adversary: Adversary | None, test: dict) -> str:
    if adversary is None:
        return "passed"
    part, name = test["name"].split(": ", 1)
    fails = part in adversary.fails or any(name.startswith(start) for start in adversary.fails)
    return "failed" if fails else "passed"


def _check_results(results: dict | None, adversary: Adversary | None, console: str, secrets: list[str]) -> None:
    assert results is not None, f"no results.json was written; console:\n{console[-2000:]}"
    text = json.dumps(results)
    assert len(text) < 500_000, "results.json must stay small"
    assert results.get("output") != "hacked" and results["score"] <= results["extra_data"]["max_score"]
    assert set(results) >= {"score", "output", "tests", "execution_time"}
    assert abs(sum(t["score"] for t in results["tests"]) - results["score"]) < 0.02
    wrong = [(t["name"], t["status"], t["output"][:300]) for t in results["tests"]
             if t["status"] != _expected_status(adversary, t)]
    assert not wrong, wrong
    expected_score = sum(t["max_score"] for t in results["tests"] if _expected_status(adversary, t) == "passed")
    assert abs(results["score"] - expected_score) < 0.02
    leaked = [s for s in secrets if s in text or s in console]
    assert not leaked, f"hidden values in the output: {leaked[:3]}"
    if adversary is not None and adversary.message:
        first = next(t for t in results["tests"] if t["status"] == "failed")
        assert re.search(adversary.message, first["output"]), first["output"][:1000]


@pytest.mark.parametrize("adversary", ADVERSARIES, ids=lambda a: a.id)
def test_adversarial_submission_is_graded_safely(adversary: Adversary, graded, secrets, kit) -> None:
    if adversary.needs_drop and kit[2] == "none":
        pytest.skip(DROP_SKIP)
    results, console, _ = graded[adversary.id]
    _check_results(results, adversary, console, secrets)
    if _hangs(adversary):  # stopped by its own call's timeout, not by the time budget of the run
        hung = next(t for t in results["tests"] if t["status"] == "failed")
        assert f"did not finish within {DEFAULT_TIMEOUT * HANG_TIMEOUT_SCALE:g} s" in hung["output"], hung["output"]


def test_no_process_started_by_a_submission_survives_grading(graded, kit) -> None:
    _, shared, _ = kit
    survivors = []
    for pid_file in shared.glob("*.pid"):
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        survivors.append(pid_file.name)
        os.kill(pid, signal.SIGKILL)  # a process an adversary of this test started
    assert list(shared.glob("child-*.pid")), "the fork adversary did not run"
    assert not survivors, f"still running after grading: {survivors}"


def test_grading_the_same_submission_twice_gives_the_same_result(graded, secrets) -> None:
    first, second = graded["reference-1"][0], graded["reference-2"][0]
    for results in (first, second):
        _check_results(results, None, "", secrets)
    assert first["score"] == second["score"] == first["extra_data"]["max_score"]
    assert [(t["name"], t["score"], t["output"]) for t in first["tests"]] == \
        [(t["name"], t["score"], t["output"]) for t in second["tests"]]
