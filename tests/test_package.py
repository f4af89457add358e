"""How the reference package's modules depend on each other: no import cycle, and part 5's train.py is needed only by
the train command (a student's broken train.py must not break generating text or loading a run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from import_graph import import_graph

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "assignment"


GRAPH = {module.split(".", 1)[1]: {target.split(".", 1)[1] for target in targets if "." in target}
         for module, targets in import_graph(PACKAGE).items() if "." in module}
"""{module: the package's modules it imports, outside `__main__` blocks} (the package's __init__ left out); the kit's
import-cycle test covers this package too."""

def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for target in GRAPH[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


@pytest.mark.parametrize("module", ["generate", "runs", "models", "preprocess", "rnn", "lstm", "samplers",
                                    "transformer"])
def test_only_the_train_command_needs_train(module):
    assert "train" not in reachable(module)


def test_a_syntax_error_in_train_breaks_neither_generate_nor_loading_a_run(tmp_path):
    """As a student's package with a half-written train.py: the run directory comes from the intact reference."""
    from assignment import cli_train

    text = tmp_path / "fables.txt"
    text.write_text("".join(f"{i}: the fox met the crow by the river.\n" for i in range(200)), encoding="utf-8")
    run = tmp_path / "run"
    argv = ["--model", "rnn", "--embed-dim", "8", "--hidden-dim", "8", "--text", str(text), "--splits-dir",
            str(tmp_path / "splits"), "--out", str(run), "--steps", "1", "--batch-size", "2", "--context-length", "8",
            "--eval-batches", "1", "--sample-tokens", "0"]
    assert cli_train.main(argv) == 0
    shutil.copytree(PACKAGE, tmp_path / "student" / "assignment", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "student" / "assignment" / "train.py").write_text("def sequence_loss(labels, logits:\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    commands = {
        "generate": [sys.executable, "-m", "assignment.generate", "--checkpoint", str(run), "--prompt", "3: the",
                     "--max-new-tokens", "5"],
        "load_run": [sys.executable, "-c", "from assignment import runs; "
                     f"print(runs.__file__, runs.load_run({str(run)!r})[2]['model'])"],
        "train": [sys.executable, "-m", "assignment.train", "--help"],
    }
    done = {name: subprocess.run(command, cwd=tmp_path / "student", env=env, capture_output=True, text=True)
            for name, command in commands.items()}
    assert done["generate"].returncode == 0 and done["generate"].stdout.startswith("3: the"), done["generate"].stderr
    assert done["load_run"].returncode == 0, done["load_run"].stderr
    assert done["load_run"].stdout == f"{tmp_path / 'student' / 'assignment' / 'runs.py'} rnn\n"
    assert done["train"].returncode != 0 and "SyntaxError" in done["train"].stderr
