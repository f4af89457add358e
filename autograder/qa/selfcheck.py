"""`python -m autograder selfcheck`: prove the hidden tests on known submissions and print the kill matrix.

1. The reference solution must get full marks and the untouched stencil (generated from it) zero, both graded by
   `judge.grade` exactly as a student submission is (worker process, fixtures files, the course's points).
2. Every alternative correct solution (`autograder.recording.alternatives`) must get full marks on its parts, also
   through `judge.grade`.
3. Every mutant (`autograder.qa.mutants`) must fail at least one of the hidden tests named for it (by id). Mutants run
   in this process, TensorFlow imported once, each against the tests of the parts it touches, spread over `--jobs`
   processes (`--full` grades each one through `judge.grade` instead, which is slower).
4. The public tests (`public_tests/`, shipped to students) must pass on every alternative correct solution and catch
   at least PUBLIC_KILL_RATE of the whole mutant catalog: each alternative and mutant, written as a package, runs the
   public test files of the modules it edits (`pytest -x -q` in process, spread over `--jobs` processes). The rate is
   printed beside the kill matrix; `--public only` measures just this, `--public no` skips it.

With `--seeds N` it checks fairness over fixture seeds instead: for each of N seeds (`--seed`, `--seed` + 1, ...) it
records fresh fixtures and grades the reference and every alternative on them (through `judge.grade`, or in this
process with `--in-process`); any lost point is a surprise.

Exits 1 on any surprise (and 2 on bad arguments), so that CI can run it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import io
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autograder.parts import GRADED, PART_OF_MODULE

ROOT = Path(__file__).resolve().parents[2]
GRADED_PARTS = GRADED
PUBLIC_TEST_FILES = {module: part.public_tests for module, part in PART_OF_MODULE.items()}
"""The public test file of each student module (in `public_tests/`): its part's."""
PUBLIC_KILL_RATE = 0.8
"""Least fraction of the whole mutant catalog that must fail a public test (checked when no --parts or --mutants)."""


@dataclass
class MutantResult:
    """One row of the kill matrix: which tests (ids) of the mutant's parts ran and failed."""

    mutant: object
    failed: set[str] = field(default_factory=set)
    ran: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def named(self) -> set[str]:
        return set(self.ran) & set(self.mutant.tests)

    @property
    def killed(self) -> bool:
        return bool(self.failed & self.named)

    @property
    def surprise(self) -> str | None:
        if self.error:
            return f"could not run: {self.error}"
        if not self.killed:
            return "not caught by the tests named for it" + (
                f" (only by: {', '.join(sorted(self.failed))})" if self.failed else "")
        return None


@dataclass
class PublicResult:
    """The public tests of the modules a mutant (or alternative) edits: pytest's exit status and the first failure."""

    mutant: object
    status: int | None = None
    failed: str = ""
    error: str | None = None
    seconds: float = 0.0

    @property
    def caught(self) -> bool:
        return self.status == 1


class _FirstFailure:
    """pytest plugin that records the node id of the first test that fails (or errors)."""

    def __init__(self) -> None:
        self.nodeid = ""

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed and not self.nodeid:
            self.nodeid = report.nodeid


def _public_row(mutant, scratch: Path) -> PublicResult:
    """Run the public test files of the modules `mutant` edits against the reference with the mutant applied.

    The mutated modules are written as a package named after the mutant in a folder of their own, which goes first on
    sys.path, and `LM_PACKAGE` names it (as `LM_PACKAGE=assignment python -m pytest public_tests` does). pytest runs
    in this process (`-x -q`, TensorFlow imported once per process); the public tests' conftest is imported afresh
    for each mutant, since it reads LM_PACKAGE when imported.
    """
    import pytest

    from autograder.qa.mutants import MutantError, write_submission

    result = PublicResult(mutant)
    start = time.perf_counter()
    package = "public_mutant_" + "".join(c if c.isalnum() else "_" for c in mutant.id)
    folder = scratch / mutant.id
    try:
        write_submission(mutant.edits, folder / package)
    except MutantError as exc:
        result.error = str(exc)
        return result
    files = sorted({PUBLIC_TEST_FILES[e.module] for e in mutant.edits})
    arguments = ["-x", "-q", "-p", "no:cacheprovider", f"--rootdir={ROOT}",
                 *(f"--deselect={nodeid}" for nodeid in getattr(mutant, "public_pitfalls", ())),
                 *(str(ROOT / "public_tests" / name) for name in files)]
    os.environ["LM_PACKAGE"] = package
    sys.path.insert(0, str(folder))
    sys.modules.pop("conftest", None)
    first = _FirstFailure()
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            result.status = int(pytest.main(arguments, plugins=[first]))
    finally:
        sys.path.remove(str(folder))
        shutil.rmtree(folder, ignore_errors=True)
    result.failed = first.nodeid
    if result.status not in (0, 1):
        result.error = f"pytest exit status {result.status}: {output.getvalue()[-500:]}"
    result.seconds = time.perf_counter() - start
    return result


