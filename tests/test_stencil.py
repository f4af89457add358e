"""The stencil generator (marker grammar, import pruning, sync check) and the generated `stencil/` package."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from autograder.course import load as load_course
from autograder.parts import BY_KEY
from tools import make_stencil
from tools.make_stencil import MarkerError, find_markers, render

ROOT = Path(__file__).resolve().parent.parent
RUFF_CONFIG = ROOT / "pyproject.toml"


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# --- marker grammar on synthetic sources -------------------------------------------------------------------------


def test_block_is_replaced_by_a_raise_at_its_indentation_keeping_docstring_and_given_code():
    source = src('''
        def gates(x, h):
            """Return the gates.

            gates = x W + h U
            """
            if x is None:
                raise ValueError("x is required")
            # BEGIN SOLUTION (part recurrent): Compute the gates from x and h.
            z = x + h
            for _ in range(2):
                z = z * 2
            return z
            # END SOLUTION
    ''')
    expected = src('''
        def gates(x, h):
            """Return the gates.

            gates = x W + h U
            """
            if x is None:
                raise ValueError("x is required")
            raise NotImplementedError("TODO(part 2): Compute the gates from x and h.")
    ''')
    assert render(source, "m.py") == expected


def test_one_line_form_replaces_a_single_statement():
    source = src("""
        class Sampler:
            def greedy(self, logits):
                return max(logits)  # SOLUTION (part samplers): Return the most likely token.
    """)
    expected = src("""
        class Sampler:
            def greedy(self, logits):
                raise NotImplementedError("TODO(part 3): Return the most likely token.")
    """)
    assert render(source, "m.py") == expected
    (marker,) = find_markers(source, "m.py")
    assert (marker.function, marker.part, marker.first, marker.last) == ("Sampler.greedy", "samplers", 3, 3)


def test_markers_name_the_innermost_function_and_keep_file_order():
    source = src("""
        class Model:
            def call(self, x):
                def helper(y):
                    # BEGIN SOLUTION (part transformer): Helper body.
                    return y
                    # END SOLUTION

                return helper(x)  # SOLUTION (part transformer): Call the helper.


        def loss(a):
            # BEGIN SOLUTION (part train): The loss.
            return a
            # END SOLUTION
    """)
    found = [(m.function, m.part, m.first, m.last) for m in find_markers(source, "m.py")]
    assert found == [("Model.call.helper", "transformer", 4, 6), ("Model.call", "transformer", 8, 8),
                     ("loss", "train", 12, 14)]


def test_long_messages_are_wrapped_within_the_line_length_and_keep_the_exact_text():
    text = " ".join(f"word{i}" for i in range(60)) + ' with "quotes" and a \\ backslash.'
    source = f"class A:\n    def f(self):\n        # BEGIN SOLUTION (part preprocess): {text}\n        return 1\n"
    source += "        # END SOLUTION\n"
    out = render(source, "m.py")
    assert max(len(line) for line in out.splitlines()) <= make_stencil.LINE_LENGTH
    namespace: dict = {}
    exec(compile(out, "m.py", "exec"), namespace)
    with pytest.raises(NotImplementedError) as info:
        namespace["A"]().f()
    assert str(info.value) == f"TODO(part 1): {text}"


def test_imports_used_only_by_solutions_are_removed_and_others_kept(tmp_path):
    source = src('''
        """Module."""

        import math
        import os
        from collections import Counter, OrderedDict, deque

        import numpy as np


        def f(x):
            """Doc."""
            if math.sqrt(x) + len(deque()) < 0:
                raise ValueError("x must be non-negative")
            # BEGIN SOLUTION (part preprocess): Use numpy and Counter.
            return np.sum(Counter(x)) + len(OrderedDict())
            # END SOLUTION
    ''')
    out = render(source, "m.py")
    tree = ast.parse(out)
    imported = {
        alias.asname or alias.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for alias in n.names
    }
    # os is unused in the reference too: that is the reference's business, not the generator's.
    assert imported == {"math", "os", "deque"}
    # The emptied numpy section leaves the two blank lines before the function, no more.
    assert out.startswith('"""Module."""\n\nimport math\nimport os\nfrom collections import deque\n\n\ndef f(x):\n')
    (tmp_path / "m.py").write_text(out.replace("import os\n", ""))
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(RUFF_CONFIG), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_files_without_markers_are_copied_verbatim_except_module_paths():
    source = 'def main():\n    """Run  `python -m assignment.trainer --help`."""\n    return 0\n'
    assert render(source, "m.py") == source.replace("assignment.trainer", "stencil.trainer")
    plain = "x = 1  # a comment about the assignment\n"
    assert render(plain, "m.py") == plain


def test_package_docstring_is_addressed_to_students():
    out = render('"""Reference solution (course staff only)."""\n\nVERSION = 1\n', "__init__.py", package_init=True)
    assert out == f'"""{make_stencil.STENCIL_DOCSTRING}"""\n\nVERSION = 1\n'


@pytest.mark.parametrize(
    "source, line, words",
    [
        ("def f():\n    # BEGIN SOLUTION (part train): Do it.\n    return 1\n", 2, "unclosed"),
        ("def f():\n    return 1\n    # END SOLUTION\n", 3, "without a matching BEGIN"),
        (
            "def f():\n    # BEGIN SOLUTION (part train): A.\n    # BEGIN SOLUTION (part train): B.\n    return 1\n"
            "    # END SOLUTION\n    # END SOLUTION\n",
            3,
            "nested",
        ),
        ("def f():\n    # BEGIN SOLUTION: Do it.\n    return 1\n    # END SOLUTION\n", 2, "missing part"),
        ("def f():\n    # BEGIN SOLUTION (part train):\n    return 1\n    # END SOLUTION\n", 2, "missing part or text"),
        ("def f():\n    # BEGIN SOLUTION (part 1): Do.\n    return 1\n    # END SOLUTION\n", 2, "malformed BEGIN"),
        ("def f():\n    # BEGIN SOLUTION (part nope): Do.\n    return 1\n    # END SOLUTION\n", 2,
         "unknown part 'nope'"),
        ("def f():\n    return 1  # SOLUTION (part train):\n", 2, "malformed one-line"),
        ("def f():\n    return 1  # SOLUTION: Do it.\n", 2, "malformed one-line"),
        ("def f():\n    pass\n    # END SOLUTION here\n", 3, "malformed END"),
        (
            "def f():\n    if True:\n        # BEGIN SOLUTION (part train): Do.\n        return 1\n"
            "    # END SOLUTION\n",
            5,
            "indented by 4 columns",
        ),
        ("def f():\n    # BEGIN SOLUTION (part train): Do.\n        return 1\n    # END SOLUTION\n", 3,
         "must start at"),
        (
            "def f():\n    if True:\n        # BEGIN SOLUTION (part train): Do.\n        x = 1\n    y = 2\n"
            "        # END SOLUTION\n",
            5,
            "indented less",
        ),
        (
            "def f():\n    # BEGIN SOLUTION (part train): Do.\n    # just a comment\n    # END SOLUTION\n    pass\n",
            2,
            "empty",
        ),
        ("# BEGIN SOLUTION (part train): Do.\nX = 1\n# END SOLUTION\n", 1, "outside a function"),
        ("X = 1  # SOLUTION (part train): Do.\n", 1, "outside a function"),
        ("def f(x):\n    if x: return 1  # SOLUTION (part train): Do.\n", 2, "single simple statement"),
        ("def f(x):\n    return g(\n        x)  # SOLUTION (part train): Do.\n", 3, "single simple statement"),
        ("def f():\n    x = 1  # BEGIN SOLUTION (part train): Do.\n    # END SOLUTION\n", 2, "line of its own"),
        ("def f():\n    # SOLUTION (part train): Do.\n    return 1\n", 2, "without a statement"),
        (
            "def f():\n    for i in range(2):\n        # BEGIN SOLUTION (part train): Do.\n        x = i\n"
            "        # END SOLUTION\n    else:\n        pass\n",
            0,
            None,
        ),
    ],
)
def test_malformed_markers_are_refused_with_file_and_line(source, line, words):
    if words is None:  # a control case: well formed
        assert render(source, "pkg/m.py").count("NotImplementedError") == 1
        return
    with pytest.raises(MarkerError) as info:
        render(source, "pkg/m.py")
    assert str(info.value).startswith(f"pkg/m.py:{line}: ")
    assert words in str(info.value)


def test_given_code_that_only_works_with_the_solution_is_refused():
    unused = "def f(x):\n    n = len(x)\n    # BEGIN SOLUTION (part train): Do.\n    return x * n\n    # END SOLUTION\n"
    with pytest.raises(MarkerError, match=r"^m\.py:2: 'n' is assigned by given code but read only by the solution"):
        render(unused, "m.py")
    undefined = ("def f(x):\n    # BEGIN SOLUTION (part train): Do.\n    h = x + 1\n    # END SOLUTION\n"
                 "    return h, [h]\n")
    with pytest.raises(MarkerError, match=r"^m\.py:5: given code reads 'h', which only the solution defines"):
        render(undefined, "m.py")
    # Names bound by arguments, tuple unpacking, the module or given code read after the block are all fine.
    fine = (
        "import math\n\nK = 2\n\n\ndef f(x, *rest, key=None):\n    n = len(x)\n    batch, width = x.shape\n"
        "    # BEGIN SOLUTION (part train): Do.\n    print(x * n * batch * width * K, key, rest)\n    # END SOLUTION\n"
        "    return n, math.pi\n"
    )
    assert "TODO(part 5): Do." in render(fine, "m.py")  # train is part 5 of the `all` course


def test_a_block_that_would_break_the_syntax_is_refused():
    source = "def f(x):\n    # BEGIN SOLUTION (part train): Do.\n    if x:\n        return 1\n    # END SOLUTION\n"
    source += "    else:\n        return 2\n"
    with pytest.raises(MarkerError, match=r"^m\.py:5: END SOLUTION splits the statement that starts at line 3"):
        render(source, "m.py")
    with pytest.raises(MarkerError, match=r"^m\.py:1: not valid Python"):
        render("def f(:\n", "m.py")


# --- command line on a synthetic package ---------------------------------------------------------------------------


def _package(root: Path) -> Path:
    package = root / "ref"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('"""Reference."""\n')
    (package / "given.py").write_text("VALUE = 3\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "todo.py").write_text("def f():\n    return 1  # SOLUTION (part recurrent): Return one.\n")
    return package


def test_cli_writes_then_check_detects_drift_missing_and_extra_files(tmp_path, capsys):
    package, target = _package(tmp_path), tmp_path / "out"
    assert make_stencil.main(["--source", str(package), "--target", str(target)]) == 0
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.py")) == [
        "__init__.py",
        "given.py",
        "sub/__init__.py",
        "sub/todo.py",
    ]
    first = {p: p.read_bytes() for p in target.rglob("*.py")}
    assert make_stencil.main(["--source", str(package), "--target", str(target)]) == 0
    assert {p: p.read_bytes() for p in target.rglob("*.py")} == first  # deterministic
    assert (target / "given.py").read_text() == "VALUE = 3\n"
    assert make_stencil.main(["--source", str(package), "--target", str(target), "--check"]) == 0

    (target / "given.py").write_text("VALUE = 4\n")
    (target / "sub" / "todo.py").unlink()
    (target / "extra.py").write_text("")
    capsys.readouterr()
    assert make_stencil.main(["--source", str(package), "--target", str(target), "--check"]) == 1
    err = capsys.readouterr().err
    assert (
        "out/given.py (differs)" in err and "out/sub/todo.py (missing)" in err and "out/extra.py (not generated" in err
    )

    assert make_stencil.main(["--source", str(package), "--target", str(target)]) == 0
    assert not (target / "extra.py").exists()
    assert make_stencil.main(["--source", str(package), "--target", str(target), "--check"]) == 0


def test_cli_reports_malformed_markers_and_exits_non_zero(tmp_path):
    package = _package(tmp_path)
    (package / "bad.py").write_text("def f():\n    pass\n    # END SOLUTION\n")
    run = subprocess.run(
        [sys.executable, "-m", "tools.make_stencil", "--source", str(package), "--target", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stderr.strip() == "ref/bad.py:3: END SOLUTION without a matching BEGIN SOLUTION"


# --- the generated stencil/ package --------------------------------------------------------------------------------

MARKERS = make_stencil.collect_markers(ROOT / "assignment")
STENCIL_MODULES = sorted(p.stem for p in (ROOT / "stencil").glob("*.py") if p.stem != "__init__")


def test_stencil_is_in_sync_with_the_reference():
    assert make_stencil.drifted(ROOT / "assignment", ROOT / "stencil") == [], "run python -m tools.make_stencil"


def test_every_part_has_todos_and_every_stencil_module_imports():
    assert {m.part for m in MARKERS} == set(BY_KEY)
    for name in STENCIL_MODULES:
        importlib.import_module(f"stencil.{name}")


def test_train_command_line_help_works_on_the_stencil():
    run = subprocess.run(
        [sys.executable, "-m", "stencil.trainer", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "usage:" in run.stdout and "--model" in run.stdout


def _public_tests(package: str, tmp_path: Path) -> list[ET.Element]:
    report = tmp_path / f"{package}.xml"
    env = {**os.environ, "LM_PACKAGE": package, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "pytest", "public_tests", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return ET.parse(report).getroot().findall(".//testcase")


def test_public_tests_pass_on_the_reference_and_fail_with_the_todo_on_the_stencil(tmp_path):
    reference = _public_tests("assignment", tmp_path)
    assert len(reference) >= 15
    for case in reference:
        assert not list(case), f"{case.get('name')} does not pass on the reference: {ET.tostring(case, 'unicode')}"
    stencil = _public_tests("stencil", tmp_path)
    assert sorted(c.get("name") for c in stencil) == sorted(c.get("name") for c in reference)
    for case in stencil:
        failure = case.find("failure")
        assert failure is not None, f"{case.get('name')} does not fail on the untouched stencil"
        message = failure.get("message", "")
        # Keras re-raises errors of a layer's call() with its own preamble; the TODO text must still be in the message.
        assert message.startswith("NotImplementedError") and "TODO(part " in message, message


@pytest.mark.parametrize("name", ["hw2", "no-recurrent", "hw1"])
def test_a_course_stencil_has_todos_in_its_parts_solved_prerequisites_and_no_unneeded_module(name):
    course = load_course(name)
    files = make_stencil.generate(ROOT / "assignment", course)
    modules = {rel.stem for rel in files}
    for part in BY_KEY.values():
        for module in part.modules:
            if part.key in course.parts:  # a TODO numbered by the course, and no other part's number
                numbers = set(re.findall(r'TODO\(part (\d+)\)', files[Path(f"{module}.py")]))
                assert numbers == {str(course.number(part.key))}, (module, numbers)
            elif part.key in course.solved:  # the reference's code, without markers
                text = files[Path(f"{module}.py")]
                assert "TODO(" not in text and "SOLUTION" not in text, module
                assert ast.dump(ast.parse(text)) == ast.dump(ast.parse((ROOT / "assignment" / f"{module}.py")
                                                                       .read_text().replace("assignment.", "stencil.")))
            else:
                assert module not in modules, module
    namespace: dict = {}
    submit = files[Path("submit.py")]
    exec(compile(submit.split("\n_TODO")[0], "submit.py", "exec"), {"__file__": "submit.py"}, namespace)
    assert set(namespace["REQUIRED_FILES"]) == {f"{m}.py" for m in modules} - {"submit.py"}


def test_course_numbers_follow_the_table_order():
    hw2 = load_course("hw2")
    assert (hw2.parts, hw2.solved) == (("samplers", "transformer", "train"), ("preprocess",))
    assert [hw2.number(key) for key in hw2.parts] == [1, 2, 3]
    hw1 = load_course("hw1")  # the n-gram part (7 in the table) is hw1's part 3; its samplers ship solved
    assert [hw1.number(key) for key in hw1.parts] == [1, 2, 3] and hw1.parts[2] == "ngram"
    assert set(hw1.left_out_modules) >= {"transformer", "train", "loop", "generate"}
    assert "samplers" not in hw1.left_out_modules
