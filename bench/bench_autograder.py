"""Benchmark: a full grade of the reference solution, with the autograder's CPU and memory budget.

    python -m bench.bench_autograder [--fixtures DIR] [--parts P ...]

Builds fixtures (random seed) in a temporary directory unless --fixtures is given, then grades a copy of assignment/
in a fresh process and prints the wall time, the CPU seconds of the judge (RUSAGE_SELF) and of the worker
(RUSAGE_CHILDREN), and the peak resident set of each. The budget (Gradescope's default container) is 60 CPU-seconds
and 768 MB for judge + worker together.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_BUDGET_S = 60.0
MEMORY_BUDGET_MB = 768.0


def measure(submission: Path, fixtures: Path, parts: list[str] | None) -> dict:
    """Grade in this process (the judge); the worker is a child, so RUSAGE_CHILDREN covers it once it has exited."""
    from autograder.judge import grade

    start = time.monotonic()
    results = grade(submission, parts, fixtures_dir=fixtures)
    wall = time.monotonic() - start
    judge = resource.getrusage(resource.RUSAGE_SELF)
    worker = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "score": results["score"], "max_score": results["extra_data"]["max_score"], "wall_s": wall,
        "judge_cpu_s": judge.ru_utime + judge.ru_stime, "worker_cpu_s": worker.ru_utime + worker.ru_stime,
        "judge_peak_rss_mb": judge.ru_maxrss / 1024, "worker_peak_rss_mb": worker.ru_maxrss / 1024,
        "worker_starts": results["extra_data"]["worker"]["starts"],
        "worker_peak_private_mb": results["extra_data"]["worker"]["peak_private_mb"],
        "failed": [t["name"] for t in results["tests"] if t["status"] != "passed"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_autograder", description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=None, help="existing fixtures directory")
    parser.add_argument("--parts", nargs="+", default=None, help="only these parts (default: all with points)")
    parser.add_argument("--measure", nargs=2, metavar=("SUBMISSION", "FIXTURES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), Path(args.measure[1]), args.parts)))
        return 0

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fixtures = args.fixtures
        if fixtures is None:
            fixtures = tmp / "fixtures"
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-m", "autograder", "fixtures", "--out", str(fixtures)], cwd=ROOT,
                           env=env, check=True, stdout=subprocess.DEVNULL)
            print(f"fixtures built in {time.monotonic() - t0:.1f} s (not part of the grading budget)")
        submission = tmp / "submission"
        submission.mkdir()
        for path in (ROOT / "assignment").glob("*.py"):
            shutil.copy(path, submission)
        command = [sys.executable, "-m", "bench.bench_autograder", "--measure", str(submission), str(fixtures)]
        if args.parts:
            command += ["--parts", *args.parts]
        out = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    m = json.loads(out.strip().splitlines()[-1])
    cpu = m["judge_cpu_s"] + m["worker_cpu_s"]
    rss = m["judge_peak_rss_mb"] + m["worker_peak_rss_mb"]
    print(f"score                  {m['score']:g} / {m['max_score']:g}   failed tests: {m['failed'] or 'none'}")
    print(f"wall time              {m['wall_s']:.1f} s   (worker started {m['worker_starts']} time(s))")
    print(f"CPU judge / worker     {m['judge_cpu_s']:.1f} s / {m['worker_cpu_s']:.1f} s   total {cpu:.1f} s "
          f"(budget {CPU_BUDGET_S:g} s)")
    print(f"peak RSS judge/worker  {m['judge_peak_rss_mb']:.0f} MB / {m['worker_peak_rss_mb']:.0f} MB   sum "
          f"{rss:.0f} MB (budget {MEMORY_BUDGET_MB:g} MB)")
    print(f"worker private memory  {m['worker_peak_private_mb']:.0f} MB peak (anonymous pages; the watchdog's measure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
