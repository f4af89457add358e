"""The autograder's parts: one table that the judge, the fixtures, the worker start-up, the self-check and the mutant
catalog all read. `points.json` holds the same points (course staff edit both; a kit test checks they agree).

The report lists parts in table order; the audit comes last because its points scale with the points earned before
it. `quality` (checkpoint perplexity and leaderboard) is worth 0 points by default, which switches it off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One autograder part.

    Attributes:
        name: the part's key (points.json, `--parts`, test ids "<name>.<test>").
        module: the submission module whose functions the part tests (None: the whole submission).
        points: points of the part, shared by its tests in proportion to their weights.
        sees: modules whose changes can change this part's results (a bug in rnn.py also shows in the lstm part,
            whose language model reuses it).
    """

    name: str
    module: str | None
    points: float
    sees: tuple[str, ...] = ()


PARTS: tuple[Part, ...] = (
    Part("preprocess", "preprocess", 15, ("preprocess",)),
    Part("rnn", "rnn", 10, ("rnn",)),
    Part("lstm", "lstm", 10, ("lstm", "rnn")),
    Part("samplers", "samplers", 15, ("samplers",)),
    Part("transformer", "transformer", 25, ("transformer", "samplers")),  # generation through the model
    Part("train", "train", 20, ("train",)),
    Part("quality", "train", 0, ("train", "transformer", "rnn", "lstm", "preprocess")),
    Part("audit", None, 5),
)
BY_NAME = {part.name: part for part in PARTS}
NAMES = tuple(part.name for part in PARTS)
"""Every part, in report order."""
GRADED = tuple(part.name for part in PARTS if part.module is not None and part.points > 0)
"""Parts whose tests call the submission and that count by default (not the audit, not quality)."""
MODULES = tuple(dict.fromkeys(part.module for part in PARTS if part.module is not None))
"""Submission modules the worker imports at start, in order."""
WITH_FIXTURES = tuple(part.name for part in PARTS if part.module is not None)
"""Parts whose tests use hidden inputs and expected values."""


def parts_seeing(module: str) -> tuple[str, ...]:
    """The graded parts whose results a change to `module` can change."""
    return tuple(part.name for part in PARTS if module in part.sees and part.name in GRADED)
