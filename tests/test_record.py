"""Recording the fixtures with guards: a test's hidden values are drawn again when a correct solution fails them, the
kept draw is the first one every solution passes, and a test that no draw lets pass stops the build."""

from __future__ import annotations

import sys
import types
import zlib

import numpy as np
import pytest

from autograder.judge.context import rng_seed
from autograder.judge.registry import HiddenTest, TestFailure
from autograder.recording import inprocess
from autograder.recording.record import (
    MAX_ATTEMPTS,
    Guard,
    RecordingError,
    build_fixtures,
    record_test,
    use_worker_kernels,
)
from autograder.worker.protocol import ProtocolError

SEED = 97
ROWS, VOCAB = 3, 6


def _draw(attempt: int, test_id: str) -> np.ndarray:
    """The logits that draw `attempt` of the toy test makes (the same generator calls as the test's make)."""
    return np.random.default_rng(rng_seed(SEED, test_id, attempt)).normal(0.0, 1.0, (ROWS, VOCAB)).astype(np.float32)


def _greedy_test(oracle=lambda logits: np.argmax(logits, axis=-1)) -> HiddenTest:
    """A toy hidden test of the samplers part (not registered): greedy on hidden logits, checked against `oracle`."""

    def fn(ctx) -> None:
        logits = ctx.hidden("logits", lambda: ctx.rng.normal(0.0, 1.0, (ROWS, VOCAB)).astype(np.float32))
        expected = ctx.expected("ids", lambda: oracle(logits).astype(np.int64))
        reply = ctx.call("call", module="samplers", function="greedy", args=[logits])
        if not np.array_equal(np.asarray(reply["value"]), expected):
            raise TestFailure("greedy must return the argmax of each row.")

    return HiddenTest("samplers.toy_greedy", "toy greedy test", "samplers", 1.0, fn)


class Solution:
    """A submission whose samplers module is the reference's, with `greedy` replaced."""

    def __init__(self, greedy):
        self.samplers = types.SimpleNamespace(greedy=greedy)

    def module(self, name: str):
        assert name == "samplers"
        return self.samplers


def test_attempt_zero_keeps_the_seed_of_fixtures_recorded_before_redraws() -> None:
    crc = zlib.crc32(b"samplers.greedy")
    assert rng_seed(SEED, "samplers.greedy") == rng_seed(SEED, "samplers.greedy", 0) == [SEED, crc]
    assert rng_seed(SEED, "samplers.greedy", 2) == [SEED, crc, 2]


def test_a_draw_a_correct_solution_fails_is_drawn_again() -> None:
    """A fragile solution that is wrong only on the first draw's logits: the kept values are those of draw 1."""
    test = _greedy_test()
    first = _draw(0, test.id)

    def fragile_greedy(logits):
        ids = np.argmax(np.asarray(logits), axis=-1)
        return (ids + 1) % VOCAB if np.array_equal(np.asarray(logits), first) else ids

    values, rejected = record_test(test, SEED, [Guard("fragile", ("samplers",), Solution(fragile_greedy))])
    assert rejected == [["fragile"]]
    assert not np.array_equal(values[f"{test.id}/logits"], first)
    np.testing.assert_array_equal(values[f"{test.id}/logits"], _draw(1, test.id))
    np.testing.assert_array_equal(values[f"{test.id}/ids"], np.argmax(_draw(1, test.id), axis=-1))


def test_guards_of_other_parts_are_not_run() -> None:
    test = _greedy_test()

    def broken(logits):
        raise AssertionError("a guard of another part ran")

    values, rejected = record_test(test, SEED, [Guard("other part", ("train",), Solution(broken))])
    assert rejected == []
    np.testing.assert_array_equal(values[f"{test.id}/logits"], _draw(0, test.id))


def test_a_test_no_alternative_passes_stops_the_build() -> None:
    test = _greedy_test()
    wrong = Guard("always wrong", ("samplers",), Solution(lambda logits: np.zeros(ROWS, np.int64) - 1))
    with pytest.raises(RecordingError, match=rf"samplers.toy_greedy .*seed {SEED}.* in {MAX_ATTEMPTS} .*"
                                             r"draw 0, always wrong: greedy must return"):
        record_test(test, SEED, [wrong])


def test_a_test_the_reference_fails_on_every_draw_stops_the_build() -> None:
    test = _greedy_test(oracle=lambda logits: np.argmin(logits, axis=-1))
    with pytest.raises(RecordingError, match=rf"draw {MAX_ATTEMPTS - 1}, reference: greedy must return"):
        record_test(test, SEED, [])


def test_the_probability_top_p_seed_is_redrawn_and_passes(tmp_path) -> None:
    """Fixture seed 11 is one of the seeds whose first top-p draw splits a float32 tie for the top-p filter that
    compares probabilities: the build draws again, and that solution passes the kept values."""
    from autograder.recording.alternatives import TOP_P_BY_PROBABILITIES
    from autograder.recording.edits import PackageSubmission, write_submission

    redraws: dict = {}
    fixtures = build_fixtures(11, ["samplers"], redraws)
    assert redraws["samplers.top_p_kept_set"][0] == ["alternative top-p-probabilities"]
    test = inprocess.matching(inprocess.hidden_tests(["samplers"]), ["samplers.top_p_kept_set"])[0]
    first: dict = {}
    ctx = inprocess.InProcessContext(first, inprocess.REFERENCE, 11)
    ctx.recording = True
    assert inprocess.run_test(test, ctx).passed  # the reference passes the first draw ...
    alternative = PackageSubmission(write_submission(TOP_P_BY_PROBABILITIES.edits, tmp_path), "top_p_probs")
    try:
        assert not inprocess.run_tests([test], first, alternative, 11)[0].passed  # ... the alternative does not
        assert inprocess.run_tests([test], fixtures, alternative, 11)[0].passed  # and passes the kept draw
    finally:
        alternative.unload()
    assert not np.array_equal(first["samplers.top_p_kept_set/logits"], fixtures["samplers.top_p_kept_set/logits"])


def test_recording_refuses_other_kernels_once_tensorflow_is_imported(monkeypatch) -> None:
    import tensorflow  # noqa: F401 - recording is refused only once TensorFlow is loaded with other kernels

    assert "tensorflow" in sys.modules
    use_worker_kernels()  # the kit tests run with the worker's kernels (conftest.py)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    with pytest.raises(RecordingError, match="TF_ENABLE_ONEDNN_OPTS=0"):
        use_worker_kernels()


def test_in_process_values_make_the_worker_protocol_round_trip() -> None:
    """What an in-process probe call receives and returns is what the protocol delivers: tuples become lists, numpy
    scalars Python numbers, and a value the protocol refuses (an object array, a non-string key, nesting past its
    depth limit) fails the test as it would fail in the worker."""
    value = inprocess.plain({"pair": (1, np.float32(2.5)), "ids": np.arange(3, dtype=np.int32)})
    assert value["pair"] == [1, 2.5] and type(value["pair"][1]) is float
    assert value["ids"].dtype == np.int32 and value["ids"].tolist() == [0, 1, 2]
    deep: list = []
    for _ in range(70):
        deep = [deep]
    for refused in (np.array([object()]), {1: "one"}, deep):
        with pytest.raises(ProtocolError):
            inprocess.plain(refused)
    ctx = inprocess.InProcessContext({}, inprocess.REFERENCE)
    with pytest.raises(TestFailure, match="nested too deeply"):
        ctx.call("call", module="samplers", function="greedy", args=[deep])
