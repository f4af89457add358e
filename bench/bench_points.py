"""Benchmark: the points each mutant of the catalog loses, graded in process as the self-check grades mutants.

    python -m bench.bench_points [--parts transformer ...] [--mutants ID ...] [--seed 1234] [--jobs 2] [--csv FILE]

Builds the fixtures of the needed parts once (seed `--seed`, the self-check's by default), then runs every mutant
(`autograder.qa.mutants`) against the hidden tests of the parts it touches, in this process or in `--jobs` spawned
processes. A test's points are its share of its part's points (the `all` course's, split by weight in hundredths as the
judge splits them); a test scoring s in [0, 1] earns s of its points. Prints one row per mutant: the points it loses
in the graded parts, the total it loses out of 100 (the audit's points scale with the fraction earned elsewhere, so
a loss of L graded points costs L * 100 / G in all, G the graded parts' points), and the tests it fails. Ends with the
mutants that lose nothing. Run it on two commits to compare how a change of tests or weights moves the points.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

def points_of_tests(parts: list[str]) -> dict[str, float]:
    """{test id: points} of the hidden tests of `parts`, split as the judge splits each part's points."""
    from autograder.judge import load_points, split_points
    from autograder.recording import inprocess

    points = load_points()
    shares: dict[str, float] = {}
    for part in parts:
        tests = inprocess.hidden_tests([part])
        if tests:
            shares.update(zip([t.id for t in tests], split_points(points[part], [t.weight for t in tests]),
                              strict=True))
    return shares


def grade_mutant(mutant, fixtures: dict, scratch: str) -> tuple[str, dict[str, float], str | None]:
    """(mutant id, {test id: score in [0, 1]} of the tests of its parts, error or None)."""
    from autograder.qa.mutants import MutantError, write_submission
    from autograder.recording import inprocess

    directory = Path(scratch) / mutant.id
    try:
        write_submission(mutant.edits, directory)
    except MutantError as exc:
        return mutant.id, {}, str(exc)
    try:
        outcomes = inprocess.run_package(directory, mutant.id, mutant.parts, fixtures)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return mutant.id, {o.id: o.score for o in outcomes}, None


def main() -> None:
    from autograder.parts import GRADED, SECTION_BY_NAME

    parser = argparse.ArgumentParser(prog="python -m bench.bench_points", description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=GRADED, default=None, help="only the mutants of these parts")
    parser.add_argument("--mutants", nargs="+", default=None, metavar="ID", help="only these mutants")
    parser.add_argument("--seed", type=int, default=None, help="fixture seed (default: the self-check's)")
    parser.add_argument("--jobs", type=int, default=2, help="processes grading mutants (1: this one)")
    parser.add_argument("--csv", default=None, help="also write mutant,lost_graded,lost_total,failed to this file")
    args = parser.parse_args()

    from autograder.judge.runner import KERNEL_ENVIRONMENT

    os.environ.update(KERNEL_ENVIRONMENT)  # before TensorFlow is imported, as the worker runs
    from autograder.judge import load_points
    from autograder.qa.mutants import all_mutants
    from autograder.recording import inprocess
    from autograder.recording.record import build_fixtures

    mutants = [m for m in all_mutants() if args.parts is None or set(m.parts) & set(args.parts)]
    if args.mutants:
        mutants = [m for m in mutants if m.id in set(args.mutants)]
    needed = sorted({p for m in mutants for p in m.parts}, key=GRADED.index)
    started = time.monotonic()
    seed = inprocess.SEED if args.seed is None else args.seed
    fixtures = build_fixtures(seed, needed)
    print(f"fixtures for {', '.join(needed)} (seed {seed}) built in {time.monotonic() - started:.0f} s; "
          f"grading {len(mutants)} mutants with {args.jobs} process(es)", flush=True)
    shares = points_of_tests(needed)
    points = load_points()
    graded_total = sum(points[p] for p in GRADED)
    total = graded_total + sum(v for k, v in points.items() if k not in GRADED and not SECTION_BY_NAME[k].sees)

    scratch = tempfile.mkdtemp(prefix="lm-points-")
    try:
        results = inprocess.map_with_fixtures(functools.partial(grade_mutant, scratch=scratch), mutants, fixtures,
                                              args.jobs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows = []
    for mutant_id, scores, error in results:
        lost = sum(shares[t] * (1.0 - s) for t, s in scores.items())
        failed = sorted(t for t, s in scores.items() if s < 1.0)
        rows.append((mutant_id, lost, lost * total / graded_total, failed, error))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'mutant':<{width}}  graded  total  failed tests")
    for mutant_id, lost, lost_total, failed, error in rows:
        what = f"ERROR {error}" if error else ", ".join(failed)
        print(f"{mutant_id:<{width}}  {lost:6.2f}  {lost_total:5.2f}  {what}")
    survivors = [r[0] for r in rows if r[1] == 0 and not r[4]]
    print(f"\n{len(rows)} mutants in {time.monotonic() - started:.0f} s; {len(survivors)} lose no points"
          + (f": {', '.join(survivors)}" if survivors else ""))
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["mutant", "lost_graded", "lost_total", "failed"])
            for mutant_id, lost, lost_total, failed, error in rows:
                writer.writerow([mutant_id, f"{lost:.2f}", f"{lost_total:.2f}", error or " ".join(failed)])


if __name__ == "__main__":
    sys.exit(main())
