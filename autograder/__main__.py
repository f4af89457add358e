"""Command line of the autograder: `python -m autograder {grade,grade-all,build,fixtures} --help`.

    python -m autograder grade --submission DIR [--results FILE] [--parts P ...]
    python -m autograder grade-all SUBMISSIONS_DIR --jobs N --csv OUT
    python -m autograder build [--out dist/autograder.zip]
    python -m autograder fixtures [--seed N] [--out DIR] [--parts P ...]

More subcommands can be added by appending (name, help, add_arguments, run) to COMMANDS; `run(args) -> int` may call
`autograder.judge.grade`, the same code path `grade` uses.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("preprocess", "rnn", "lstm", "samplers", "transformer", "train", "quality", "audit")


def _default_fixtures() -> Path:
    return Path(os.environ.get("LM_FIXTURES", ROOT / "dist" / "fixtures"))


# ---------------------------------------------------------------------------------------------------- fixtures
def _add_fixtures(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh random one)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: dist/fixtures, or $LM_FIXTURES)")
    p.add_argument("--parts", nargs="+", default=None, help="only these parts (default: all)")


def run_fixtures(args: argparse.Namespace) -> int:
    from .runner import KERNEL_ENVIRONMENT

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.update(KERNEL_ENVIRONMENT)  # before TensorFlow is imported
    from . import fixture_files
    from .fixtures import BUILDERS, build_fixtures

    seed = secrets.randbelow(2**31 - 1) if args.seed is None else args.seed
    parts = list(args.parts or BUILDERS)
    unknown = set(parts) - set(BUILDERS)
    if unknown:
        print(f"fixtures: unknown parts {sorted(unknown)} (known: {', '.join(BUILDERS)})", file=sys.stderr)
        return 2
    out = args.out or _default_fixtures()
    fixture_files.save(build_fixtures(seed, parts), out, seed, parts)
    print(f"wrote fixtures for {', '.join(parts)} to {out}")
    return 0


def ensure_fixtures(fixtures_dir: Path, parts: list[str] | None) -> None:
    """Build fixtures (in a subprocess, which imports TensorFlow and the reference) when none exist yet."""
    from . import fixture_files

    if fixture_files.exists(fixtures_dir):
        return
    print(f"no fixtures in {fixtures_dir}: building them with a random seed ...", file=sys.stderr)
    command = [sys.executable, "-m", "autograder", "fixtures", "--out", str(fixtures_dir)]
    if parts:
        command += ["--parts", *[p for p in parts if p != "audit"]]
    subprocess.run(command, cwd=ROOT, check=True)


# ---------------------------------------------------------------------------------------------------- grade
def _add_grade(p: argparse.ArgumentParser) -> None:
    p.add_argument("--submission", type=Path, required=True, help="submitted files (a folder or a .zip)")
    p.add_argument("--results", type=Path, default=None, help="write Gradescope's results.json here")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=None, help="only these parts")
    p.add_argument("--fixtures", type=Path, default=None, help="fixtures directory (default: dist/fixtures)")
    p.add_argument("--worker-user", default="auto",
                   help="user the worker runs as when the judge is root ('auto': 'student' if it exists; 'none')")
    p.add_argument("--timeout-scale", type=float, default=1.0, help="factor on every per-call timeout")
    p.add_argument("--quiet", action="store_true", help="print only the total")


def run_grade(args: argparse.Namespace) -> int:
    from .judge import error_results, format_summary, grade

    fixtures = args.fixtures or _default_fixtures()
    try:
        ensure_fixtures(fixtures, args.parts)
        with tempfile.TemporaryDirectory(prefix="lm-submission-") as tmp:
            results = grade(_unpacked(args.submission, Path(tmp)), args.parts, fixtures_dir=fixtures,
                            results_path=args.results, worker_user=None if args.worker_user == "none" else
                            args.worker_user, timeout_scale=args.timeout_scale,
                            log=None if args.quiet else lambda line: print(line, flush=True))
    except Exception as exc:  # noqa: BLE001 - Gradescope must always get a results.json
        traceback.print_exc()
        if args.results is not None:
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(error_results(f"{type(exc).__name__}: {exc}"), indent=2))
        return 1
    print(f"score {results['score']:g} / {results['max_score']:g}" if args.quiet else
          "\n" + format_summary(results, failures_only=True))
    return 0


def _unpacked(submission: Path, scratch: Path) -> Path:
    """`submission` itself, or where its zip (given directly, or alone in the folder) was safely extracted."""
    from .runner import MAX_SUBMISSION_BYTES

    archive = submission if submission.is_file() and submission.suffix == ".zip" else None
    if archive is None and submission.is_dir() and not any(submission.glob("*.py")):
        zips = sorted(submission.glob("*.zip"))
        archive = zips[0] if len(zips) == 1 and not any(p.is_dir() for p in submission.iterdir()) else None
    if archive is None:
        return submission
    import zipfile

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
    p.add_argument("submissions", type=Path, help="folder with one sub-folder or .zip per submission")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel")
    p.add_argument("--csv", type=Path, required=True, help="CSV of scores to write")
    p.add_argument("--results-dir", type=Path, default=None, help="keep each results.json here")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=None, help="only these parts")
    p.add_argument("--fixtures", type=Path, default=None, help="fixtures directory (default: dist/fixtures)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per submission before it is stopped")


def _grade_one(path: Path, results: Path, args: argparse.Namespace, fixtures: Path) -> dict:
    command = [sys.executable, "-m", "autograder", "grade", "--submission", str(path), "--results", str(results),
               "--fixtures", str(fixtures), "--quiet"]
    if args.parts:
        command += ["--parts", *args.parts]
    row = {"submission": path.stem if path.suffix == ".zip" else path.name}
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        data = json.loads(results.read_text())
        row.update(score=data["score"], max_score=data.get("max_score", ""), status="ok" if done.returncode == 0
                   else f"error: {data.get('output', '')[:200]}")
        for part, entry in data.get("extra_data", {}).get("parts", {}).items():
            row[part] = entry["score"]
    except subprocess.TimeoutExpired:
        row.update(score=0, status=f"error: not finished within {args.timeout:g} s")
    except (OSError, ValueError, KeyError) as exc:
        row.update(score=0, status=f"error: {type(exc).__name__}: {exc}")
    return row


def run_grade_all(args: argparse.Namespace) -> int:
    fixtures = args.fixtures or _default_fixtures()
    ensure_fixtures(fixtures, args.parts)
    entries = sorted(p for p in args.submissions.iterdir() if p.is_dir() or p.suffix == ".zip")
    results_dir = args.results_dir or Path(tempfile.mkdtemp(prefix="lm-results-"))
    results_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {pool.submit(_grade_one, p, results_dir / (re.sub(r"[^\w.-]", "_", p.stem) + ".json"), args,
                               fixtures): p for p in entries}
        for future in concurrent.futures.as_completed(futures):
            row = future.result()
            rows.append(row)
            print(f"{row['submission']}: {row.get('score', 0)} ({row['status']})", flush=True)
    columns = ["submission", "score", "max_score"] + [p for p in PARTS if any(p in r for r in rows)] + ["status"]
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["submission"]))
    print(f"wrote {args.csv} ({len(rows)} submissions; results in {results_dir})")
    return 0


# ---------------------------------------------------------------------------------------------------- build
def _add_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=ROOT / "dist" / "autograder.zip", help="zip to write")


def run_build(args: argparse.Namespace) -> int:
    from .build import build_zip

    names = build_zip(args.out)
    print(f"wrote {args.out} ({len(names)} files): upload it as the Gradescope autograder")
    return 0


# ---------------------------------------------------------------------------------------------------- selfcheck
def _add_selfcheck(p: argparse.ArgumentParser) -> None:
    from .selfcheck import add_arguments

    add_arguments(p)


def run_selfcheck(args: argparse.Namespace) -> int:
    from .selfcheck import run

    return run(args)


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: list[Command] = [
    ("grade", "grade one submission (prints a summary, writes results.json)", _add_grade, run_grade),
    ("grade-all", "grade every submission of a folder in parallel into a CSV", _add_grade_all, run_grade_all),
    ("build", "build the Gradescope autograder zip", _add_build, run_build),
    ("fixtures", "build hidden inputs and expected values (imports TensorFlow and the reference)", _add_fixtures,
     run_fixtures),
    ("selfcheck", "grade the reference, the stencil, alternatives and mutants; print the kill matrix", _add_selfcheck,
     run_selfcheck),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, add_arguments, run in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
