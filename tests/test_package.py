"""How the reference package's modules depend on each other: no import cycle, part 5's train.py is needed only by
the training command (a student's broken train.py must not break generating text or loading a run), no student module
is or imports a command, and `python -m assignment.trainer` runs each module once."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from import_graph import import_graph

from autograder.parts import MODULES
from tools.make_stencil import collect_markers

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "assignment"


GRAPH = {module.split(".", 1)[1]: {target.split(".", 1)[1] for target in targets if "." in target}
         for module, targets in import_graph(PACKAGE).items() if "." in module}
"""{module: the package's modules it imports, anywhere in it} (the package's __init__ left out); the kit's
import-cycle test covers this package too."""

STUDENT_MODULES = sorted({Path(marker.path).stem for marker in collect_markers(PACKAGE)})
"""The modules that hold solution blocks (the student's: preprocess, rnn, lstm, samplers, transformer, train)."""

COMMANDS = {"cli", "baseline", "finetuner", "generate", "submit", "trainer"}
"""The given command modules (`python -m assignment.NAME`) and what their command lines share."""


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for target in GRAPH[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def _has_main_block(module: str) -> bool:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    return any(isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) for node in tree.body)


@pytest.mark.parametrize("module", ["generate", "runs", "models", *(m for m in MODULES if m != "train")])
def test_only_the_train_command_needs_train(module):
    assert "train" not in reachable(module)


def test_the_student_modules_are_the_five_parts():
    assert STUDENT_MODULES == sorted(MODULES)  # the parts table's


@pytest.mark.parametrize("module", STUDENT_MODULES)
def test_no_student_module_is_or_imports_a_command(module):
    """A student module that holds a command runs twice under `python -m` when the command's imports lead back to it
    (train.py as __main__ -> the command -> loop -> train.py again, imported under its package name)."""
    assert not _has_main_block(module)
    assert not reachable(module) & COMMANDS


def test_the_commands_are_the_modules_with_a_main_block():
    assert {module for module in GRAPH if _has_main_block(module)} == COMMANDS - {"cli"}


COUNT_EXECUTIONS = textwrap.dedent("""\
    import atexit, json, os, sys

    _folder, _report = os.environ["COUNT_UNDER"], os.environ["COUNT_TO"]
    _counts = {}


    def _count(event, args):
        if event == "exec" and getattr(args[0], "co_filename", "").startswith(_folder):
            name = os.path.relpath(args[0].co_filename, _folder)
            _counts[name] = _counts.get(name, 0) + 1


    def _write():
        with open(_report, "w") as report:
            json.dump(_counts, report)


    sys.addaudithook(_count)
    atexit.register(_write)
""")
"""A sitecustomize.py that counts the executions of each module of a folder (CPython's "exec" audit event: once per
import, and once for the module `python -m` runs as __main__) and writes {file: count} as JSON at exit."""


@pytest.mark.parametrize("package", ["assignment", "stencil"])
def test_the_training_command_runs_each_module_once(package, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(COUNT_EXECUTIONS, encoding="utf-8")
    report = tmp_path / "executions.json"
    env = {**os.environ, "PYTHONPATH": str(hook), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1",
           "COUNT_UNDER": str(ROOT / package) + os.sep, "COUNT_TO": str(report)}
    done = subprocess.run([sys.executable, "-m", f"{package}.trainer", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith(f"usage: python -m {package}.trainer"), done.stderr
    counts = json.loads(report.read_text(encoding="utf-8"))
    assert {"__init__.py", "trainer.py", "train.py", "loop.py"} <= set(counts), counts
    assert {name: count for name, count in counts.items() if count != 1} == {}


def test_a_syntax_error_in_train_breaks_neither_generate_nor_loading_a_run(tmp_path):
    """As a student's package with a half-written train.py: the run directory comes from the intact reference."""
    from assignment import trainer

    text = tmp_path / "fables.txt"
    text.write_text("".join(f"{i}: the fox met the crow by the river.\n" for i in range(200)), encoding="utf-8")
    run = tmp_path / "run"
    argv = ["--model", "rnn", "--embed-dim", "8", "--hidden-dim", "8", "--text", str(text), "--splits-dir",
            str(tmp_path / "splits"), "--out", str(run), "--steps", "1", "--batch-size", "2", "--context-length", "8",
            "--eval-batches", "1", "--sample-tokens", "0"]
    assert trainer.main(argv) == 0
    shutil.copytree(PACKAGE, tmp_path / "student" / "assignment", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "student" / "assignment" / "train.py").write_text("def sequence_loss(labels, logits:\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    commands = {
        "generate": [sys.executable, "-m", "assignment.generate", "--checkpoint", str(run), "--prompt", "3: the",
                     "--max-new-tokens", "5"],
        "load_run": [sys.executable, "-c", "from assignment import runs; "
                     f"print(runs.__file__, runs.load_run({str(run)!r})[2]['model'])"],
        "trainer": [sys.executable, "-m", "assignment.trainer", "--help"],
    }
    done = {name: subprocess.run(command, cwd=tmp_path / "student", env=env, capture_output=True, text=True)
            for name, command in commands.items()}
    assert done["generate"].returncode == 0 and done["generate"].stdout.startswith("3: the"), done["generate"].stderr
    assert done["load_run"].returncode == 0, done["load_run"].stderr
    assert done["load_run"].stdout == f"{tmp_path / 'student' / 'assignment' / 'runs.py'} rnn\n"
    assert done["trainer"].returncode != 0 and "SyntaxError" in done["trainer"].stderr