def _public_rows(mutants: list, jobs: int, scratch: Path) -> list[PublicResult]:
    """The public-test result of every mutant, in order, run in `jobs` fresh processes (in this one when jobs <= 1)."""
    if jobs <= 1 or len(mutants) < 2:
        return [_public_row(m, scratch) for m in mutants]
    context = multiprocessing.get_context("spawn")  # no fork of a process that has TensorFlow's threads
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        return list(pool.map(functools.partial(_public_row, scratch=scratch), mutants))


def _print_public(rows: list[PublicResult], seconds: float) -> str | None:
    """Print which mutants the public tests catch, per module and in total; a surprise when the rate is too low."""
    print("\nPublic tests against the mutants (caught: a public test of the edited modules fails)")
    for module in dict.fromkeys(r.mutant.module for r in rows):
        part_rows = [r for r in rows if r.mutant.module == module]
        print(f"\n[{module}] {sum(r.caught for r in part_rows)} of {len(part_rows)} caught")
        width = max(len(r.mutant.id) for r in part_rows)
        for r in part_rows:
            mark = "ERROR " + (r.error or "") if r.error else ("caught  " + r.failed if r.caught else "missed")
            print(f"  {r.mutant.id:<{width}}  {mark}")
    caught = sum(r.caught for r in rows)
    rate = caught / len(rows) if rows else 1.0
    print(f"\nPublic tests catch {caught} of {len(rows)} mutants ({100 * rate:.1f} %, required "
          f"{100 * PUBLIC_KILL_RATE:.0f} % of the whole catalog); {seconds:.0f} s")
    return None if rate >= PUBLIC_KILL_RATE else (
        f"the public tests catch {100 * rate:.1f} % of the mutants, below {100 * PUBLIC_KILL_RATE:.0f} %")


def _public_surprises(mutants: list, alternatives: list, args: argparse.Namespace) -> list[str]:
    """Run and print the public tests against `alternatives` (each must pass) and `mutants`; the rate must reach
    PUBLIC_KILL_RATE over the whole catalog (a selection by --parts or --mutants is only printed). Mutants that could
    not run are surprises too."""
    scratch = Path(tempfile.mkdtemp(prefix="lm-selfcheck-public-"))
    t0 = time.monotonic()
    try:
        rows = _public_rows([*alternatives, *mutants], args.jobs, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    correct, rows = rows[:len(alternatives)], rows[len(alternatives):]
    surprises = []
    print("\nPublic tests on the alternative correct solutions")
    for r in correct:
        ok = r.status == 0
        print(f"  {'ok  ' if ok else 'FAIL'} alternative {r.mutant.id}" + ("" if ok else f": {r.error or r.failed}"))
        if not ok:
            surprises.append(f"alternative {r.mutant.id} fails the public tests: {r.error or r.failed}")
    low = _print_public(rows, time.monotonic() - t0)
    surprises += [f"mutant {r.mutant.id} (public tests): {r.error}" for r in rows if r.error]
    if low and not args.parts and not args.mutants:
        surprises.append(low)
    return surprises


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", nargs="+", choices=GRADED_PARTS, default=None,
                        help="only the mutants and alternatives of these parts (default: all)")
    parser.add_argument("--mutants", nargs="+", default=None, metavar="ID", help="only these mutants")
    parser.add_argument("--seed", type=int, default=None, help="fixture seed (default: the kit's self-check seed)")
    parser.add_argument("--full", action="store_true",
                        help="grade every mutant through judge.grade (a worker per mutant; slow)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the reference, stencil and alternatives in this process too (fast, no worker)")
    parser.add_argument("--worker-user", default="auto", help="worker user for judge.grade ('none': no drop)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="processes that run the mutants in process (default: 2; --full grades one at a time)")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="grade the reference and every alternative on N fixture seeds, fresh fixtures for each "
                             "(no stencil, no mutants)")
    parser.add_argument("--public", choices=("yes", "no", "only"), default="yes",
                        help="run the public tests against the mutants too (yes), skip that (no), or only that")


