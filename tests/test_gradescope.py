"""The Gradescope autograder run exactly as Gradescope runs it.

`python -m autograder build` writes the zip; it is unpacked into a Gradescope layout (`source/`, `submission/`,
`results/` under an autograder root), its own `setup.sh` runs unmodified as root from `source/` (virtual environment,
worker user, fixtures), `run_autograder` is copied to the root as Gradescope does and runs once per submission, and
each `results/results.json` is checked against Gradescope's results specification.

The scripts' root defaults to /autograder; here it is a fresh folder (AUTOGRADER_ROOT), so the test never touches a
real /autograder. The setup interpreter is /usr/bin/python3 (Debian 12 here: a PEP 668 system Python, like Ubuntu
24.04's) unless LMKIT_SETUP_PYTHON names another; LMKIT_PYTHON310 names a Python 3.10 (Gradescope's default image) that
an unprivileged user can run, for a second set-up graded with the reference. Needs root (the worker drops to the user
`student`, as on Gradescope).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from assignment.submit import REQUIRED_FILES
from autograder.course import load as load_course
from autograder.judge import users

ROOT = Path(__file__).resolve().parent.parent
SETUP_PYTHON = os.environ.get("LMKIT_SETUP_PYTHON", "/usr/bin/python3")
PYTHON310 = os.environ.get("LMKIT_PYTHON310", "")
FULL_MARKS = 100.0
"""The points of every section of the `all` course (the default zip)."""

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.access(SETUP_PYTHON, os.X_OK),
                                reason="runs setup.sh and run_autograder as root, as Gradescope does")

# Gradescope's results.json specification (https://gradescope-autograders.readthedocs.io/en/latest/specs/).
TOP_LEVEL_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
                  "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
             "visibility", "extra_data"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def check_gradescope_schema(results: dict) -> None:
    """Fail unless `results` follows Gradescope's results.json specification."""
    assert set(results) <= TOP_LEVEL_KEYS, set(results) - TOP_LEVEL_KEYS
    assert isinstance(results["score"], (int, float))
    assert isinstance(results.get("output", ""), str)
    assert results.get("visibility", "visible") in VISIBILITIES
    for test in results["tests"]:
        assert set(test) <= TEST_KEYS, set(test) - TEST_KEYS
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert 0 <= test["score"] <= test["max_score"] + 1e-9
        assert test.get("status", "passed") in ("passed", "failed")
        assert test.get("visibility", "visible") in VISIBILITIES
        assert isinstance(test.get("output", ""), str)
        assert all(isinstance(tag, str) for tag in test.get("tags", []))
    if results["tests"]:
        assert abs(sum(t["score"] for t in results["tests"]) - results["score"]) < 0.01


