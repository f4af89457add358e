"""The optional model-quality gate: the worker's checkpoint probe and the judge's test on a submitted run directory."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from scipy.special import log_softmax

from assignment import runs, trainer
from autograder.judge.context import HiddenValues
from autograder.judge.hidden import quality
from autograder.judge.registry import TestFailure
from autograder.recording.inprocess import REFERENCE
from autograder.recording.record import build_fixtures
from autograder.worker.probes import quality as probes

TEXT = "".join(f"{i}: the fox met the crow by the river.\n" for i in range(200))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = root / "submission" / "runs" / "tiny"
    argv = ["--model", "transformer", "--text", str(corpus), "--splits-dir", str(root / "splits"), "--out", str(out),
            "--steps", "6", "--batch-size", "4", "--context-length", "32", "--eval-every", "3", "--eval-batches", "1",
            "--sample-tokens", "3", "--warmup-steps", "1", "--d-model", "16", "--num-heads", "2", "--num-layers", "1"]
    assert trainer.main(argv) == 0
    return out


def test_probe_nll_equals_the_log_softmax_of_the_restored_model_on_one_window(run_dir):
    text = TEXT[:30]  # 30 characters = 30 char tokens: one window of the context length 32
    reply = probes.checkpoint_nll(REFERENCE, run_dir=str(run_dir), text=text)
    model, tokenizer, _ = runs.load_run(run_dir)
    ids = np.asarray(tokenizer.encode(text))
    log_probs = log_softmax(np.asarray(model(ids[None, :-1].astype(np.int32)), np.float64)[0], axis=-1)
    expected = -log_probs[np.arange(len(ids) - 1), ids[1:]].sum()
    assert reply["characters"] == len(text) - 1  # every character but the first is predicted
    assert reply["nll"] == pytest.approx(expected, rel=1e-5)


def test_probe_scores_every_token_of_a_text_longer_than_the_context_once(run_dir):
    text = TEXT[:1000]
    reply = probes.checkpoint_nll(REFERENCE, run_dir=str(run_dir), text=text)
    assert reply["characters"] == 999
    model, tokenizer, config = runs.load_run(run_dir)
    ids = np.asarray(tokenizer.encode(text))
    t = config["context_length"]
    expected = 0.0
    for start in range(0, len(ids) - 1, t):  # windows of t predicted tokens, the last one shorter (999 = 31 * 32 + 7)
        inputs, labels = ids[start : start + t], ids[start + 1 : start + t + 1]
        inputs = inputs[: len(labels)]
        log_probs = log_softmax(np.asarray(model(inputs[None].astype(np.int32)), np.float64)[0], axis=-1)
        expected -= log_probs[np.arange(len(labels)), labels].sum()
    assert reply["nll"] == pytest.approx(expected, rel=1e-5)


TEST_ID = "quality.checkpoint_perplexity"


class Context(HiddenValues):
    """What the judge gives the quality test: the stored hidden test text (None: no corpus at build time), the
    submission directory, the checkpoint probe (run in this process) and the leaderboard."""

    def __init__(self, submission_dir, text: str | None, board: list):
        self.fixtures = {f"{TEST_ID}/test_text": text}
        self.seed = 0
        self.submission_dir = submission_dir
        self.board = board
        self.start_test(TEST_ID)

    def call(self, probe, **kwargs):
        assert probe == "quality.checkpoint_nll", probe
        return probes.checkpoint_nll(REFERENCE, **kwargs)

    def leaderboard(self, *entry):
        self.board.append(entry)


def test_fixtures_draw_an_excerpt_of_the_test_split_that_starts_at_a_speech():
    from data import prepare

    fixtures = build_fixtures(7, ["quality"])
    assert list(fixtures) == [f"{TEST_ID}/test_text"]
    text = fixtures[f"{TEST_ID}/test_text"]
    try:
        test_split = prepare.split_plays(prepare.shakespeare_plays())["test"]
    except prepare.CorpusError:
        assert text is None
        return
    assert len(text) == quality.QUALITY_CHARACTERS and ("\n\n" + text) in test_split
    assert build_fixtures(7, ["quality"]) == fixtures


def test_judge_reports_a_build_without_test_text_as_not_configured(tmp_path):
    with pytest.raises(TestFailure, match="not configured"):
        quality.test_checkpoint_perplexity(Context(tmp_path, None, []))


def test_judge_reports_the_perplexity_on_the_leaderboard_and_applies_the_threshold(run_dir, monkeypatch):
    board = []
    ctx = Context(run_dir.parent.parent, TEXT[:600], board)
    assert quality.find_run_directory(run_dir.parent.parent) == run_dir
    monkeypatch.setattr(quality, "MAX_PERPLEXITY_PER_CHARACTER", 1e6)
    quality.test_checkpoint_perplexity(ctx)
    (name, value, order), = board
    assert name == "perplexity per character" and order == "asc" and 1 < value < 1e6
    monkeypatch.setattr(quality, "MAX_PERPLEXITY_PER_CHARACTER", 1.0)
    with pytest.raises(TestFailure, match="above the threshold"):
        quality.test_checkpoint_perplexity(ctx)


def test_judge_explains_a_missing_run_directory(tmp_path):
    ctx = Context(tmp_path, "x" * 100, [])
    with pytest.raises(TestFailure, match="no checkpoint submitted"):
        quality.test_checkpoint_perplexity(ctx)
