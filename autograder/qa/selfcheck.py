"""`python -m autograder selfcheck`: prove the hidden tests on known submissions and print the kill matrix.

1. The reference solution must get full marks and the untouched stencil (generated from it) zero, both graded by
   `judge.grade` exactly as a student submission is (worker process, fixtures files, points.json).
2. Every alternative correct solution (`autograder.build.routes`) must get full marks on its parts, also through
   `judge.grade`.
3. Every mutant (`autograder.qa.mutants`) must fail at least one of the hidden tests named for it (by id). Mutants run
   in this process, TensorFlow imported once, each against the tests of the parts it touches, spread over `--jobs`
   processes (`--full` grades each one through `judge.grade` instead, which is slower).

With `--seeds N` it checks fairness over fixture seeds instead: for each of N seeds (`--seed`, `--seed` + 1, ...) it
records fresh fixtures and grades the reference and every alternative on them (through `judge.grade`, or in this
process with `--in-process`); any lost point is a surprise.

Exits 1 on any surprise (and 2 on bad arguments), so that CI can run it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
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

from autograder.parts import GRADED

ROOT = Path(__file__).resolve().parents[2]
GRADED_PARTS = GRADED


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


def _write_stencil(target: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_stencil.py"), "--target", str(target)], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)


def _grade(directory: Path, parts: Sequence[str] | None, fixtures_dir: Path, worker_user: str) -> dict:
    from autograder.judge import grade

    return grade(directory, parts, fixtures_dir=fixtures_dir, worker_user=None if worker_user == "none" else
                 worker_user)


def _in_process_score(directory: Path, label: str, parts: Sequence[str], fixtures: dict) -> tuple[float, float, list]:
    """(passed weight, total weight, failures) of the hidden tests of `parts` run in this process."""
    from autograder.build import inprocess
    from autograder.qa.mutants import PackageSubmission

    tests = inprocess.hidden_tests(parts)
    outcomes = inprocess.run_tests(tests, fixtures, PackageSubmission(directory, label))
    weights = {t.name: t.weight for t in tests}
    earned = sum(weights[o.test] * o.score for o in outcomes)
    failed = [(o.test, o.message) for o in outcomes if not o.passed]
    return earned, sum(weights.values()), failed


def _mutant_row(mutant, fixtures: dict, scratch: Path, full: bool, fixtures_dir: Path | None,
                worker_user: str) -> MutantResult:
    from autograder.build import inprocess
    from autograder.qa.mutants import MutantError, PackageSubmission, write_submission

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
            outcomes = inprocess.run_tests(inprocess.hidden_tests(mutant.parts), fixtures,
                                         PackageSubmission(directory, mutant.id))
            result.ran = [o.id for o in outcomes]
            result.failed = {o.id for o in outcomes if not o.passed}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    return result


_POOL_FIXTURES: dict = {}
"""The fixtures in a mutant process of the pool, set once by its initializer."""


def _set_pool_fixtures(fixtures: dict) -> None:
    _POOL_FIXTURES.update(fixtures)


def _pool_mutant_row(mutant, **kwargs) -> MutantResult:
    return _mutant_row(mutant, _POOL_FIXTURES, **kwargs)


def _mutant_rows(mutants: list, fixtures: dict, jobs: int, **kwargs) -> list[MutantResult]:
    """The kill-matrix rows of `mutants`, in order, run in `jobs` fresh processes (in this one when jobs <= 1)."""
    if jobs <= 1 or len(mutants) < 2:
        return [_mutant_row(m, fixtures, **kwargs) for m in mutants]
    context = multiprocessing.get_context("spawn")  # no fork of a process that has TensorFlow's threads
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_set_pool_fixtures,
                                                initargs=(fixtures,)) as pool:
        return list(pool.map(functools.partial(_pool_mutant_row, **kwargs), mutants))


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
    from autograder.build import inprocess
    from autograder.build.record import build_fixtures
    from autograder.build.routes import ALTERNATIVES
    from autograder.judge import fixture_files
    from autograder.qa.mutants import write_submission

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
    from autograder.build import inprocess
    from autograder.build.record import build_fixtures
    from autograder.build.routes import ALTERNATIVES
    from autograder.judge import fixture_files
    from autograder.qa.mutants import MutantError, all_mutants, write_submission

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
          f"{len(alternatives)} alternatives; mutants {mutant_seconds:.0f} s, "
          f"total {time.monotonic() - started:.0f} s")
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