def _write_stencil(target: Path) -> None:
    subprocess.run([sys.executable, "-m", "tools.make_stencil", "--target", str(target)], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)


def _grade(directory: Path, parts: Sequence[str] | None, fixtures_dir: Path, worker_user: str) -> dict:
    from autograder.judge import grade

    return grade(directory, parts, fixtures_dir=fixtures_dir, worker_user=None if worker_user == "none" else
                 worker_user)


def _in_process_score(directory: Path, label: str, parts: Sequence[str], fixtures: dict) -> tuple[float, float, list]:
    """(passed weight, total weight, failures) of the hidden tests of `parts` run in this process."""
    from autograder.recording import inprocess

    weights = {t.name: t.weight for t in inprocess.hidden_tests(parts)}
    outcomes = inprocess.run_package(directory, label, parts, fixtures)
    earned = sum(weights[o.test] * o.score for o in outcomes)
    failed = [(o.test, o.message) for o in outcomes if not o.passed]
    return earned, sum(weights.values()), failed


def _mutant_row(mutant, fixtures: dict, scratch: Path, full: bool, fixtures_dir: Path | None,
                worker_user: str) -> MutantResult:
    from autograder.qa.mutants import MutantError, write_submission
    from autograder.recording import inprocess

    result = MutantResult(mutant)
    start = time.perf_counter()
    directory = scratch / mutant.id
    try:
        write_submission(mutant.edits, directory)
    except MutantError as exc:
        result.error = str(exc)
        return result
    try:
        if full:
            graded = _grade(directory, list(mutant.parts), fixtures_dir, worker_user)
            for test in graded["tests"]:
                if test["tags"][0] == "audit":
                    continue
                result.ran.append(test["extra_data"]["id"])
                if test["status"] != "passed":
                    result.failed.add(test["extra_data"]["id"])
        else:
            outcomes = inprocess.run_package(directory, mutant.id, mutant.parts, fixtures)
            result.ran = [o.id for o in outcomes]
            result.failed = {o.id for o in outcomes if not o.passed}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    return result


def _mutant_rows(mutants: list, fixtures: dict, jobs: int, **kwargs) -> list[MutantResult]:
    """The kill-matrix rows of `mutants`, in order, run in `jobs` fresh processes (in this one when jobs <= 1)."""
    from autograder.recording import inprocess

    return inprocess.map_with_fixtures(functools.partial(_mutant_row, **kwargs), mutants, fixtures, jobs)


def _status(r: MutantResult) -> str:
    if r.error:
        return "ERROR"
    return "killed" if r.killed else "SURVIVED"


def _print_matrix(rows: list[MutantResult], tests: list) -> None:
    """Per part: the tests numbered, then one line per mutant touching the part with a mark per test."""
    print("\nKill matrix (K: failed and named for the mutant, x: failed, o: named but passed, .: passed)")
    for part in GRADED_PARTS:
        part_tests = [t for t in tests if t.part == part]
        part_rows = [r for r in rows if part in r.mutant.parts]
        if not part_rows or not part_tests:
            continue
        tag = part[:2].upper()
        print(f"\n[{part}]")
        for i, test in enumerate(part_tests, start=1):
            print(f"  {tag}{i:<3d}{test.id}: {test.name}")
        width = max(len(r.mutant.id) for r in part_rows)
        print(f"  {'mutant':<{width}}  " + "".join(f"{tag}{i:<3d}" for i in range(1, len(part_tests) + 1)))
        for r in part_rows:
            marks = []
            for test in part_tests:
                named, failed = test.id in r.named, test.id in r.failed
                marks.append("K" if named and failed else "x" if failed else "o" if named else ".")
            print(f"  {r.mutant.id:<{width}}  " + "".join(f"{m:<5}" for m in marks) + f" {_status(r)}")


