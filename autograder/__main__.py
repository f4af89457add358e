"""Command line of the autograder: `python -m autograder {grade,grade-all,fixtures,build,selfcheck} --help`.

    python -m autograder grade --submission DIR [--results FILE] [--parts P ...]
    python -m autograder grade-all SUBMISSIONS_DIR --jobs N --csv OUT
    python -m autograder build [--course all] [--out dist/autograder.zip]   (staff only: not in the Gradescope zip)
    python -m autograder fixtures [--seed N] [--out DIR] [--parts P ...]
    python -m autograder selfcheck [--parts P ...]              (staff only)

Other tools can call `autograder.judge.grade`, the same code path `grade` uses.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

from autograder.parts import NAMES

ROOT = Path(__file__).resolve().parent.parent
PARTS = NAMES


def _default_fixtures() -> Path:
    return Path(os.environ.get("LM_FIXTURES", ROOT / "dist" / "fixtures"))


# ---------------------------------------------------------------------------------------------------- fixtures
def _add_fixtures(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh random one)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: dist/fixtures, or $LM_FIXTURES)")
    p.add_argument("--parts", nargs="+", default=None,
                   help="only these sections (default: those the course grades)")
    p.add_argument("--course", default=None,
                   help="a course preset's name or a course file (default: the one this autograder was built for)")


def run_fixtures(args: argparse.Namespace) -> int:
    from autograder.judge.runner import KERNEL_ENVIRONMENT

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.update(KERNEL_ENVIRONMENT)  # before TensorFlow is imported
    from autograder.course import CourseError, built, load
    from autograder.judge import fixture_files
    from autograder.parts import WITH_FIXTURES
    from autograder.recording.record import build_fixtures

    try:
        course = built() if args.course is None else load(args.course)
    except CourseError as exc:
        print(f"fixtures: {exc}", file=sys.stderr)
        return 2
    seed = secrets.randbelow(2**31 - 1) if args.seed is None else args.seed
    parts = list(args.parts or [name for name in course.points if name in WITH_FIXTURES])
    unknown = set(parts) - set(WITH_FIXTURES)
    if unknown:
        print(f"fixtures: unknown parts {sorted(unknown)} (known: {', '.join(WITH_FIXTURES)})", file=sys.stderr)
        return 2
    out = args.out or _default_fixtures()
    redraws: dict[str, list[list[str]]] = {}
    fixtures = build_fixtures(seed, parts, redraws)
    fixture_files.save(fixtures, out, seed, parts)
    for test_id, rejected in redraws.items():
        print(f"{test_id}: hidden values drawn again {len(rejected)} time(s); rejected draws failed by "
              + "; ".join(", ".join(labels) for labels in rejected))
    print(f"wrote fixtures for {', '.join(parts)} to {out}")
    return 0


# ---------------------------------------------------------------------------------------------------- grade
def _add_grade(p: argparse.ArgumentParser) -> None:
    p.add_argument("--submission", type=Path, required=True, help="submitted files (a folder or a .zip)")
    p.add_argument("--results", type=Path, default=None, help="write Gradescope's results.json here")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=None, help="only these parts")
    p.add_argument("--fixtures", type=Path, default=None, help="fixtures directory (default: dist/fixtures)")
    p.add_argument("--course", default=None,
                   help="a course preset's name or a course file: its points (default: the built course's)")
    p.add_argument("--worker-user", default="auto",
                   help="user the worker runs as when the judge is root ('auto': 'student' if it exists and can run "
                        "this interpreter; 'none': no privilege drop)")
    p.add_argument("--timeout-scale", type=float, default=1.0, help="factor on every per-call timeout")
    p.add_argument("--quiet", action="store_true", help="print only the total")


def run_grade(args: argparse.Namespace) -> int:
    """Exit status 0 when the submission was graded (whatever its score), 1 when it could not be (no modules, an
    unreadable zip, a worker that cannot start, an internal error): results.json then says why."""
    from autograder.course import CourseError
    from autograder.course import load as load_course
    from autograder.judge import fixture_files, format_summary, grade

    fixtures = args.fixtures or _default_fixtures()
    try:
        points = None if args.course is None else load_course(args.course).points
    except CourseError as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    try:
        fixture_files.ensure(fixtures, args.parts)
        with tempfile.TemporaryDirectory(prefix="lm-submission-") as tmp:
            try:
                submission = _unpacked(args.submission, Path(tmp))
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                return _write_error(args.results, f"the submission could not be read: {exc}", "unreadable")
            results = grade(submission, args.parts, fixtures_dir=fixtures, points=points,
                            results_path=args.results, worker_user=None if args.worker_user == "none" else
                            args.worker_user, timeout_scale=args.timeout_scale,
                            log=None if args.quiet else lambda line: print(line, flush=True))
    except Exception as exc:  # noqa: BLE001 - Gradescope must always get a results.json
        traceback.print_exc()
        return _write_error(args.results, f"{type(exc).__name__}: {exc}", "internal-error")
    status = results["extra_data"]["status"]
    print(f"score {results['score']:g} / {results['extra_data']['max_score']:g}" if args.quiet else
          "\n" + format_summary(results, failures_only=True))
    if status != "ok":
        print(f"status: {status}", file=sys.stderr)
    return 0 if status == "ok" else 1


def _write_error(path: Path | None, message: str, status: str) -> int:
    """Write the results of a run that could not grade (score 0, the reason shown); returns the exit status 1."""
    from autograder.judge import error_results

    print(f"grade: {message}", file=sys.stderr)
    if path is not None:
        results = error_results(message)
        results["extra_data"]["status"] = status
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
    return 1


def _unpacked(submission: Path, scratch: Path) -> Path:
    """`submission` itself, or where its zip (given directly, or alone in the folder) was safely extracted."""
    from autograder.judge.runner import MAX_SUBMISSION_BYTES

    archive = submission if submission.is_file() and submission.suffix == ".zip" else None
    if archive is None and submission.is_dir() and not any(submission.glob("*.py")):
        zips = sorted(submission.glob("*.zip"))
        archive = zips[0] if len(zips) == 1 and not any(p.is_dir() for p in submission.iterdir()) else None
    if archive is None:
        return submission
    total = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = Path(info.filename)
            if info.is_dir() or name.is_absolute() or ".." in name.parts or (info.external_attr >> 16) & 0o170000 \
                    == 0o120000:
                continue
            total += info.file_size
            if total > MAX_SUBMISSION_BYTES:
                raise ValueError("the submitted zip is too large")
            target = scratch / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
    return scratch


# ---------------------------------------------------------------------------------------------------- grade-all
def _add_grade_all(p: argparse.ArgumentParser) -> None:
    from autograder.judge.grade_all import DEFAULT_TIMEOUT, WORKER_USER_PREFIX

    p.add_argument("submissions", type=Path, help="folder with one sub-folder or .zip per submission")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel")
    p.add_argument("--csv", type=Path, required=True, help="CSV of scores to write")
    p.add_argument("--results-dir", type=Path, default=None, help="keep each results.json here")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=None, help="only these parts")
    p.add_argument("--fixtures", type=Path, default=None, help="fixtures directory (default: dist/fixtures)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per submission before it is stopped")
    p.add_argument("--timeout-scale", type=float, default=1.0, help="factor on every per-call timeout")
    p.add_argument("--worker-user", default=WORKER_USER_PREFIX,
                   help=f"as root, job k's worker runs as the user PREFIXk, created when missing (default "
                        f"{WORKER_USER_PREFIX}: {WORKER_USER_PREFIX}1, {WORKER_USER_PREFIX}2, ...); 'none': no "
                        "privilege drop")


def run_grade_all(args: argparse.Namespace) -> int:
    """Exit status 0 when every submission was graded, 1 when some could not be (see the CSV's status column), 2
    when grading could not start (`autograder.judge.grade_all`)."""
    from autograder.judge.grade_all import grade_all

    return grade_all(args.submissions, args.csv, args.fixtures or _default_fixtures(), jobs=args.jobs,
                     results_dir=args.results_dir, parts=args.parts, timeout=args.timeout,
                     timeout_scale=args.timeout_scale, worker_user=args.worker_user)


# ---------------------------------------------------------------------------------------------------- build
def _add_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=ROOT / "dist" / "autograder.zip", help="zip to write")
    p.add_argument("--course", default="all", help="a course preset's name or a course file (default: all)")


def run_build(args: argparse.Namespace) -> int:
    from autograder.course import CourseError, load
    from autograder.recording.package import build_zip

    try:
        course = load(args.course)
    except CourseError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    names = build_zip(args.out, course)
    print(f"wrote {args.out} ({len(names)} files) for course {course.name} (graded: {', '.join(course.points)}): "
          "upload it as the Gradescope autograder")
    return 0


# ---------------------------------------------------------------------------------------------------- selfcheck
def _add_selfcheck(p: argparse.ArgumentParser) -> None:
    from autograder.qa.selfcheck import add_arguments

    add_arguments(p)


def run_selfcheck(args: argparse.Namespace) -> int:
    from autograder.qa.selfcheck import run

    return run(args)


def _exists(module: str) -> bool:
    """Whether `module` can be imported (its package may be missing altogether, as qa/ is in the Gradescope zip)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands = [
        ("grade", "grade one submission (prints a summary, writes results.json)", _add_grade, run_grade),
        ("grade-all", "grade every submission of a folder in parallel into a CSV", _add_grade_all, run_grade_all),
        ("fixtures", "build hidden inputs and expected values (imports TensorFlow and the reference)", _add_fixtures,
         run_fixtures),
    ]
    # Staff commands, offered only where their modules exist (they are not in the Gradescope zip).
    if _exists("autograder.recording.package"):
        commands.append(("build", "build the Gradescope autograder zip", _add_build, run_build))
    if _exists("autograder.qa.selfcheck"):
        commands.append(("selfcheck", "grade the reference, the stencil, alternatives and mutants; print the kill "
                         "matrix", _add_selfcheck, run_selfcheck))
    for name, help_text, add_arguments, run in commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
