"""Fairness of the hidden tests over fixture seeds: how often a correct solution loses a test, with and without the
redraw of the fixtures build.

For each of `--seeds` fixture seeds it records the fixtures of `--parts` as a course's setup.sh does (each test
recorded against the reference and replayed against every alternative correct solution of its part, its hidden values
drawn again when one fails), then grades the reference and every alternative of those parts in this process on the
recorded fixtures. It prints, per test and solution, the false failures:

- without the redraw: the solutions that failed the first draw of the test's values (the draw a build without the
  redraw records: each test's generator is seeded by the fixture seed and the test id alone for its first draw);
- with the redraw: the solutions that fail the kept fixtures when graded afterwards (expected: 0).

and the number of rejected draws; a line per seed as it goes (its redraws, any failure, the time so far). The
worker's kernels (TF_ENABLE_ONEDNN_OPTS=0) are set before TensorFlow is imported, as setup.sh records.

    python -m bench.bench_fairness [--seeds 100] [--first-seed 1] [--parts samplers train]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from autograder.judge.runner import KERNEL_ENVIRONMENT

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.update(KERNEL_ENVIRONMENT)  # before TensorFlow is imported: the worker's kernels


def main(argv: Sequence[str] | None = None) -> int:
    from autograder.parts import GRADED
    from autograder.recording import inprocess
    from autograder.recording.alternatives import ALTERNATIVES
    from autograder.recording.edits import PackageSubmission, write_submission
    from autograder.recording.record import build_fixtures

    parser = argparse.ArgumentParser(prog="python -m bench.bench_fairness", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="fixture seeds (default: 100)")
    parser.add_argument("--first-seed", type=int, default=1, help="the first fixture seed (default: 1)")
    parser.add_argument("--parts", nargs="+", choices=GRADED, default=["samplers"],
                        help="parts to record and grade (default: samplers, the seed-sensitive part)")
    args = parser.parse_args(argv)

    alternatives = [a for a in ALTERNATIVES if set(a.parts) & set(args.parts)]
    tests = inprocess.hidden_tests(args.parts)
    without: collections.Counter = collections.Counter()  # (test id, label) -> seeds failed on the first draw
    with_redraw: collections.Counter = collections.Counter()  # (test id, label) -> seeds failed on the kept draw
    rejected_draws: collections.Counter = collections.Counter()  # test id -> rejected draws over all seeds
    redrawn_seeds = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lm-fairness-") as tmp:
        solutions = [("reference", args.parts, PackageSubmission(write_submission((), Path(tmp) / "ref"), "ref"))]
        solutions += [(f"alternative {a.id}", [p for p in a.parts if p in args.parts],
                       PackageSubmission(write_submission(a.edits, Path(tmp) / a.id), a.id)) for a in alternatives]
        print(f"{len(solutions)} solutions ({', '.join(label for label, _, _ in solutions)}), parts "
              f"{', '.join(args.parts)}, fixture seeds {args.first_seed} .. {args.first_seed + args.seeds - 1}",
              flush=True)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            redraws: dict[str, list[list[str]]] = {}
            fixtures = build_fixtures(seed, args.parts, redraws)
            redrawn_seeds += bool(redraws)
            for test_id, rejected in redraws.items():
                rejected_draws[test_id] += len(rejected)
                for label in rejected[0]:
                    without[test_id, label] += 1
            for label, parts, submission in solutions:
                part_tests = [t for t in tests if t.part in parts]
                for outcome in inprocess.run_tests(part_tests, fixtures, submission, seed):
                    if not outcome.passed:
                        with_redraw[outcome.id, label] += 1
                        print(f"  seed {seed}: {label} fails {outcome.id}: {outcome.message}", flush=True)
            if redraws:
                print(f"  seed {seed}: redrawn {', '.join(f'{k} x{len(v)}' for k, v in redraws.items())}",
                      flush=True)
            print(f"  seed {seed} done, {time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started

    print(f"\nFalse failures over {args.seeds} fixture seeds (seeds on which a correct solution fails the test)")
    rows = sorted(set(without) | set(with_redraw))
    width = max([len(f"{t}  {label}") for t, label in rows] + [30])
    print(f"  {'test  solution':<{width}}  without redraw  with redraw")
    for test_id, label in rows:
        print(f"  {f'{test_id}  {label}':<{width}}  {without[test_id, label]:>14d}  "
              f"{with_redraw[test_id, label]:>11d}")
    print(f"  {'every test, every solution':<{width}}  {sum(without.values()):>14d}  {sum(with_redraw.values()):>11d}")
    print(f"\nRejected draws: {sum(rejected_draws.values())} on {redrawn_seeds} of {args.seeds} seeds"
          + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(rejected_draws.items())) + ")" if rejected_draws else ""))
    print(f"{len(tests)} tests x {len(solutions)} solutions, {seconds:.0f} s ({seconds / args.seeds:.1f} s per seed)")
    return 1 if with_redraw else 0


if __name__ == "__main__":
    sys.exit(main())
