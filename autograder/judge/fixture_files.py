"""Fixture files: `fixtures.npz` (every array) and `fixtures.json` (every other value, plus the build's metadata).

Written at build time by `python -m autograder fixtures` (which runs `autograder.recording.record.build_fixtures` with
the reference solution and TensorFlow); read by the judge with numpy and json only (`allow_pickle=False`). `ensure` runs
that command when `grade` or `grade-all` finds no fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ARRAYS = "fixtures.npz"
VALUES = "fixtures.json"
ROOT = Path(__file__).resolve().parents[2]


def save(fixtures: dict[str, Any], out_dir: Path, seed: int, parts: Sequence[str]) -> None:
    """Write the fixtures of `parts`, built with `seed`, to `out_dir` (created; files readable by the owner only)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in fixtures.items() if isinstance(v, np.ndarray)}
    values = {k: v for k, v in fixtures.items() if not isinstance(v, np.ndarray)}
    bad = [k for k, v in arrays.items() if v.dtype.kind not in "biuf"]
    if bad:
        raise ValueError(f"fixtures with unsupported array dtypes: {bad}")
    document = {"meta": {"seed": int(seed), "parts": list(parts), "created": time.strftime("%Y-%m-%d %H:%M:%S")},
                "values": values}
    old_umask = os.umask(0o077)
    try:
        with open(out_dir / ARRAYS, "wb") as f:
            np.savez(f, **arrays)
        (out_dir / VALUES).write_text(json.dumps(document, allow_nan=False), encoding="utf-8")
    finally:
        os.umask(old_umask)


def load(fixtures_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fixtures, meta) from `fixtures_dir`; meta has "seed", "parts" and "created"."""
    document = json.loads((fixtures_dir / VALUES).read_text(encoding="utf-8"))
    fixtures: dict[str, Any] = dict(document["values"])
    with np.load(fixtures_dir / ARRAYS, allow_pickle=False) as npz:
        for key in npz.files:
            fixtures[key] = npz[key]
    return fixtures, document["meta"]


def exists(fixtures_dir: Path) -> bool:
    return (fixtures_dir / VALUES).is_file() and (fixtures_dir / ARRAYS).is_file()


def ensure(fixtures_dir: Path, parts: Sequence[str] | None) -> None:
    """Build fixtures in `fixtures_dir` when none exist yet, with a random seed, in a subprocess
    (`python -m autograder fixtures`, which imports TensorFlow and the reference; the judge does not)."""
    if exists(fixtures_dir):
        return
    print(f"no fixtures in {fixtures_dir}: building them with a random seed ...", file=sys.stderr)
    command = [sys.executable, "-m", "autograder", "fixtures", "--out", str(fixtures_dir)]
    if parts:
        command += ["--parts", *[p for p in parts if p != "audit"]]
    subprocess.run(command, cwd=ROOT, check=True)
