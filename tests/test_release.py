"""The student release zip and the students' submit command."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from assignment import submit
from autograder.course import load as load_course
from tools import make_release, make_stencil

ROOT = Path(__file__).resolve().parent.parent
HANDOUT = (ROOT / "handout.md").read_text(encoding="utf-8")


def handout_section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", HANDOUT, flags=re.M | re.S)
    assert match, f"handout.md has no section '## {title}'"
    return match.group(1)


def promised_patterns() -> list[str]:
    block = re.search(r"<!-- release-contents -->\n```text\n(.*?)```", HANDOUT, flags=re.S)
    assert block, "handout.md lacks the release-contents block"
    return block.group(1).split()


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> Path:
    """Small stand-ins for the prepared corpus splits (preparing the real corpus is not this test's business)."""
    directory = tmp_path_factory.mktemp("splits")
    (directory / "romances").mkdir()
    for split in make_release.SPLITS:
        (directory / f"{split}.txt").write_text(f"{split} text\n", encoding="utf-8")
        (directory / "romances" / f"{split}.txt").write_text(f"romance {split} text\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def release(tmp_path_factory, splits) -> Path:
    out = tmp_path_factory.mktemp("dist") / "student.zip"
    make_release.build_release(out, splits_dir=splits)
    return out


def test_release_contains_exactly_what_the_handout_lists(release):
    names = zipfile.ZipFile(release).namelist()
    patterns = promised_patterns()
    for name in names:
        matching = [p for p in patterns if fnmatch.fnmatchcase(name, p)]
        assert len(matching) == 1, f"{name} matches {matching} of the handout's list"
    for pattern in patterns:
        assert any(fnmatch.fnmatchcase(n, pattern) for n in names), f"nothing in the zip matches {pattern}"
    top = make_release.TOP
    for forbidden in ("assignment/", "autograder/", "tools/", "tests/", "bench/"):
        assert not [n for n in names if n.startswith(f"{top}/{forbidden}")]
    stencil = sorted(n[len(f"{top}/stencil/") :] for n in names if n.startswith(f"{top}/stencil/"))
    assert stencil == sorted(p.as_posix() for p in make_stencil.source_files(ROOT / "assignment"))
    public = sorted(n for n in names if n.startswith(f"{top}/public_tests/"))
    assert public == sorted(f"{top}/public_tests/{p.name}" for p in (ROOT / "public_tests").glob("*.py"))
    for name in names:  # byte-identical copies of the repository files, the handout without its course markers
        source = ROOT / name[len(top) + 1 :]
        if "splits" not in name and not name.endswith(("/requirements.txt", "/handout.md")):
            assert zipfile.ZipFile(release).read(name) == source.read_bytes(), name
    handout = zipfile.ZipFile(release).read(f"{top}/handout.md").decode("utf-8")
    course_markers = ("<!-- if ", "<!-- end if")
    assert handout == "".join(line for line in HANDOUT.splitlines(keepends=True) if not line.startswith(course_markers))


def test_release_requirements_are_the_kits_without_its_development_tools(release):
    shipped = zipfile.ZipFile(release).read(f"{make_release.TOP}/requirements.txt").decode("utf-8").splitlines()
    kit = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    names = [re.match(r"[\w.-]+", line).group(0).lower() for line in shipped if line and not line.startswith("#")]
    assert "pytest" in names and "tensorflow-cpu" in names and "keras" in names
    assert not {"ruff", "pytest-xdist"} & set(names)
    assert [line for line in shipped if not line.startswith("#")] == [
        line for line in kit if not line.startswith("#") and not line.startswith(("ruff", "pytest-xdist"))]


@pytest.mark.parametrize("name, ships", [("all", True), ("hw3", True), ("hw2", False), ("hw1", False)])
def test_the_romances_ship_with_fine_tuning_only(splits, tmp_path, name, ships):
    names = make_release.build_release(tmp_path / "student.zip", load_course(name), splits_dir=splits)
    romances = [n for n in names if "/data/splits/romances/" in n]
    top = make_release.TOP
    assert romances == ([f"{top}/data/splits/romances/{split}.txt" for split in sorted(make_release.SPLITS)]
                        if ships else [])
    for name in romances:
        source = splits / name.split("splits/", 1)[1]
        assert zipfile.ZipFile(tmp_path / "student.zip").read(name) == source.read_bytes()
    handout = zipfile.ZipFile(tmp_path / "student.zip").read(f"{top}/handout.md").decode("utf-8")
    assert ("data/splits/romances/" in handout) == ships


def test_release_is_reproducible(release, splits, tmp_path):
    again = tmp_path / "again.zip"
    make_release.build_release(again, splits_dir=splits)
    assert again.read_bytes() == release.read_bytes()


def test_release_refuses_a_stencil_out_of_sync(tmp_path):
    for package, text in (("assignment", "VALUE = 1\n"), ("stencil", "VALUE = 2\n")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "given.py").write_text(text)
    with pytest.raises(RuntimeError, match=r"given\.py \(differs\)"):
        make_release.build_release(tmp_path / "out.zip", root=tmp_path)


def test_required_files_are_the_graded_modules_and_the_handout_names_them():
    modules = {p.name for p in (ROOT / "assignment").glob("*.py")} - {"submit.py"}
    assert set(submit.REQUIRED_FILES) == modules
    assert set(re.findall(r"`(\w+\.py)`", handout_section("Submitting"))) == modules


def test_submit_zips_the_modules_at_the_root_and_lists_open_parts(tmp_path):
    out = tmp_path / "sub" / "submission.zip"
    names = submit.build_submission(out, package_dir=ROOT / "stencil")
    archive = zipfile.ZipFile(out)
    assert archive.namelist() == names == list(submit.REQUIRED_FILES)
    for name in names:
        assert archive.read(name) == (ROOT / "stencil" / name).read_bytes()
    course = load_course()  # the stencil's: every part, numbered in the table's order
    parts = {course.number(m.part) for m in make_stencil.collect_markers(ROOT / "assignment")}
    assert submit.open_parts(ROOT / "stencil") == sorted(parts) == list(range(1, len(course.parts) + 1))
    assert submit.open_parts(ROOT / "assignment") == []


def test_submit_command_refuses_a_missing_module_with_one_line_and_exit_2(tmp_path):
    package = tmp_path / "stencil"
    shutil.copytree(ROOT / "stencil", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "rnn.py").unlink()
    command = [sys.executable, "-m", "stencil.submit", "--out", "submission.zip"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "stencil/rnn.py" in run.stderr
    assert not (tmp_path / "submission.zip").exists()

    shutil.copy(ROOT / "stencil" / "rnn.py", package / "rnn.py")
    run = subprocess.run([sys.executable, "-m", "stencil.submit"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert zipfile.ZipFile(tmp_path / "submission.zip").namelist() == list(submit.REQUIRED_FILES)
    assert "TODOs left in part(s) 1, 2, 3, 4, 5" in run.stdout
