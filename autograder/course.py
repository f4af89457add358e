"""Courses: an assignment assembled from the parts table (`autograder/parts.py`).

A course file is a small TOML file; the presets are in `autograder/courses/` and `--course` takes a preset's name or a
file's path::

    title = "Assignment 2: sampling, transformers and training"   # the handout's title
    due = "Friday of week 8, 23:59"                                 # optional: printed under the title
    parts = ["samplers", "transformer", "train"]                    # the parts students write, numbered 1, 2, ...
    given = []        # optional: more parts to ship solved (the parts the selected ones run ship solved anyway)
    total = 100       # optional: the points of the table's sections are scaled to this total
    [points]          # optional: points by graded section (a section named here keeps its number as written)
    transformer = 30

Parts are numbered in the table's order. A part that a selected part runs (`requires` in the table: the LSTM's model
reuses the RNN's, generation needs the samplers, training needs a model) ships solved, as given code, when the course
does not select it; a part nobody needs is left out of the release and of the grading.

`python -m autograder.course FILE_OR_PRESET` prints what the course resolves to, or one line naming what is wrong.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.parts import AUDIT, BY_KEY, PARTS, Part

PRESETS_DIR = Path(__file__).resolve().parent / "courses"
DEFAULT_COURSE = "all"
COURSE_FILE = Path(__file__).resolve().parent / "course.json"
"""The resolved course of a built autograder (written by `python -m autograder build`); without it, `all`."""
_KEYS = {"title", "due", "parts", "given", "total", "points"}


class CourseError(ValueError):
    """A course file that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Course:
    """A resolved course.

    Attributes:
        name: the preset's name or the file's stem.
        title: the handout's title.
        due: the due text ("" when none).
        parts: the parts students write, in table order (part i + 1 of the handout is parts[i]).
        solved: the parts shipped solved, as given code, in table order.
        points: points by graded section, in report order (the audit last); sections not named are not run.
    """

    name: str
    title: str
    due: str
    parts: tuple[str, ...]
    solved: tuple[str, ...] = ()
    points: dict[str, float] = field(default_factory=dict)

    def number(self, key: str) -> int:
        """The part's number in this course's handout (1-based)."""
        return self.parts.index(key) + 1

    @property
    def shipped_parts(self) -> tuple[str, ...]:
        """The parts whose code ships, written by students or solved, in table order."""
        return tuple(p.key for p in PARTS if p.key in self.parts or p.key in self.solved)

    @property
    def left_out_modules(self) -> tuple[str, ...]:
        """The modules (student and given) of the parts that do not ship, left out of the release."""
        shipped = {m for key in self.shipped_parts for m in (*BY_KEY[key].modules, *BY_KEY[key].given)}
        return tuple(m for p in PARTS for m in (*p.modules, *p.given) if m not in shipped)

    @property
    def student_modules(self) -> tuple[str, ...]:
        """The modules with TODOs: those of the selected parts."""
        return tuple(m for key in self.parts for m in BY_KEY[key].modules)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "title": self.title, "due": self.due, "parts": list(self.parts),
                           "solved": list(self.solved), "points": self.points}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Course:
        data = json.loads(text)
        return cls(data["name"], data["title"], data["due"], tuple(data["parts"]), tuple(data["solved"]),
                   {str(k): float(v) for k, v in data["points"].items()})


def resolve(name: str, spec: dict[str, Any]) -> Course:
    """The course that `spec` (a course file's contents) describes.

    Raises:
        CourseError: unknown keys or parts, a part listed twice, points that are not positive numbers or name a
            section the course does not grade, a total that is not positive.
    """
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise CourseError(f"unknown key {unknown[0]!r} (a course has {', '.join(sorted(_KEYS))})")
    title, due = spec.get("title", "Assignment: language models from scratch"), spec.get("due", "")
    if not isinstance(title, str) or not isinstance(due, str):
        raise CourseError("title and due must be strings")
    selected, given = _part_list(spec, "parts"), _part_list(spec, "given")
    if not selected:
        raise CourseError("parts is empty: name at least one part")
    both = sorted(set(selected) & set(given))
    if both:
        raise CourseError(f"part {both[0]!r} is both in parts and in given")
    solved = _required(set(selected), set(given))
    sections = [s for key in selected for s in BY_KEY[key].sections] + [AUDIT]
    return Course(name, title, due, tuple(p.key for p in PARTS if p.key in selected),
                  tuple(p.key for p in PARTS if p.key in solved), _points(spec, sections))


