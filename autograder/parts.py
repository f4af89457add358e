"""The parts table: the one list of the kit's parts. Everything that lists parts derives from it: the judge and its
report, the recording and its guards, the worker's modules, the student release (stencil, handout, public tests,
`submit.py`'s files), the Gradescope zip and the kit's tests. Points live here too; a course file may override them
(`autograder/course.py`).

A part is a lecture part of the handout. Its files follow from its key:

    handout.md                        "## Part N: <title> (...)", its section (N: the part's number in the course)
    public_tests/test_<key>.py        its public tests
    autograder/judge/hidden/<key>.py  its hidden tests (ids "<section>.<test>", one section per graded item below)
    autograder/worker/probes/<key>.py its probes (when its tests need more than the generic call probe)
    autograder/qa/mutants/<key>.py    its mutants

The report lists sections in table order; the audit comes last because its points scale with the points earned before
it. `quality` (checkpoint perplexity and leaderboard) is worth 0 points by default, which switches it off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """One graded item of the report: a part's tests whose ids start with "<name>.".

    Attributes:
        name: the section's key (report, `--parts`, course points, test ids "<name>.<test>").
        points: default points, shared by its tests in proportion to their weights (0: not run).
        sees: student modules whose changes can change its results (a bug in rnn.py also shows in the lstm section,
            whose language model reuses it).
    """

    name: str
    points: float
    sees: tuple[str, ...]


@dataclass(frozen=True)
class Part:
    """One lecture part.

    Attributes:
        key: the part's key (course files, file names above).
        title: the handout's title of the part ("## Part N: <title> (...)").
        modules: the student modules it owns (solution blocks in `assignment/`, TODOs in the stencil).
        given: the given modules that ship with it (the commands and plumbing that run its code); given modules no
            part names (`cli`, `runs`, ...) ship in every release.
        requires: the parts whose code it runs; a tuple inside names alternatives, any one of which will do (training
            needs a model). A course that leaves a required part out ships it solved, as given code.
        sections: its graded items.
        hidden: its hidden-test modules in `autograder/judge/hidden/` (default: the key).
    """

    key: str
    title: str
    modules: tuple[str, ...]
    given: tuple[str, ...]
    requires: tuple[str | tuple[str, ...], ...]
    sections: tuple[Section, ...]
    hidden: tuple[str, ...] = ()

    @property
    def hidden_modules(self) -> tuple[str, ...]:
        return self.hidden or (self.key,)

    @property
    def public_tests(self) -> str:
        """The part's public test file in `public_tests/`."""
        return f"test_{self.key}.py"


PARTS: tuple[Part, ...] = (
    Part("preprocess", "preprocessing", ("preprocess",), (), (),
         (Section("preprocess", 15, ("preprocess",)),)),
    Part("recurrent", "recurrent language models", ("rnn", "lstm"), (), (),
         (Section("rnn", 10, ("rnn",)), Section("lstm", 10, ("lstm", "rnn")))),
    Part("samplers", "samplers", ("samplers",), (), (),
         (Section("samplers", 15, ("samplers",)),)),
    Part("transformer", "transformer", ("transformer",), ("decoding",), ("samplers",),  # generation through the model
         (Section("transformer", 25, ("transformer", "samplers")),)),
    Part("train", "training", ("train",), ("console", "loop", "trainer", "generate"),
         ("preprocess", "samplers", ("transformer", "recurrent")),  # windows, samples while training, a model
         (Section("train", 20, ("train",)),
          Section("quality", 0, ("train", "transformer", "rnn", "lstm", "preprocess"))),
         hidden=("train", "quality")),
    Part("modern", "the modern decoder", ("modern", "optim"), (), ("transformer", "samplers", "train"),  # attention
         (Section("modern", 20, ("modern", "transformer", "samplers")),  # of part 4, generation, training it
          Section("optimizer", 10, ("optim",)))),
    Part("ngram", "n-gram language models", ("ngram",), ("baseline",), ("preprocess", "samplers"),  # the command
         (Section("ngram", 10, ("ngram", "samplers")),)),  # tokenizes; generation goes through part 3's samplers
    Part("finetune", "fine-tuning", ("finetune",), ("finetuner",), (("transformer", "modern"), "train", "samplers"),
         (Section("finetune", 10, ("finetune",)),)),  # its tests adapt a tiny model of the probes, not part 4's
)
"""Every part, in the order of the `all` course (the handout's order)."""

AUDIT = Section("audit", 5, ())
"""The from-scratch audit: every course has it, last in the report; its points scale with the points earned before."""

BY_KEY = {part.key: part for part in PARTS}
SECTIONS: tuple[Section, ...] = (*(s for part in PARTS for s in part.sections), AUDIT)
"""Every graded section, in report order."""
SECTION_BY_NAME = {section.name: section for section in SECTIONS}
NAMES = tuple(section.name for section in SECTIONS)
"""Every section, in report order."""
WITH_FIXTURES = tuple(section.name for part in PARTS for section in part.sections)
"""Sections whose tests call the submission with hidden inputs and expected values (all but the audit)."""
GRADED = tuple(name for name in WITH_FIXTURES if SECTION_BY_NAME[name].points > 0)
"""Sections that count by default (not the audit, not quality)."""
MODULES = tuple(module for part in PARTS for module in part.modules)
"""Student modules, in table order (the worker imports the submission's at start)."""
PART_OF_SECTION = {section.name: part for part in PARTS for section in part.sections}
PART_OF_MODULE = {module: part for part in PARTS for module in part.modules}


def sections_seeing(module: str) -> tuple[str, ...]:
    """The graded sections whose results a change to `module` can change."""
    return tuple(s.name for s in SECTIONS if module in s.sees and s.name in GRADED)
