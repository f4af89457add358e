"""Generate the student starter code `stencil/` from the reference solution `assignment/`.

Marker grammar (in `assignment/*.py`, inside function bodies only):

Block form, the markers on their own lines at the indentation of the code they enclose::

    # BEGIN SOLUTION (part recurrent): Compute the four gates and the new (h, c).
    ... reference code ...
    # END SOLUTION

One-line form, for a single simple statement::

    return tf.argmax(logits, axis=-1, output_type=tf.int32)  # SOLUTION (part samplers): Pick the top token.

The part is named by its key in the parts table (`autograder/parts.py`). In the parts a course selects, both forms are
replaced by ``raise NotImplementedError("TODO(part N): text")`` at the same indentation (wrapped over several lines
when it would exceed 120 characters), N being the part's number in the course. In a part the course ships solved, the
marker lines go and the code stays. Modules of parts the course does not ship are left out, and `submit.py`'s
`REQUIRED_FILES` becomes the list of the modules that ship.

Docstrings and code outside the markers (the given code) are kept as they are. Imports that the reference uses but the
stencil no longer does are removed, so the stencil stays lint clean. Files without markers are copied verbatim, except
the package's `__init__.py`, whose docstring is replaced by one addressed to students, and the module paths
`assignment.X` in text, which become `stencil.X`.

Malformed markers (unclosed, nested, END without BEGIN, missing or unknown part, missing text, wrong indentation,
outside a function, one-line form on a compound statement) are refused with ``file:line: message`` and exit status 1.

Usage (from the repository root)::

    python -m tools.make_stencil            # regenerate stencil/ (the `all` course) from assignment/
    python -m tools.make_stencil --check    # exit 1 and list the files of stencil/ that differ from a regeneration

`python -m tools.make_release --course NAME` writes another course's stencil into its student zip.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import io
import re
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

from autograder.course import Course
from autograder.course import load as load_course
from autograder.parts import BY_KEY

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGE = "assignment"
TARGET_PACKAGE = "stencil"
STENCIL_DOCSTRING = (
    "Starter code of the language-modeling assignment: implement every TODO (the handout, handout.md, says how)."
)
LINE_LENGTH = 120

_BEGIN = re.compile(r"# BEGIN SOLUTION \(part (?P<part>[a-z][a-z0-9_]*)\): (?P<text>\S.*)")
_END = re.compile(r"# END SOLUTION")
_INLINE = re.compile(r"# SOLUTION \(part (?P<part>[a-z][a-z0-9_]*)\): (?P<text>\S.*)")
_INLINE_COMMENT = re.compile(r"\s*# SOLUTION \(part [a-z][a-z0-9_]*\): .*$")
_ANY_MARKER = re.compile(r"#\s*(?P<kind>BEGIN\s+|END\s+)?SOLUTION\b")
_BEGIN_FORM = "'# BEGIN SOLUTION (part KEY): what to implement'"
_INLINE_FORM = "'<statement>  # SOLUTION (part KEY): what to implement'"
_REQUIRED_FILES = re.compile(r"^REQUIRED_FILES\b.*$", flags=re.M)


class MarkerError(ValueError):
    """A malformed solution marker; the message reads ``file:line: message``."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Marker:
    """One solution region of a reference file.

    `first` and `last` are the 1-based line numbers it spans (markers included); `function` is the qualified name of
    the enclosing function, e.g. "LSTMCell.call".
    """

    path: str
    first: int
    last: int
    indent: str
    part: str
    text: str
    function: str

    def message(self, number: int) -> str:
        """The message of the NotImplementedError that replaces the region, in a course where its part is `number`."""
        return f"TODO(part {number}): {self.text}"