def _known_score(directory: Path, label: str, parts: Sequence[str], fixtures: dict, fixtures_dir: Path,
                 args: argparse.Namespace) -> tuple[float, float, list[str]]:
    """(score, maximum, failed tests with their messages) of one known submission, in process or by judge.grade."""
    if args.in_process:
        earned, total, failed = _in_process_score(directory, label.replace(" ", "_"), parts, fixtures)
        return round(earned, 4), round(total, 4), [f"{name}: {message}" for name, message in failed]
    wanted = list(parts) + (["audit"] if set(parts) == set(GRADED_PARTS) else [])
    graded = _grade(directory, wanted, fixtures_dir, args.worker_user)
    failed = [f"{t['name']}: {t['output'][:300]}" for t in graded["tests"] if t["status"] != "passed"]
    return graded["score"], graded["extra_data"]["max_score"], failed


def run_seeds(args: argparse.Namespace) -> int:
    """`--seeds N`: the reference and every alternative of the selected parts must get full marks on each of N
    fixture seeds, with fresh fixtures per seed."""
    from autograder.judge import fixture_files
    from autograder.qa.mutants import write_submission
    from autograder.recording import inprocess
    from autograder.recording.alternatives import ALTERNATIVES
    from autograder.recording.record import build_fixtures

    first = inprocess.SEED if args.seed is None else args.seed
    parts = list(args.parts or GRADED_PARTS)
    alternatives = [a for a in ALTERNATIVES if set(a.parts) & set(parts)]
    scratch = Path(tempfile.mkdtemp(prefix="lm-selfcheck-seeds-"))
    os.chmod(scratch, 0o755)
    losses: list[str] = []
    redrawn = 0
    try:
        known = [("reference", write_submission((), scratch / "reference"), parts)]
        known += [(f"alternative {a.id}", write_submission(a.edits, scratch / f"alternative-{a.id}"),
                   [p for p in a.parts if p in parts]) for a in alternatives]
        print(f"{len(known)} solutions on {args.seeds} fixture seeds from {first}, parts {', '.join(parts)}"
              + (" (in process)" if args.in_process else " (graded by judge.grade)"))
        for seed in range(first, first + args.seeds):
            t0 = time.monotonic()
            redraws: dict[str, list[list[str]]] = {}
            fixtures = build_fixtures(seed, parts, redraws)
            redrawn += sum(len(r) for r in redraws.values())
            fixtures_dir = scratch / f"fixtures-{seed}"
            fixture_files.save(fixtures, fixtures_dir, seed, parts)
            lost = []
            for label, directory, graded_parts in known:
                score, maximum, failed = _known_score(directory, label, graded_parts, fixtures, fixtures_dir, args)
                if score != maximum:
                    lost.append(f"{label} {score:g} / {maximum:g}")
                    losses += [f"seed {seed}, {label}: {line}" for line in failed[:5]]
            shutil.rmtree(fixtures_dir, ignore_errors=True)
            print(f"  seed {seed}: {'ok' if not lost else 'LOSS ' + '; '.join(lost)}"
                  + (f" (redrawn: {', '.join(sorted(redraws))})" if redraws else "")
                  + f" {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{redrawn} rejected draw(s) over {args.seeds} seeds; {len(losses)} lost test(s)")
    for line in losses:
        print(f"  - {line}")
    if losses:
        return 1
    print("selfcheck passed")
    return 0


