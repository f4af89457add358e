"""The handout matches the code: API signatures, the TODO set, the figures and the commands it tells students to run."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autograder.parts import GRADED, MODULES
from tools import make_figures, make_stencil

ROOT = Path(__file__).resolve().parent.parent
HANDOUT = (ROOT / "handout.md").read_text(encoding="utf-8")
KEPT_DECORATORS = {"classmethod", "staticmethod", "property"}


def api_blocks() -> dict[str, ast.Module]:
    """Module name -> parsed python block of each '#### API: `stencil/NAME.py`' section."""
    blocks = re.findall(r"^#### API: `stencil/(\w+)\.py`\n\n```python\n(.*?)^```", HANDOUT, flags=re.M | re.S)
    return {name: ast.parse(code) for name, code in blocks}


def shape_of(node: ast.FunctionDef) -> str:
    """A function's signature as text: kept decorators, arguments with annotations and defaults, return annotation."""
    decorators = sorted(ast.unparse(d) for d in node.decorator_list if ast.unparse(d) in KEPT_DECORATORS)
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{' '.join('@' + d for d in decorators)} def {node.name}({ast.unparse(node.args)}){returns}".strip()


def source_def(obj) -> ast.FunctionDef | ast.ClassDef:
    node = ast.parse(textwrap.dedent(inspect.getsource(obj))).body[0]
    assert isinstance(node, (ast.FunctionDef, ast.ClassDef))
    return node


def documented() -> list[tuple[str, str, ast.AST]]:
    """(module, qualified name, handout node) of every function, class and method in the API blocks."""
    found = []
    for module, tree in api_blocks().items():
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                found.append((module, node.name, node))
            elif isinstance(node, ast.ClassDef):
                found.append((module, node.name, node))
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AnnAssign)):
                        name = item.name if isinstance(item, ast.FunctionDef) else ast.unparse(item.target)
                        found.append((module, f"{node.name}.{name}", item))
            elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
                raise AssertionError(f"unexpected statement in the API block of {module}: {ast.unparse(node)}")
    return found


def test_every_graded_module_has_an_api_section():
    expected = set(MODULES)
    assert set(api_blocks()) == expected


@pytest.mark.parametrize("module, qualname, node", documented(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_api_matches_the_reference(module, qualname, node):
    target = importlib.import_module(f"assignment.{module}")
    owner_name, _, member = qualname.rpartition(".")
    owner = getattr(target, owner_name) if owner_name else target
    if isinstance(node, ast.AnnAssign):  # an attribute: the class must set or define it
        source = inspect.getsource(owner)
        assert re.search(rf"(self\.{member}\s*[:=]|def {member}\(|^\s+{member}\s*[:=])", source, flags=re.M), qualname
        return
    assert hasattr(owner, member), f"assignment.{module} has no {qualname}"
    obj = getattr(owner, member)
    if isinstance(node, ast.ClassDef):
        real = source_def(obj)
        assert [ast.unparse(b) for b in node.bases] == [ast.unparse(b) for b in real.bases], qualname
        return
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(inspect.getattr_static(owner, member), (classmethod, staticmethod)):
        obj = inspect.getattr_static(owner, member).__func__
    real = source_def(obj)
    if isinstance(inspect.getattr_static(owner, member), property):
        real.decorator_list = [ast.Name("property")] + real.decorator_list
    assert shape_of(node) == shape_of(real)


def test_every_todo_is_documented_in_the_api_sections():
    names = {(module, qualname) for module, qualname, _ in documented()}
    for marker in make_stencil.collect_markers(ROOT / "assignment"):
        module = Path(marker.path).stem
        qualname = marker.function
        if "." in qualname and not qualname.split(".")[0][0].isupper():
            qualname = qualname.split(".")[0]  # a helper nested in a function is documented by its function
        assert (module, qualname) in names, f"{module}.{qualname} has a TODO but no entry in the handout's API"


def test_figures_exist_and_are_referenced():
    for name in ("causal_mask.png", "sampling.png"):
        assert f"](figures/{name})" in HANDOUT
        path = ROOT / "figures" / name
        assert path.stat().st_size < 100_000, f"{name} should stay small"
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_figure_script_writes_both_figures(tmp_path):
    assert make_figures.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["causal_mask.png", "rope.png", "sampling.png"]


def test_sampling_figure_keeps_the_same_tokens_as_the_reference_samplers():
    samplers = importlib.import_module("assignment.samplers")
    logits = make_figures.LOGITS.astype(np.float32)[None, :]
    panels = dict((title, keep) for title, _, keep in make_figures.sampling_panels())
    top_k = np.isfinite(samplers.top_k_filter(logits, 2).numpy()[0])
    top_p = np.isfinite(samplers.top_p_filter(logits, 0.8).numpy()[0])
    assert top_k.tolist() == panels["top-k, k = 2 (tie kept)"].tolist()
    assert top_p.tolist() == panels["top-p, p = 0.8"].tolist()
    # The handout's own description of the figure: k = 2 keeps three tokens because of the tie.
    assert int(top_k.sum()) == 3 and int(top_p.sum()) == 4


def test_commands_in_the_handout_name_real_modules_and_options():
    commands = re.findall(r"python -m (\S+)((?: --?[\w-]+)*)", HANDOUT)
    assert commands
    for module, _ in commands:
        if module.startswith(("stencil.", "data.", "pytest", "pip", "venv")):
            continue
        raise AssertionError(f"the handout runs an unexpected module: {module}")
    for module in {m for m, _ in commands if m.startswith("stencil.")}:
        assert (ROOT / "stencil" / (module.split(".", 1)[1] + ".py")).is_file(), module


def test_points_table_matches_the_autograder_configuration():
    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| (\w+) \|$", HANDOUT, flags=re.M))
    assert set(rows) >= set(GRADED)
    from autograder.course import load

    points = load().points
    assert {part: float(value) for part, value in rows.items()} == {p: float(v) for p, v in points.items()}


def test_grading_limits_in_the_handout_are_the_autograders():
    from autograder.judge.runner import Limits

    assert f"may hold {Limits().memory_mb} MB of its own" in " ".join(HANDOUT.split())


@pytest.mark.parametrize("name", ["all", "classic", "no-recurrent", "hw1", "hw2", "hw3"])
def test_each_course_handout_holds_its_parts_renumbered_and_its_points(name):
    from autograder.course import load
    from autograder.parts import BY_KEY
    from tools import make_handout

    course = load(name)
    text = make_handout.render(HANDOUT, course, ["submit.py"])
    headings = re.findall(r"^## Part (\d+): (.+?) \(", text, flags=re.M)
    assert headings == [(str(i), BY_KEY[key].title) for i, key in enumerate(course.parts, start=1)]
    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| ([\d.]+) \|$", text, flags=re.M))
    assert {k: float(v) for k, v in rows.items()} == course.points
    assert "<!-- if" not in text and "<!-- end if" not in text
    assert text.startswith(f"# {course.title}\n")
    submitted = re.search(r"<!-- submitted-modules -->\n(.*)", text)  # the list the renderer writes: the files given
    assert submitted and submitted[1] == "`submit.py`"
