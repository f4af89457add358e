"""The Gradescope autograder zip: `python -m autograder build [--course all] [--out dist/autograder.zip]`.

Gradescope unpacks the zip into /autograder/source and runs `setup.sh` once when it builds the image; `run_autograder`
(copied to /autograder/run_autograder) grades each submission. The zip holds what `SHIPPED` lists (the judge, the
worker, the hidden tests and, only to build the fixtures during setup, the reference solution `assignment/`, the
alternative correct solutions that guard the recording and `data/`), the course it grades (`autograder/course.json`:
its parts and points), `requirements-gradescope.txt` with pinned versions, and the two scripts. Fixtures are not in
the zip: setup.sh builds them with a fresh random seed on the image and makes them readable by root only.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from autograder.course import Course
from autograder.course import load as load_course

ROOT = Path(__file__).resolve().parents[2]
GRADESCOPE_REQUIREMENTS = """\
# Pinned for Gradescope's default image (Ubuntu 22.04, Python 3.10); these pins also install on Python 3.11-3.13.
tensorflow-cpu==2.21.0 ; platform_machine == "x86_64"
tensorflow==2.21.0 ; platform_machine != "x86_64"
keras==3.12.4
numpy==2.2.6
scipy==1.15.3
"""
SHIPPED = (
    "autograder/__init__.py", "autograder/__main__.py", "autograder/parts.py", "autograder/course.py",
    "autograder/judge/", "autograder/worker/", "autograder/recording/__init__.py",
    "autograder/recording/inprocess.py", "autograder/recording/record.py", "autograder/recording/edits.py",
    "autograder/recording/alternatives.py", "assignment/", "data/__init__.py", "data/prepare.py",
)
"""What grading needs, as an allow-list (a name ending in "/" means every .py file below that folder): the judge, the
hidden tests, the worker, and what setup.sh builds the fixtures with: the reference, the alternative correct solutions
that guard the recording (`alternatives.py`, written by `edits.py`) and corpus preparation. Staff-only material
(self-check, mutants, adversarial submissions, kit tests, stencil, the course presets) is never shipped."""
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def zip_entries(course: Course, root: Path = ROOT) -> dict[str, bytes | Path]:
    """Map each archive name to its content (a file to read, or bytes)."""
    entries: dict[str, bytes | Path] = {
        "autograder/course.json": course.to_json().encode(),
        "setup.sh": root / "autograder" / "setup.sh",
        "run_autograder": root / "autograder" / "run_autograder",
        "requirements-gradescope.txt": GRADESCOPE_REQUIREMENTS.encode(),
    }
    for name in SHIPPED:
        if name.endswith("/"):
            for path in sorted((root / name).rglob("*.py")):
                if "__pycache__" not in path.parts:
                    entries[path.relative_to(root).as_posix()] = path
        else:
            entries[name] = root / name
    missing = [name for name, src in entries.items() if isinstance(src, Path) and not src.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot build the autograder zip, missing: {', '.join(missing)}")
    return dict(sorted(entries.items()))


def build_zip(out: Path, course: Course | None = None, root: Path = ROOT) -> list[str]:
    """Write the Gradescope zip of `course` (default: the `all` preset) to `out`; returns the archive names. Scripts
    are stored executable."""
    entries = zip_entries(course or load_course(), root)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, src in entries.items():
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            archive.writestr(info, src if isinstance(src, bytes) else src.read_bytes())
    return list(entries)