def _comments(source: str) -> list[tuple[int, int, str]]:
    """(line, column, text) of every comment token, in source order."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(tok.start[0], tok.start[1], tok.string.rstrip()) for tok in tokens if tok.type == tokenize.COMMENT]


def _line_starts(source: str) -> dict[int, int]:
    """Column of the first token on each line that starts a token (continuation lines of strings are absent)."""
    starts: dict[int, int] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            starts.setdefault(tok.start[0], tok.start[1])
    return starts


def _functions(tree: ast.Module) -> list[tuple[str, int, int, int]]:
    """(qualified name, first line after the `def` line, last line, depth) of every function definition."""
    found: list[tuple[str, int, int, int]] = []

    def visit(node: ast.AST, prefix: str, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                first = min(child.lineno + 1, child.body[0].lineno)  # comments before the first statement belong to it
                found.append((name, first, child.end_lineno or child.lineno, depth))
                visit(child, name + ".", depth + 1)
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".", depth + 1)
            else:
                visit(child, prefix, depth)

    visit(tree, "", 0)
    return found


def _enclosing_function(functions: list[tuple[str, int, int, int]], line: int) -> str | None:
    inside = [(depth, name) for name, first, last, depth in functions if first <= line <= last]
    return max(inside)[1] if inside else None


def find_markers(source: str, path: str) -> list[Marker]:
    """Parse and validate the solution markers of one file.

    Raises:
        MarkerError: on any malformed or misplaced marker, naming the file and line.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MarkerError(path, exc.lineno or 0, f"not valid Python: {exc.msg}") from None
    lines = source.splitlines()
    starts = _line_starts(source)
    functions = _functions(tree)
    statements = [node for node in ast.walk(tree) if isinstance(node, ast.stmt)]
    simple_statements = {(node.lineno, node.col_offset): node for node in statements if node.lineno == node.end_lineno}
    markers: list[Marker] = []
    opened: tuple[int, int, re.Match[str]] | None = None  # (line, column, match) of the open BEGIN

    def function_at(line: int) -> str:
        name = _enclosing_function(functions, line)
        if name is None:
            raise MarkerError(path, line, "solution marker outside a function body (markers belong inside functions)")
        return name

    for line, col, text in _comments(source):
        kind = _ANY_MARKER.match(text)
        if kind is None:
            continue
        own_line = lines[line - 1][:col].strip() == ""
        word = (kind.group("kind") or "").strip()
        if word and not own_line:
            raise MarkerError(path, line, f"'{word} SOLUTION' must be on a line of its own")
        if not word and own_line:
            raise MarkerError(path, line, f"one-line solution marker without a statement; expected {_INLINE_FORM}")
        if word == "BEGIN":
            match = _BEGIN.fullmatch(text)
            if match is None:
                raise MarkerError(
                    path, line, f"malformed BEGIN SOLUTION (missing part or text?); expected {_BEGIN_FORM}"
                )
            if opened is not None:
                raise MarkerError(
                    path, line, f"nested BEGIN SOLUTION: the block opened at line {opened[0]} is not closed"
                )
            opened = (line, col, match)
        elif word == "END":
            if _END.fullmatch(text) is None:
                raise MarkerError(path, line, "malformed END SOLUTION; expected '# END SOLUTION' and nothing else")
            if opened is None:
                raise MarkerError(path, line, "END SOLUTION without a matching BEGIN SOLUTION")
            first, indent, match = opened
            if col != indent:
                raise MarkerError(
                    path, line, f"END SOLUTION indented by {col} columns, its BEGIN SOLUTION (line {first}) by {indent}"
                )
            body = [(n, starts[n]) for n in range(first + 1, line) if n in starts]
            code = [(n, c) for n, c in body if not lines[n - 1].lstrip().startswith("#")]
            if not code:
                raise MarkerError(path, first, "empty solution block")
            for n, c in body:
                if c < indent:
                    raise MarkerError(path, n, f"line indented less than its BEGIN SOLUTION (line {first})")
            if code[0][1] != indent:
                raise MarkerError(
                    path, code[0][0], f"the block's code must start at the indentation of BEGIN SOLUTION (line {first})"
                )
            for node in statements:
                start, end = node.lineno, node.end_lineno or node.lineno
                if first < start <= line < end:
                    raise MarkerError(path, line, f"END SOLUTION splits the statement that starts at line {start}")
            name = function_at(first)
            markers.append(Marker(path, first, line, " " * indent, _part(match, path, first), match["text"], name))
            opened = None
        else:
            match = _INLINE.fullmatch(text)
            if match is None:
                raise MarkerError(path, line, f"malformed one-line SOLUTION marker; expected {_INLINE_FORM}")
            if opened is not None:
                raise MarkerError(path, line, f"solution marker inside the block opened at line {opened[0]}")
            indent = starts[line]
            node = simple_statements.get((line, indent))
            if node is None or hasattr(node, "body"):
                raise MarkerError(path, line, "the one-line form needs a single simple statement on its line")
            name = function_at(line)
            markers.append(Marker(path, line, line, " " * indent, _part(match, path, line), match["text"], name))
    if opened is not None:
        raise MarkerError(path, opened[0], "unclosed BEGIN SOLUTION (no END SOLUTION before the end of the file)")
    return markers