def run(args: argparse.Namespace) -> int:
    from autograder.judge.runner import KERNEL_ENVIRONMENT

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.update(KERNEL_ENVIRONMENT)  # before TensorFlow is imported: the worker's kernels build the fixtures
    if args.seeds is not None:
        if args.seeds < 1:
            print("selfcheck: --seeds must be at least 1", file=sys.stderr)
            return 2
        return run_seeds(args)
    from autograder.judge import fixture_files
    from autograder.qa.mutants import MutantError, all_mutants, write_submission
    from autograder.recording import inprocess
    from autograder.recording.alternatives import ALTERNATIVES
    from autograder.recording.record import build_fixtures

    started = time.monotonic()
    seed = inprocess.SEED if args.seed is None else args.seed
    parts = list(args.parts or GRADED_PARTS)
    mutants = [m for m in all_mutants() if set(m.parts) & set(parts)]
    if args.mutants:
        unknown = set(args.mutants) - {m.id for m in all_mutants()}
        if unknown:
            print(f"selfcheck: unknown mutants {sorted(unknown)}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.id in args.mutants]
    alternatives = [a for a in ALTERNATIVES if set(a.parts) & set(parts)]
    needed = sorted({p for m in mutants for p in m.parts} | {p for a in alternatives for p in a.parts} | set(parts),
                    key=GRADED_PARTS.index)
    surprises: list[str] = []
    if args.public == "only":
        surprises += _public_surprises(mutants, alternatives, args)
        return _report(surprises, started)

    t0 = time.monotonic()
    fixtures = build_fixtures(seed, needed)
    print(f"fixtures for {', '.join(needed)} (seed {seed}) built in {time.monotonic() - t0:.1f} s")
    scratch = Path(tempfile.mkdtemp(prefix="lm-selfcheck-"))
    os.chmod(scratch, 0o755)
    fixtures_dir = scratch / "fixtures"
    fixture_files.save(fixtures, fixtures_dir, seed, needed)
    try:
        # ------------------------------------------------------------ reference, stencil, alternatives
        reference = write_submission((), scratch / "reference")
        stencil = scratch / "stencil"
        _write_stencil(stencil)
        known = [("reference", reference, needed, "full"), ("stencil", stencil, needed, "zero")]
        for alternative in alternatives:
            try:
                directory = write_submission(alternative.edits, scratch / f"alternative-{alternative.id}")
            except MutantError as exc:
                surprises.append(f"alternative {alternative.id}: {exc}")
                continue
            known.append((f"alternative {alternative.id}", directory, list(alternative.parts), "full"))
        print("\nKnown submissions" + (" (in process)" if args.in_process else " (graded by judge.grade)"))
        for label, directory, graded_parts, expected in known:
            t0 = time.monotonic()
            if args.in_process:
                earned, total, failed = _in_process_score(directory, label.replace(" ", "_"), graded_parts, fixtures)
                score, maximum = round(earned, 4), round(total, 4)
                details = [f"{name}: {message}" for name, message in failed]
            else:
                wanted = list(graded_parts) + (["audit"] if set(graded_parts) == set(GRADED_PARTS) else [])
                graded = _grade(directory, wanted, fixtures_dir, args.worker_user)
                score, maximum = graded["score"], graded["extra_data"]["max_score"]
                details = [f"{t['name']}: {t['output'][:300]}" for t in graded["tests"]
                           if (t["status"] == "passed") == (expected == "zero")]
            ok = score == maximum if expected == "full" else score == 0
            print(f"  {'ok  ' if ok else 'FAIL'} {label}: {score:g} / {maximum:g} (expected {expected} marks, "
                  f"{time.monotonic() - t0:.1f} s)")
            if not ok:
                surprises.append(f"{label}: {score:g} / {maximum:g}, expected {expected} marks")
                for line in details[:10]:
                    print(f"         {line}")

        # ------------------------------------------------------------ mutants
        t0 = time.monotonic()
        # --full grades one mutant at a time: after a crash the judge kills every process of its worker user,
        # which concurrent gradings with the same user would share.
        jobs = 1 if args.full else args.jobs
        rows = _mutant_rows(mutants, fixtures, jobs, scratch=scratch, full=args.full, fixtures_dir=fixtures_dir,
                            worker_user=args.worker_user)
        mutant_seconds = time.monotonic() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    tests = inprocess.hidden_tests(needed)
    _print_matrix(rows, tests)
    for r in rows:
        if r.surprise:
            surprises.append(f"mutant {r.mutant.id}: {r.surprise}")
    print(f"\nTotals: {sum(r.killed for r in rows)} of {len(rows)} mutants killed by a named test; "
          f"{len(alternatives)} alternatives; mutants {mutant_seconds:.0f} s")
    if args.public == "yes":
        surprises += _public_surprises(mutants, alternatives, args)
    return _report(surprises, started)


def _report(surprises: list[str], started: float) -> int:
    """Print the surprises (exit status 1) or that the self-check passed (0), and the total time."""
    print(f"\nselfcheck took {time.monotonic() - started:.0f} s")
    if surprises:
        print(f"\n{len(surprises)} surprise(s):")
        for line in surprises:
            print(f"  - {line}")
        return 1
    print("selfcheck passed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder selfcheck", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
