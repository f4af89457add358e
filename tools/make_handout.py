"""The handout of a course: `handout.md` (which describes every part, numbered as in the `all` course) cut down to the
course's parts and renumbered.

    python -m tools.make_handout --course hw2 [--out handout-hw2.md]

Rules, applied in this order:
- Blocks (which may nest) between `<!-- if KEY -->` and `<!-- end if -->` stay only when the course selects part KEY
  (students write it); `<!-- if ships KEY -->` blocks stay when its code ships at all (written or solved). The marker
  lines go.
- A `## Part N: ...` section stays only when the course selects part N of the table; sections run to the next `## `.
- "part N" and "Part N" become the part's number in the course, or "the given <title>" when the course does not
  select it; in the module table a solved part's rows say "given, solved:" and a left-out module's row goes; the
  points table lists the course's sections with its points; the title and the due text are the course's; the line
  after `<!-- submitted-modules -->` lists the modules of the course's submission.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from autograder.course import Course, CourseError
from autograder.course import load as load_course
from autograder.parts import PARTS

ROOT = Path(__file__).resolve().parent.parent
_IF = re.compile(r"<!-- if (ships )?([a-z_]+) -->")
_END_IF = "<!-- end if -->"
_PART_HEADING = re.compile(r"^## Part (\d+): ")
_PART_REFERENCE = re.compile(r"\b([Pp])art (\d+)\b")
_POINTS_ROW = re.compile(r"^\| `(\w+)` \| (\d+): ([^|]+) \| [\w.]+ \|$")
_MODULE_ROW = re.compile(r"^\| ((?:`\w+\.py`(?:, )?)+) \| (.*) \|$")
_SOLVED_ROW = re.compile(r"^part (\d+): ")
_SUBMITTED = re.compile(r"^(<!-- submitted-modules -->\n).*$", flags=re.M)


class HandoutError(ValueError):
    """A conditional block that is not closed, or that names no part of the table."""


def render(text: str, course: Course, modules: list[str]) -> str:
    """The handout of `course` from the full handout `text`; `modules` are the submission's files (`submit.py`'s)."""
    lines = _conditionals(text.splitlines(), course)
    lines = _sections(lines, course)
    out = []
    for line in lines:
        points = _POINTS_ROW.match(line)
        module = _MODULE_ROW.match(line)
        if points:
            name, number, what = points.groups()
            if name not in course.points:
                continue
            line = f"| `{name}` | {_number(int(number), course)}: {what} | {course.points[name]:g} |"
        elif module:
            names = [name for name in re.findall(r"`(\w+)\.py`", module[1]) if name not in course.left_out_modules]
            if not names:
                continue
            solved = _SOLVED_ROW.match(module[2])
            if solved and PARTS[int(solved[1]) - 1].key in course.solved:
                module = _SOLVED_ROW.sub("given, solved: ", module[2])
                line = f"| {', '.join(f'`{name}.py`' for name in names)} | {module} |"
            else:
                line = f"| {', '.join(f'`{name}.py`' for name in names)} | {module[2]} |"
        out.append(_PART_REFERENCE.sub(lambda m: _reference(m, course), line))
    result = "\n".join(out) + "\n"
    result = re.sub(r"\A# .*\n", f"# {course.title}\n" + (f"\n**Due: {course.due}**\n" if course.due else ""), result)
    listed = ", ".join(f"`{name}`" for name in modules)
    return _SUBMITTED.sub(lambda match: match[1] + listed, result)


def _conditionals(lines: list[str], course: Course) -> list[str]:
    kept: list[str] = []
    opened: list[tuple[int, bool]] = []  # (line, keep) of each open block, innermost last
    for number, line in enumerate(lines, start=1):
        match = _IF.fullmatch(line.strip())
        if match:
            if match[2] not in {p.key for p in PARTS}:
                raise HandoutError(f"handout line {number}: unknown part {match[2]!r}")
            opened.append((number, match[2] in (course.shipped_parts if match[1] else course.parts)))
        elif line.strip() == _END_IF:
            if not opened:
                raise HandoutError(f"handout line {number}: '{_END_IF}' without its '<!-- if KEY -->'")
            opened.pop()
        elif all(keep for _, keep in opened):
            kept.append(line)
    if opened:
        raise HandoutError(f"handout line {opened[-1][0]}: conditional block not closed with '{_END_IF}'")
    return kept


def _sections(lines: list[str], course: Course) -> list[str]:
    kept, keep = [], True
    for line in lines:
        if line.startswith("## "):
            heading = _PART_HEADING.match(line)
            keep = heading is None or PARTS[int(heading[1]) - 1].key in course.parts
        if keep:
            kept.append(line)
    return kept


def _number(number: int, course: Course) -> str:
    key = PARTS[number - 1].key
    return str(course.number(key)) if key in course.parts else "given"


def _reference(match: re.Match[str], course: Course) -> str:
    part = PARTS[int(match[2]) - 1]
    if part.key in course.parts:
        return f"{match[1]}art {course.number(part.key)}"
    return f"{'T' if match[1] == 'P' else 't'}he given {part.title}"


def main(argv: list[str] | None = None) -> int:
    from tools.make_stencil import generate

    parser = argparse.ArgumentParser(prog="python -m tools.make_handout", description=__doc__.splitlines()[0])
    parser.add_argument("--course", default="all", help="a course preset's name or a course file (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="file to write (default: print it)")
    args = parser.parse_args(argv)
    try:
        course = load_course(args.course)
        files = sorted(rel.name for rel in generate(ROOT / "assignment", course) if rel.name != "submit.py")
        text = render((ROOT / "handout.md").read_text(encoding="utf-8"), course, files)
    except (CourseError, HandoutError) as exc:
        print(f"make_handout: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
