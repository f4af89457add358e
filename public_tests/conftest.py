"""Fixtures of the public tests: each part's module of the package under test.

The package is `stencil` (your code) unless the environment variable LM_PACKAGE names another one. Run the tests from
the folder that contains `stencil/`:

    python -m pytest public_tests
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The autograder's kernels: without oneDNN, TensorFlow's CPU results do not depend on the CPU. Set before TensorFlow is
# imported, so your results here are those of the grader (for one, tf.nn.softmax can then give equal logits slightly
# different float32 probabilities at different positions of a row).
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
PACKAGE = os.environ.get("LM_PACKAGE", "stencil")
importlib.import_module(PACKAGE)  # first: its __init__ keeps TensorFlow's start-up lines off the console


def _module_fixture(name: str):
    @pytest.fixture(scope="session", name=name)
    def module() -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.{name}")

    return module


# One fixture per module of the package, named after it (`preprocess`, `samplers`, ...).
for _path in sorted(Path(importlib.import_module(PACKAGE).__file__).parent.glob("*.py")):
    globals()[f"_{_path.stem}_module"] = _module_fixture(_path.stem)
