"""Build the student release `dist/student.zip` of a course.

    python -m tools.make_release [--course all] [--out dist/student.zip] [--splits data/splits]

The zip holds one folder, `lm-assignment/`, with exactly what the handout's "What you get" section lists: the course's
handout (`tools/make_handout.py`) and the figures, the course's starter package `stencil/` (`tools/make_stencil.py`:
TODOs in its parts, the parts they run solved, the parts nobody needs left out), the public tests of its parts,
requirements.txt (the kit's, without the kit's own development tools), the corpus preparation script
`data/prepare.py` and the prepared splits `data/splits/*.txt`, read from `--splits DIR` (default `data/splits/`) and
written there with `python -m data.prepare` first when any is missing; with them the splits of the other corpora the
course's parts read by default (`PART_CORPORA`: the romances of fine-tuning, `DIR/romances/*.txt`, written with
`python -m data.prepare --corpus romances` when missing). The reference solution, the autograder, the
kit's tests and these tools are never included. The stencil must be in sync with the reference
(`python -m tools.make_stencil --check`), otherwise the build stops.

Entries are written in sorted order with a fixed timestamp, so the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from autograder.course import Course, CourseError
from autograder.course import load as load_course
from autograder.parts import BY_KEY

from . import make_handout, make_stencil

ROOT = Path(__file__).resolve().parent.parent
TOP = "lm-assignment"
SPLITS = ("train", "valid", "test")
PART_CORPORA = {"finetune": "romances"}
"""Part -> the corpus of `data/prepare.py` its command reads by default, shipped in `data/splits/<corpus>/` with it."""
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
KIT_ONLY_REQUIREMENTS = ("pytest-xdist", "ruff")
"""Tools the kit's own suite and lint use; students run the public tests with pytest alone (and ruff's defaults,
without the kit's configuration, would flag the given code)."""


def _files(directory: Path, pattern: str) -> list[Path]:
    return sorted(p for p in directory.glob(pattern) if p.is_file() and "__pycache__" not in p.parts)


def release_files(course: Course, root: Path = ROOT, splits_dir: Path | None = None) -> dict[str, Path | str]:
    """Map each archive name (below TOP/) to the file it is read from, or to its generated text."""
    splits_dir = splits_dir or root / "data" / "splits"
    stencil = make_stencil.generate(root / make_stencil.SOURCE_PACKAGE, course)
    files: dict[str, Path | str] = {"requirements.txt": root / "requirements.txt"}
    files["data/prepare.py"] = root / "data" / "prepare.py"
    for split in SPLITS:
        files[f"data/splits/{split}.txt"] = splits_dir / f"{split}.txt"
    for corpus in corpora(course):
        for split in SPLITS:
            files[f"data/splits/{corpus}/{split}.txt"] = splits_dir / corpus / f"{split}.txt"
    for path in _files(root / "figures", "*.png"):
        files[path.relative_to(root).as_posix()] = path
    for rel, text in stencil.items():
        files[f"{make_stencil.TARGET_PACKAGE}/{rel.as_posix()}"] = text
    for name in ("conftest.py", *(BY_KEY[key].public_tests for key in course.parts)):
        files[f"public_tests/{name}"] = root / "public_tests" / name
    modules = sorted(rel.name for rel in stencil if rel.parent == Path(".") and rel.name != "submit.py")
    files["handout.md"] = make_handout.render((root / "handout.md").read_text(encoding="utf-8"), course, modules)
    missing = [name for name, path in files.items() if isinstance(path, Path) and not path.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot build the release, missing: {', '.join(missing)}")
    return dict(sorted(files.items()))


def student_requirements(text: str) -> str:
    """The kit's requirements.txt without `KIT_ONLY_REQUIREMENTS`."""
    def package(line: str) -> str | None:
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        return name.group(1).lower() if name else None

    lines = [line for line in text.splitlines(keepends=True) if package(line) not in KIT_ONLY_REQUIREMENTS]
    return "".join(line.replace("# Tests and lint.", "# Public tests.") for line in lines)


def corpora(course: Course) -> list[str]:
    """The corpora besides the default one that the release of `course` ships (`PART_CORPORA` of its parts)."""
    return [PART_CORPORA[key] for key in course.shipped_parts if key in PART_CORPORA]


def prepare_splits(root: Path = ROOT, splits_dir: Path | None = None, extra: Sequence[str] = ()) -> None:
    """Write the splits (default data/splits/*.txt) with the kit's corpus preparation when any of them is missing, and
    those of each corpus of `extra` in `splits_dir/<corpus>/`."""
    splits_dir = splits_dir or root / "data" / "splits"
    for corpus, folder in (("shakespeare", splits_dir), *((name, splits_dir / name) for name in extra)):
        if not all((folder / f"{split}.txt").is_file() for split in SPLITS):
            subprocess.run([sys.executable, "-m", "data.prepare", "--corpus", corpus, "--out", str(folder)], cwd=root,
                           check=True)


def build_release(out: Path, course: Course | None = None, root: Path = ROOT,
                  splits_dir: Path | None = None) -> list[str]:
    """Write the student zip of `course` (default: `all`) to `out`; returns the archive names."""
    problems = make_stencil.drifted(root / make_stencil.SOURCE_PACKAGE, root / make_stencil.TARGET_PACKAGE)
    if problems:
        raise RuntimeError(f"stencil/ is out of date ({', '.join(problems)}): run python -m tools.make_stencil")
    files = release_files(course or load_course(), root, splits_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in files.items():
            info = zipfile.ZipInfo(f"{TOP}/{name}", date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            data = path.encode("utf-8") if isinstance(path, str) else path.read_bytes()
            if name == "requirements.txt":
                data = student_requirements(data.decode("utf-8")).encode("utf-8")
            archive.writestr(info, data)
            names.append(info.filename)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.make_release", description=__doc__.splitlines()[0])
    parser.add_argument("--course", default="all", help="a course preset's name or a course file (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "student.zip", help="zip to write")
    parser.add_argument("--splits", type=Path, default=None, metavar="DIR",
                        help="folder of the prepared splits, prepared there when missing (default data/splits)")
    args = parser.parse_args(argv)
    splits_dir = args.splits.resolve() if args.splits else None
    try:
        course = load_course(args.course)
    except CourseError as exc:
        print(f"make_release: {exc}", file=sys.stderr)
        return 2
    try:
        prepare_splits(splits_dir=splits_dir, extra=corpora(course))
        names = build_release(args.out, course, splits_dir=splits_dir)
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError, make_handout.HandoutError) as exc:
        print(f"make_release: {exc}", file=sys.stderr)
        return 1
    solved = f"; solved, as given code: {', '.join(course.solved)}" if course.solved else ""
    print(f"wrote {args.out} ({len(names)} files) for course {course.name}: parts {', '.join(course.parts)}{solved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
