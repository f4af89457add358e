"""Set up the Gradescope zip as Gradescope does and grade the reference: time and memory of each step.

    sudo python -m bench.bench_gradescope [--python /usr/bin/python3] [--root DIR] [--keep]

Builds the zip, unpacks it into a fresh autograder root (AUTOGRADER_ROOT, default a new folder under /tmp), runs its
`setup.sh` unmodified (virtual environment, worker user, fixtures) and then `run_autograder` on the reference's
modules, and prints the wall and CPU time of both and the peak memory of the judge and the worker during grading
(from results.json's extra_data). Needs root, as on Gradescope.
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
import zipfile
from pathlib import Path

from assignment.submit import REQUIRED_FILES

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the command and its children, result)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"{command[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, cpu, done


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gradescope", description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="/usr/bin/python3", help="interpreter setup.sh makes the environment from")
    parser.add_argument("--root", type=Path, default=None, help="autograder root (default: a new folder under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the autograder root")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: setup.sh creates a user and run_autograder drops to it, as on Gradescope")
    root = args.root or Path(tempfile.mkdtemp(prefix="lmkit-gradescope-"))
    os.chmod(root, 0o755)
    archive = root / "autograder.zip"
    subprocess.run([sys.executable, "-m", "autograder", "build", "--out", str(archive)], cwd=ROOT, check=True,
                   capture_output=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            zf.extract(info, root / "source")
            os.chmod(root / "source" / info.filename, (info.external_attr >> 16) & 0o777 or 0o644)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "AUTOGRADER_ROOT": str(root), "LMKIT_PYTHON": args.python}
    setup_wall, setup_cpu, _ = timed(["bash", "./setup.sh"], cwd=root / "source", env=env)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    for name in REQUIRED_FILES:
        shutil.copy2(ROOT / "assignment" / name, root / "submission" / name)
    grade_wall, grade_cpu, _ = timed([str(root / "run_autograder")], cwd=root, env=env)
    results = json.loads((root / "results" / "results.json").read_text())
    extra = results["extra_data"]
    python = subprocess.run([str(root / "lmkit-venv" / "bin" / "python"), "--version"], capture_output=True,
                            text=True).stdout.strip()
    print(f"set-up interpreter     {args.python} ({python})")
    print(f"setup.sh               {setup_wall:6.1f} s wall, {setup_cpu:6.1f} s CPU")
    print(f"run_autograder         {grade_wall:6.1f} s wall, {grade_cpu:6.1f} s CPU (Gradescope: 600 s wall)")
    print(f"score                  {results['score']:g} / {extra['max_score']:g} (status {extra['status']})")
    print(f"peak RSS               judge {extra['judge_peak_rss_mb']:.0f} MB + worker "
          f"{extra['worker']['peak_rss_mb']:.0f} MB = "
          f"{extra['judge_peak_rss_mb'] + extra['worker']['peak_rss_mb']:.0f} MB (Gradescope: 768 MB)")
    print(f"worker private memory  {extra['worker']['peak_private_mb']:.0f} MB (watchdog at 400 MB)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