class Gradescope:
    """An autograder root set up from the zip of `course`: `grade(files)` runs run_autograder on a submission
    folder."""

    def __init__(self, root: Path, autograder_zip: Path, course: str):
        self.root = root
        self.zip = autograder_zip
        self.course = course
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                    "LANG": "C.UTF-8", "AUTOGRADER_ROOT": str(root)}

    def setup(self, python: str) -> subprocess.CompletedProcess:
        source = self.root / "source"
        source.mkdir(mode=0o700)  # as on Gradescope, the unpacked zip is root's alone
        with zipfile.ZipFile(self.zip) as archive:
            for info in archive.infolist():
                archive.extract(info, source)
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(source / info.filename, mode)
        done = subprocess.run(["bash", "./setup.sh"], cwd=source, env={**self.env, "LMKIT_PYTHON": python},
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        shutil.copy2(source / "run_autograder", self.root / "run_autograder")  # as Gradescope does
        return done

    def grade(self, submission: Path) -> dict:
        target = self.root / "submission"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(submission, target)
        done = subprocess.run([str(self.root / "run_autograder")], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads((self.root / "results" / "results.json").read_text())
        check_gradescope_schema(results)
        return results


def _autograder_root() -> Path:
    """A fresh autograder root that the worker user can traverse (pytest's own tmp folders are root-only)."""
    root = Path(tempfile.mkdtemp(prefix="lmkit-gradescope-"))
    os.chmod(root, 0o755)
    return root


def _build_zip(out: Path, course: str = "all") -> Path:
    """`python -m autograder build --course COURSE --out OUT`."""
    subprocess.run([sys.executable, "-m", "autograder", "build", "--course", course, "--out", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    return out


@contextlib.contextmanager
def _site(autograder_zip: Path, python: str, course: str = "all") -> Iterator[Gradescope]:
    """A fresh autograder root set up from `autograder_zip` with `python`; removed afterwards, with the user `student`
    when its setup.sh created it (as on Gradescope)."""
    made_student = not users.user_exists("student")
    root = _autograder_root()
    try:
        site = Gradescope(root, autograder_zip, course)
        site.setup(python)
        yield site
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if made_student:
            users.remove_user("student")


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory) -> Path:
    return _build_zip(tmp_path_factory.mktemp("build") / "autograder.zip")


@pytest.fixture(scope="module")
def gradescope(autograder_zip: Path):
    with _site(autograder_zip, SETUP_PYTHON) as site:
        yield site


def _package(tmp_path: Path, source: str) -> Path:
    """The graded modules of `source` (assignment or stencil), as a submission folder."""
    folder = tmp_path / source
    folder.mkdir()
    for name in REQUIRED_FILES:
        shutil.copy2(ROOT / source / name, folder / name)
    return folder


def _failed(results: dict) -> list[dict]:
    return [t for t in results["tests"] if t["status"] != "passed"]


def test_setup_leaves_the_judge_root_only_and_the_environment_runnable(gradescope: Gradescope) -> None:
    source = gradescope.root / "source"
    for path in (source, source / "dist" / "fixtures", source / "autograder" / "judge" / "__init__.py"):
        info = path.stat()
        assert info.st_uid == 0 and not info.st_mode & 0o077, path
    python = gradescope.root / "lmkit-venv" / "bin" / "python"
    done = subprocess.run([str(python), "-c", "import tensorflow, scipy; print('ok')"], user="student", cwd="/",
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
    assert not (gradescope.root / "lmkit-venv" / "bin" / "python").resolve().is_relative_to("/root")


def test_reference_gets_full_marks(gradescope: Gradescope, tmp_path: Path) -> None:
    results = gradescope.grade(_package(tmp_path, "assignment"))
    assert _failed(results) == []
    assert results["score"] == FULL_MARKS
    assert results["extra_data"]["status"] == "ok"
    assert results["extra_data"]["worker"]["starts"] == 1


def test_untouched_stencil_gets_zero(gradescope: Gradescope, tmp_path: Path) -> None:
    results = gradescope.grade(_package(tmp_path, "stencil"))
    assert results["score"] == 0 and len(_failed(results)) == len(results["tests"]) > 40
    assert any("TODO" in t["output"] for t in results["tests"])


def test_student_release_submission_zip_gets_full_marks(gradescope: Gradescope, tmp_path: Path) -> None:
    """The student's path: unpack student.zip, write the solution, `python -m stencil.submit`, upload the zip
    (Gradescope unzips an uploaded zip into submission/)."""
    results = gradescope.grade(_release_submission(tmp_path, "all", solve=True))
    assert _failed(results) == [] and results["score"] == FULL_MARKS


def test_missing_module_costs_its_part_only(gradescope: Gradescope, tmp_path: Path) -> None:
    submission = _package(tmp_path, "assignment")
    (submission / "samplers.py").unlink()
    results = gradescope.grade(submission)
    parts = results["extra_data"]["parts"]
    assert parts["samplers"]["score"] == 0 < parts["samplers"]["max_score"]
    for name in ("preprocess", "rnn", "lstm", "train"):
        assert parts[name]["score"] == parts[name]["max_score"] > 0, name
    failed = [t for t in _failed(results) if "samplers" in t["tags"]]
    assert failed and all("samplers.py" in t["output"] for t in failed)


def test_syntax_error_costs_its_part_and_names_the_line(gradescope: Gradescope, tmp_path: Path) -> None:
    submission = _package(tmp_path, "assignment")
    source = (submission / "rnn.py").read_text()
    (submission / "rnn.py").write_text(source + "\n\ndef broken(:\n    pass\n")
    line = len((source + "\n\ndef broken(:").splitlines())
    results = gradescope.grade(submission)
    parts = results["extra_data"]["parts"]
    assert parts["rnn"]["score"] == 0 and parts["preprocess"]["score"] == parts["preprocess"]["max_score"]
    rnn_failures = [t for t in _failed(results) if "rnn" in t["tags"]]
    assert rnn_failures and all("SyntaxError" in t["output"] and f"rnn.py, line {line}" in t["output"]
                                for t in rnn_failures), rnn_failures[0]["output"]


def test_every_shipped_module_imports_from_the_unpacked_tree(gradescope: Gradescope) -> None:
    """Nothing a shipped module needs was left out of the zip: each one imports with only the unpacked tree (and the
    environment's packages) on the path."""
    source = gradescope.root / "source"
    modules = sorted(str(p.relative_to(source).with_suffix("")).replace("/", ".").removesuffix(".__init__")
                     for p in source.rglob("*.py") if "dist" not in p.parts and p.name != "__main__.py")
    script = ("import importlib, sys\nsys.path[:0] = [sys.argv[1]]\nfor name in sys.argv[2:]:\n"
              "    importlib.import_module(name)\nprint(len(sys.argv) - 2)\n")
    python = gradescope.root / "lmkit-venv" / "bin" / "python"
    done = subprocess.run([str(python), "-I", "-c", script, str(source), *modules], cwd="/", capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) == len(modules) > 30
    commands = subprocess.run([str(python), "-E", "-s", "-m", "autograder", "--help"], cwd=source, capture_output=True,
                              text=True)
    assert commands.returncode == 0 and "{grade,grade-all,fixtures}" in commands.stdout  # no staff commands


def test_shipped_files_are_exactly_the_allow_list(autograder_zip: Path) -> None:
    from autograder.recording.package import SHIPPED

    with zipfile.ZipFile(autograder_zip) as archive:
        names = set(archive.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in archive.infolist()}
    assert modes["setup.sh"] & stat.S_IXUSR and modes["run_autograder"] & stat.S_IXUSR
    for name in names - {"setup.sh", "run_autograder", "requirements-gradescope.txt", "autograder/course.json"}:
        assert any(name == s or (s.endswith("/") and name.startswith(s)) for s in SHIPPED), name
    assert not [n for n in names if "selfcheck" in n or "mutants" in n or "adversarial" in n
                or n.startswith(("tests/", "stencil/", "dist/", "autograder/qa/", "autograder/courses/"))
                or n.endswith((".npz", ".pyc"))]


@pytest.mark.skipif(not PYTHON310, reason="LMKIT_PYTHON310 names no Python 3.10 that the worker user can run")
def test_setup_on_python_310_grades_the_reference(autograder_zip: Path, tmp_path: Path) -> None:
    """Gradescope's default image has Python 3.10: set up from it and grade the reference."""
    with _site(autograder_zip, PYTHON310) as site:
        version = subprocess.run([str(site.root / "lmkit-venv" / "bin" / "python"), "-c",
                                  "import sys, keras; print(sys.version_info[:2], keras.__version__)"],
                                 capture_output=True, text=True, check=True).stdout
        assert version.startswith("(3, 10)"), version
        results = site.grade(_package(tmp_path, "assignment"))
        assert _failed(results) == [] and results["score"] == FULL_MARKS


# ---------------------------------------------------------------------------------------------------- a course
COURSES = [name for name in os.environ.get("LMKIT_COURSE_ZIPS", "hw3").split(",") if name != "all"]
"""Courses whose own zip is set up and graded (CI: hw3, whose zip ships the parts it runs solved; a release check
names every preset): the zip grades the course's parts only, its student release holds its parts only."""


@pytest.fixture(scope="module", params=COURSES)
def course_site(request, tmp_path_factory):
    with _site(_build_zip(tmp_path_factory.mktemp("build") / f"autograder-{request.param}.zip", request.param),
               SETUP_PYTHON, request.param) as site:
        yield site


def _release_submission(tmp_path: Path, course: str, solve: bool) -> Path:
    """The course's student.zip unpacked, its TODOs filled from the reference when `solve`, submitted with
    `python -m stencil.submit` and uploaded (unzipped into a submission folder)."""
    release = tmp_path / "student.zip"
    subprocess.run([sys.executable, "-m", "tools.make_release", "--course", course, "--out", str(release)], cwd=ROOT,
                   check=True, capture_output=True)
    with zipfile.ZipFile(release) as archive:
        archive.extractall(tmp_path / "unpacked")
    (home,) = (tmp_path / "unpacked").iterdir()  # the release is one top-level folder
    assert (home / "stencil").is_dir(), sorted(p.name for p in home.iterdir())
    if solve:
        for name in load_course(course).student_modules:
            source = (ROOT / "assignment" / f"{name}.py").read_text(encoding="utf-8")
            (home / "stencil" / f"{name}.py").write_text(source.replace("assignment.", "stencil."), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "stencil.submit"], cwd=home, check=True, capture_output=True,
                   env={"PATH": os.environ["PATH"], "HOME": str(home)})
    uploaded = tmp_path / "uploaded"
    with zipfile.ZipFile(home / "submission.zip") as archive:
        archive.extractall(uploaded)
    return uploaded


def test_course_zip_gives_its_release_full_marks_and_its_stencil_zero(course_site: Gradescope, tmp_path: Path) -> None:
    course = load_course(course_site.course)
    solved = _release_submission(tmp_path / "solved", course.name, solve=True)
    submitted = {path.stem for path in solved.glob("*.py")}
    assert set(course.student_modules) <= submitted and not submitted & set(course.left_out_modules)  # its parts'
    results = course_site.grade(solved)
    assert _failed(results) == [] and results["score"] == FULL_MARKS == sum(course.points.values())
    assert {t["name"].split(":")[0] for t in results["tests"]} == set(course.points)
    assert results["extra_data"]["status"] == "ok" and "could not be imported" not in results["output"]
    results = course_site.grade(_release_submission(tmp_path / "stencil", course.name, solve=False))
    assert results["score"] == 0 and len(_failed(results)) == len(results["tests"]) > 20
