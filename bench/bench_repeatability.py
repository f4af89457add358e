"""Repeatability of the statistical sampler tests and their false-failure bound.

1. Runs the hidden chi-square and seed tests of the samplers part many times on correct solutions (the reference and
   the sort-free alternative), each run with other draw seeds, and counts the failures per test (expected: 0).
2. Simulates the judge's goodness-of-fit statistic under the exact distribution of every hidden draw setting
   (multinomial counts, the judge's cell pooling) and compares the empirical false-failure rate with the nominal level
   at several alphas, down to the tests' ALPHA, whose per-test bound is 2 * ALPHA (two comparisons per test at most).
3. Grades the same submission twice in process and checks the outcomes are identical.

    python -m bench.bench_repeatability [--runs 1000] [--simulations 1000000] [--seed 1234]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STATISTICAL_TESTS = ("samplers.temperature_distribution", "samplers.top_k_distribution", "samplers.top_p_distribution",
                     "samplers.seed")
"""Ids of the hidden tests whose outcome depends on the draw seeds."""


def sampler_failures(runs: int, seed: int) -> None:
    from autograder.qa.mutants import PackageSubmission, write_submission
    from autograder.recording import inprocess
    from autograder.recording.alternatives import SORT_FREE_SAMPLERS
    from autograder.recording.record import build_fixtures

    fixtures = build_fixtures(seed, parts=["samplers"])
    tests = inprocess.matching(inprocess.hidden_tests(["samplers"]), STATISTICAL_TESTS)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        solutions = {
            "reference": PackageSubmission(write_submission((), Path(tmp) / "reference"), "reference"),
            "sort-free-samplers": PackageSubmission(
                write_submission(SORT_FREE_SAMPLERS.edits, Path(tmp) / "alternative"), "alternative"),
        }
        print(f"1. statistical sampler tests, {runs} runs per test and solution, fresh draw seeds each run")
        for label, sub in solutions.items():
            failures = dict.fromkeys(STATISTICAL_TESTS, 0)
            started = time.perf_counter()
            for _ in range(runs):
                fx = copy.copy(fixtures)
                for key in [k for k in fixtures if k.endswith("/settings")]:  # each test's recorded settings
                    fx[key] = copy.deepcopy(fixtures[key])
                    for setting in fx[key].values():
                        setting["seed"] = int(rng.integers(0, 2**31 - 2))
                ctx = inprocess.InProcessContext(fx, sub, seed=int(rng.integers(0, 2**31 - 1)))
                for test_id, test in zip(STATISTICAL_TESTS, tests, strict=True):
                    if not inprocess.run_test(test, ctx).passed:
                        failures[test_id] += 1
            seconds = time.perf_counter() - started
            for test_id, count in failures.items():
                print(f"   {label:20s} {test_id:34s} {count} failures in {runs} runs")
            print(f"   ({seconds:.0f} s)")


def simulated_false_failures(simulations: int, seed: int) -> None:
    from scipy import stats

    from autograder.judge.hidden.oracles import merge_sparse_cells
    from autograder.judge.hidden.samplers import ALPHA, MIN_EXPECTED, NUM_DRAWS
    from autograder.recording.record import build_fixtures

    fixtures = build_fixtures(seed, parts=["samplers"])
    rng = np.random.default_rng(seed + 1)
    alphas = [1e-2, 1e-3, 1e-4, 1e-5, ALPHA]
    print(f"\n2. simulated goodness-of-fit under the exact law: {simulations} runs of {NUM_DRAWS} draws per setting")
    print("   setting              cells  " + "  ".join(f"rate@{a:g}".rjust(14) for a in alphas))
    recorded = {key.rsplit("/", 1)[1]: value for key, value in fixtures.items() if "/probs/" in key}
    for name, probs in recorded.items():
        possible = probs > 0
        # The pooling depends on the expected counts only: find each cell's group once, then pool every sample.
        expected = NUM_DRAWS * probs[possible]
        order = np.argsort(expected, kind="stable")
        groups = np.zeros(expected.size, dtype=int)
        group, acc = 0, 0.0
        for i in order:
            groups[i] = group
            acc += expected[i]
            if acc >= MIN_EXPECTED:
                group, acc = group + 1, 0.0
        if acc > 0 and group > 0:
            groups[groups == group] = group - 1
        pooled_expected = np.bincount(groups, weights=expected)
        check, _ = merge_sparse_cells(np.zeros(expected.size), expected, MIN_EXPECTED)
        assert len(check) == len(pooled_expected), "pooling differs from the judge's"
        rejected = np.zeros(len(alphas), dtype=np.int64)
        done = 0
        while done < simulations:
            n = min(200_000, simulations - done)
            counts = rng.multinomial(NUM_DRAWS, probs[possible] / probs[possible].sum(), size=n)
            pooled = counts @ np.eye(len(pooled_expected))[groups]  # [n, cells] -> [n, pooled cells]
            statistic = ((pooled - pooled_expected) ** 2 / pooled_expected).sum(axis=1)
            p_values = stats.chi2.sf(statistic, df=len(pooled_expected) - 1)
            rejected += (p_values[:, None] < np.asarray(alphas)[None, :]).sum(axis=0)
            done += n
        rates = "  ".join(f"{r / simulations:14.2e}" for r in rejected)
        print(f"   {name:20s} {len(pooled_expected):5d}  {rates}")
    upper = 3.0 / simulations  # 95% upper bound on a rate when 0 of `simulations` runs fail
    print(f"   nominal: the rate at each alpha should be close to alpha; at alpha = {ALPHA:g} a count of 0 bounds the "
          f"rate by {upper:.1e} (95%)")
    print(f"   per-test false-failure bound: at most 2 comparisons * {ALPHA:g} = {2 * ALPHA:g}")


def same_result_twice(seed: int) -> None:
    from autograder.qa.mutants import PackageSubmission, write_submission
    from autograder.recording import inprocess
    from autograder.recording.record import build_fixtures

    parts = ["preprocess", "samplers", "train"]
    fixtures = build_fixtures(seed, parts=parts)
    with tempfile.TemporaryDirectory() as tmp:
        directory = write_submission((), Path(tmp) / "reference")
        runs = [[(o.test, o.score, o.message) for o in
                 inprocess.run_tests(inprocess.hidden_tests(parts), fixtures, PackageSubmission(directory, f"run{i}"))]
                for i in range(2)]
    print(f"\n3. grading the reference twice in process ({len(runs[0])} tests): "
          f"{'identical' if runs[0] == runs[1] else 'DIFFERENT'} outcomes")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_repeatability", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs of each statistical test per solution")
    parser.add_argument("--simulations", type=int, default=1_000_000, help="simulated tests per draw setting")
    parser.add_argument("--seed", type=int, default=1234, help="fixture seed")
    args = parser.parse_args()
    sampler_failures(args.runs, args.seed)
    simulated_false_failures(args.simulations, args.seed)
    same_result_twice(args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