def _part(match: re.Match[str], path: str, line: int) -> str:
    if match["part"] not in BY_KEY:
        raise MarkerError(path, line, f"unknown part {match['part']!r} (parts: {', '.join(BY_KEY)})")
    return match["part"]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def raise_lines(indent: str, message: str) -> list[str]:
    """The `raise NotImplementedError(message)` statement at `indent`, wrapped to fit in LINE_LENGTH columns."""
    single = f"{indent}raise NotImplementedError({_quote(message)})"
    if len(single) <= LINE_LENGTH:
        return [single]
    inner = indent + "    "
    width = LINE_LENGTH - len(inner) - 2
    chunks: list[str] = []
    for word in message.split(" "):
        if chunks and len(chunks[-1]) + 1 + len(word) <= width:
            chunks[-1] += " " + word
        else:
            if chunks:
                chunks[-1] += " "
            chunks.append(word)
    return [f"{indent}raise NotImplementedError(", *(inner + _quote(chunk) for chunk in chunks), f"{indent})"]


def _used_names(tree: ast.Module) -> set[str]:
    """Names read anywhere in the module, including string annotations and `__all__`."""
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        annotations = []
        if isinstance(node, (ast.arg, ast.AnnAssign)):
            annotations.append(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
        for annotation in annotations:
            if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
                try:
                    used.update(n.id for n in ast.walk(ast.parse(annotation.value)) if isinstance(n, ast.Name))
                except SyntaxError:
                    pass
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            if isinstance(node.value, (ast.List, ast.Tuple)):
                used.update(e.value for e in node.value.elts if isinstance(e, ast.Constant))
    return used


def _bound_name(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    if alias.asname:
        return alias.asname
    return alias.name.split(".")[0] if isinstance(node, ast.Import) else alias.name


def _import_text(node: ast.Import | ast.ImportFrom, aliases: list[ast.alias], indent: str) -> list[str]:
    names = [a.name + (f" as {a.asname}" if a.asname else "") for a in aliases]
    if isinstance(node, ast.Import):
        return [f"{indent}import {', '.join(names)}"]
    head = f"{indent}from {'.' * node.level}{node.module or ''} import "
    if len(head) + len(", ".join(names)) <= LINE_LENGTH:
        return [head + ", ".join(names)]
    return [head + "(", *(f"{indent}    {name}," for name in names), f"{indent})"]


def prune_imports(original: str, stencil: str, path: str) -> str:
    """Remove from `stencil` the imported names that `original` uses and `stencil` no longer does."""
    still_used = _used_names(ast.parse(stencil))
    was_used = _used_names(ast.parse(original))
    lines = stencil.splitlines()
    edits: list[tuple[int, int, list[str]]] = []  # (first index, last index, replacement lines)
    for node in ast.walk(ast.parse(stencil)):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "module", None) == "__future__":
            continue
        keep = [a for a in node.names if a.name == "*" or _bound_name(node, a) in still_used]
        keep += [a for a in node.names if a not in keep and _bound_name(node, a) not in was_used]
        keep.sort(key=node.names.index)
        if len(keep) == len(node.names):
            continue
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        before, after = lines[first][: node.col_offset], lines[last][node.end_col_offset or 0 :]
        if before.strip() or (after.strip() and not after.strip().startswith("#")):
            raise MarkerError(path, node.lineno, "cannot remove an unused import that shares its line with other code")
        edits.append((first, last, _import_text(node, keep, before) if keep else []))
    for first, last, replacement in sorted(edits, reverse=True):
        lines[first : last + 1] = replacement
        if not replacement:
            above = 0
            while first - above - 1 >= 0 and not lines[first - above - 1].strip():
                above += 1
            below = 0
            while first + below < len(lines) and not lines[first + below].strip():
                below += 1
            if above and below:
                del lines[first : first + min(above, below)]
    return "\n".join(lines) + "\n"


def _replace_docstring(source: str) -> str:
    """Replace the module docstring by STENCIL_DOCSTRING."""
    tree = ast.parse(source)
    lines = source.splitlines()
    doc = ast.get_docstring(tree, clean=False)
    text = [f'"""{STENCIL_DOCSTRING}"""']
    if doc is None:
        lines[0:0] = text
    else:
        node = tree.body[0]
        lines[node.lineno - 1 : node.end_lineno] = text
    return "\n".join(lines) + "\n"


def _function_nodes(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Function definitions by qualified name (a repeated name gets a `#k` suffix from its second occurrence)."""
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name, k = prefix + child.name, 1
                while (key := name if k == 1 else f"{name}#{k}") in found:
                    k += 1
                found[key] = child
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _reads(node: ast.AST) -> dict[str, int]:
    """Names read in `node` (nested scopes included), with the line of the first read."""
    reads: dict[str, int] = {}
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load):
            reads[child.id] = min(reads.get(child.id, child.lineno), child.lineno)
    return reads


def _bindings(node: ast.AST) -> set[str]:
    """Names that `node` (a function or a module, nested scopes included) binds."""
    bound: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load):
            bound.add(child.id)
        elif isinstance(child, ast.arg):
            bound.add(child.arg)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(child.name)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            bound.update(_bound_name(child, alias) for alias in child.names)
        elif isinstance(child, (ast.Global, ast.Nonlocal)):
            bound.update(child.names)
        elif isinstance(child, ast.ExceptHandler) and child.name:
            bound.add(child.name)
    return bound


def _plain_assignments(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, int]:
    """Names assigned by `name = ...` statements of the function's own scope, with the line of the first one."""
    assigned: dict[str, int] = {}
    todo: list[ast.AST] = list(function.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                assigned[target.id] = min(assigned.get(target.id, node.lineno), node.lineno)
        todo.extend(ast.iter_child_nodes(node))
    return assigned


def check_given_code(original: str, stencil: str, path: str, markers: list[Marker]) -> None:
    """Refuse given code that only makes sense with the solution in place (it would fail lint in the stencil).

    Two cases: a local variable that given code assigns but only the solution reads (ruff F841 in the stencil), and a
    name that given code reads but only the solution defines (ruff F821).
    """
    before, after = _function_nodes(ast.parse(original)), _function_nodes(ast.parse(stencil))
    defined_globally = set(dir(builtins))
    for node in ast.parse(stencil).body:
        is_definition = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        defined_globally |= {node.name} if is_definition else _bindings(node)
    inside = [range(m.first, m.last + 1) for m in markers]
    for name in sorted({m.function for m in markers}):
        ref, todo = before[name], after.get(name)
        if todo is None:
            continue
        reads, ref_reads = _reads(todo), _reads(ref)
        for var, line in sorted(_plain_assignments(ref).items(), key=lambda item: item[1]):
            if (
                var in _plain_assignments(todo)
                and var not in reads
                and var in ref_reads
                and not var.startswith("_")
                and not any(line in region for region in inside)
            ):
                raise MarkerError(
                    path,
                    line,
                    f"'{var}' is assigned by given code but read only by the solution: move it into the block",
                )
        enclosing = set().union(*(_bindings(after[q]) for q in after if name.startswith(q + ".") or q == name))
        for var in sorted(set(reads) - enclosing - defined_globally):
            uses = [
                n.lineno
                for n in ast.walk(ref)
                if isinstance(n, ast.Name) and n.id == var and not any(n.lineno in region for region in inside)
            ]
            raise MarkerError(
                path, min(uses or [ref.lineno]), f"given code reads '{var}', which only the solution defines"
            )


def render(source: str, path: str, package_init: bool = False, course: Course | None = None) -> str:
    """The stencil version of one reference file for `course` (default: `all`; see the module docstring)."""
    course = course or load_course()
    markers = find_markers(source, path)
    todos = [marker for marker in markers if marker.part in course.parts]
    lines = source.splitlines()
    for marker in reversed(markers):
        if marker in todos:
            message = marker.message(course.number(marker.part))
            lines[marker.first - 1 : marker.last] = raise_lines(marker.indent, message)
        elif marker.first == marker.last:  # solved: the code stays, the marker goes
            lines[marker.first - 1] = _INLINE_COMMENT.sub("", lines[marker.first - 1])
        else:
            lines[marker.first - 1 : marker.last] = lines[marker.first : marker.last - 1]
    stencil = "\n".join(lines) + "\n" if markers else source
    if todos:
        try:
            ast.parse(stencil)
        except SyntaxError as exc:
            raise MarkerError(path, exc.lineno or 0, f"the stencil would not be valid Python: {exc.msg}") from None
        check_given_code(source, stencil, path, todos)
        stencil = prune_imports(source, stencil, path)
    stencil = re.sub(rf"\b{SOURCE_PACKAGE}\.(?=[a-z_])", f"{TARGET_PACKAGE}.", stencil)
    if package_init:
        stencil = _replace_docstring(stencil)
    return stencil


def source_files(source_dir: Path) -> list[Path]:
    """The reference package's .py files (relative paths, sorted)."""
    return sorted(p.relative_to(source_dir) for p in source_dir.rglob("*.py") if "__pycache__" not in p.parts)


def collect_markers(source_dir: Path) -> list[Marker]:
    """Every solution marker of the reference package, in file and line order."""
    return [
        marker
        for rel in source_files(source_dir)
        for marker in find_markers((source_dir / rel).read_text(encoding="utf-8"), str(source_dir.name / rel))
    ]


def generate(source_dir: Path, course: Course | None = None) -> dict[Path, str]:
    """Map each relative path of `course`'s stencil (default: `all`) to its content: the modules the course ships."""
    course = course or load_course()
    left_out = {Path(f"{module}.py") for module in course.left_out_modules}
    kept = [rel for rel in source_files(source_dir) if rel not in left_out]
    files = {rel: render((source_dir / rel).read_text(encoding="utf-8"), str(source_dir.name / rel),
                         rel == Path("__init__.py"), course) for rel in kept}
    if Path("submit.py") in files:
        names = sorted(rel.as_posix() for rel in files if rel.parent == Path(".") and rel != Path("submit.py"))
        files[Path("submit.py")] = _REQUIRED_FILES.sub(f"REQUIRED_FILES = {_tuple_literal(names)}",
                                                       files[Path("submit.py")], count=1)
    return files


def _tuple_literal(names: list[str]) -> str:
    return "(\n" + "".join(f'    "{name}",\n' for name in names) + ")"


def drifted(source_dir: Path, target_dir: Path) -> list[str]:
    """Relative paths of the target's .py files that are missing, extra or differ from a regeneration."""
    expected = generate(source_dir)
    present = set(source_files(target_dir)) if target_dir.is_dir() else set()
    problems = []
    for rel in sorted(set(expected) | present):
        path = target_dir / rel
        if rel not in expected:
            problems.append(f"{rel} (not generated from {source_dir.name}/)")
        elif rel not in present:
            problems.append(f"{rel} (missing)")
        elif path.read_bytes() != expected[rel].encode("utf-8"):
            problems.append(f"{rel} (differs)")
    return problems


def write(source_dir: Path, target_dir: Path) -> list[Path]:
    """Regenerate `target_dir` from `source_dir`, removing stale .py files; returns the written relative paths."""
    files = generate(source_dir)
    if target_dir.is_dir():
        for rel in source_files(target_dir):
            if rel not in files:
                (target_dir / rel).unlink()
    for rel, text in files.items():
        (target_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (target_dir / rel).write_bytes(text.encode("utf-8"))
    return sorted(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.make_stencil", description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT / SOURCE_PACKAGE, help="reference package directory")
    parser.add_argument("--target", type=Path, default=ROOT / TARGET_PACKAGE, help="stencil directory to write")
    parser.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = drifted(args.source, args.target)
            for problem in problems:
                print(f"{args.target.name}/{problem}", file=sys.stderr)
            if problems:
                print("stencil is out of date: run python -m tools.make_stencil", file=sys.stderr)
            return 1 if problems else 0
        written = write(args.source, args.target)
    except MarkerError as exc:
        print(exc, file=sys.stderr)
        return 1
    todos = len(collect_markers(args.source))
    print(f"wrote {len(written)} files to {args.target} ({todos} TODOs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