def _part_list(spec: dict[str, Any], key: str) -> list[str]:
    names = spec.get(key, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CourseError(f"{key} must be a list of part names, e.g. {key} = [\"samplers\", \"transformer\"]")
    for name in names:
        if name not in BY_KEY:
            raise CourseError(f"unknown part {name!r} in {key} (parts: {', '.join(BY_KEY)})")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CourseError(f"part {repeated[0]!r} is listed twice in {key}")
    return names


def _required(selected: set[str], given: set[str]) -> set[str]:
    """The parts to ship solved: `given` and every part the shipped ones run that the course does not select."""
    shipped = selected | given
    pending = [BY_KEY[key] for key in sorted(shipped, key=list(BY_KEY).index)]
    while pending:
        part: Part = pending.pop(0)
        for need in part.requires:
            choices = need if isinstance(need, tuple) else (need,)
            if not shipped & set(choices):  # none of the alternatives ships: the first one does, solved
                shipped.add(choices[0])
                pending.append(BY_KEY[choices[0]])
    return shipped - selected


def _points(spec: dict[str, Any], sections: list) -> dict[str, float]:
    """Points by section: the table's scaled to `total`, or the course's own where `[points]` names them."""
    total = spec.get("total", 100)
    if isinstance(total, bool) or not isinstance(total, (int, float)) or not total > 0:
        raise CourseError(f"total must be a positive number of points, got {total!r}")
    named = spec.get("points", {})
    if not isinstance(named, dict):
        raise CourseError("points must be a table of section = points, e.g. [points] then transformer = 30")
    names = [s.name for s in sections]
    for name, value in named.items():
        if name not in names:
            raise CourseError(f"points for {name!r}, which this course does not grade (it grades {', '.join(names)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise CourseError(f"points for {name!r} must be a positive number, got {value!r}")
    if named and "total" in spec:
        raise CourseError("give either total (the table's points scaled to it) or [points], not both")
    if named:
        points = {s.name: float(named.get(s.name, s.points)) for s in sections}
    else:
        table = sum(s.points for s in sections)
        points = {s.name: s.points * total / table for s in sections}
    return {name: round(value, 2) for name, value in points.items() if value > 0}


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's contents (tomllib on Python 3.11+, the tomli package before)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CourseError(f"{path} is not valid TOML: {exc}") from None


def presets() -> tuple[str, ...]:
    """The preset courses' names."""
    return tuple(sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))


def load(course: str | Path | None = None) -> Course:
    """The course named by a preset name or a course file's path (None: the `all` preset).

    Raises:
        CourseError: no such preset or file, or a file that `resolve` refuses (the message names it).
    """
    course = DEFAULT_COURSE if course is None else course
    path = Path(course)
    if path.suffix != ".toml" and not path.exists():
        if str(course) not in presets():
            raise CourseError(f"no course preset {str(course)!r} (presets: {', '.join(presets())}; or a .toml file)")
        path = PRESETS_DIR / f"{course}.toml"
    if not path.is_file():
        raise CourseError(f"no course file {path}")
    try:
        return resolve(path.stem, read_toml(path))
    except CourseError as exc:
        raise CourseError(f"{path.name}: {exc}") from None


def built() -> Course:
    """The course this autograder was built for (`course.json`), or the `all` preset in the kit itself."""
    if COURSE_FILE.is_file():
        return Course.from_json(COURSE_FILE.read_text(encoding="utf-8"))
    return load()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        course = load(args[0] if args else None)
    except CourseError as exc:
        print(f"course: {exc}", file=sys.stderr)
        return 2
    print(course.to_json(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
