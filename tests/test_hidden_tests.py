"""Kit tests of the autograder's hidden test content (autograder/judge/hidden, autograder/worker/probes).

Probes run in-process against the reference package `assignment` through a fake Context that passes requests and
replies through the worker protocol's own encoding (as `InProcessContext` does), so each hidden test can be run exactly
as the judge runs it. The samplers' chi-square design is checked for power against the classic bugs, and a misnamed
sublayer gets a message that names it; deliberately broken implementations live in the one mutant catalog
(`autograder/qa/mutants/`, run by tests/test_mutants.py).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest

from autograder import parts
from autograder.judge.hidden import oracles
from autograder.judge.hidden import preprocess as hidden_preprocess
from autograder.judge.hidden.samplers import ALPHA, MIN_EXPECTED, NUM_DRAWS
from autograder.judge.registry import ALL_TESTS
from autograder.judge.registry import TestFailure as Failure
from autograder.recording.inprocess import REFERENCE, InProcessContext
from autograder.recording.record import build_fixtures

SEED = 1234
TEST_IDS = {t.id for t in ALL_TESTS}


class Submission:
    """The probes' submission accessor over the reference package, with some modules replaced."""

    def __init__(self, **replaced: Any):
        self.replaced = replaced

    def module(self, name: str) -> Any:
        if name in self.replaced:
            return self.replaced[name]
        return REFERENCE.module(name)


class FakeContext(InProcessContext):
    """What the judge gives a test (hidden values, seed, call), with probes run in this process; records the probes
    called."""

    def __init__(self, fixtures: dict, sub: Submission):
        super().__init__(fixtures, sub, SEED)
        self.sub = sub
        self.calls: list[str] = []

    def call(self, probe: str, **kwargs: Any) -> Any:
        self.calls.append(probe)
        return super().call(probe, **kwargs)


@pytest.fixture(scope="module")
def fixtures() -> dict:
    return build_fixtures(SEED, guards=())  # the guard has its own tests (test_record.py)


def part_tests(part: str) -> list:
    return [t for t in ALL_TESTS if t.part == part]


def run(test, fixtures: dict, **replaced: Any) -> str | None:
    """Run one hidden test; None when it passes, else the failure message."""
    ctx = FakeContext(fixtures, Submission(**replaced))
    ctx.start_test(test.id)
    try:
        result = test.fn(ctx)
    except Failure as exc:
        return str(exc) or "failed"
    assert result is None or 0.0 <= result <= 1.0
    return None if result in (None, 1.0) else f"partial credit {result}"


def find(name_start: str):
    matches = [t for t in ALL_TESTS if t.name.startswith(name_start)]
    assert len(matches) == 1, (name_start, [t.name for t in matches])
    return matches[0]


def namespace(module_name: str, **overrides: Any) -> types.SimpleNamespace:
    """A stand-in for a reference module with some attributes replaced (a 'broken submission')."""
    module = REFERENCE.module(module_name)
    ns = types.SimpleNamespace(**{k: getattr(module, k) for k in dir(module) if not k.startswith("__")})
    ns.__dict__.update(overrides)
    return ns


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


# ---------------------------------------------------------------------------------------------------- fixtures
def test_fixtures_are_plain_namespaced_and_deterministic(fixtures: dict) -> None:
    import json

    for key, value in fixtures.items():
        assert key.split("/")[0] in TEST_IDS, key  # every value belongs to the test that declared it
        if isinstance(value, np.ndarray):
            assert value.dtype.kind in "biuf", key
        else:
            json.dumps(value)
    again = build_fixtures(SEED, guards=())
    assert sorted(again) == sorted(fixtures)
    assert all(same(again[k], fixtures[k]) for k in fixtures)


def test_fixtures_change_with_the_seed(fixtures: dict) -> None:
    parts = ("preprocess", "samplers", "transformer", "train")
    other = build_fixtures(SEED + 1, parts=parts, guards=())
    for part in parts:
        keys = [k for k in other if k.startswith((part + "/", part + "."))]
        assert keys and not all(same(other[k], fixtures[k]) for k in keys), part


# ---------------------------------------------------------------------------------------------------- reference
GRADED = [t for t in ALL_TESTS if t.part in parts.GRADED]


def test_encode_texts_always_include_one_that_separates_leftmost_merging() -> None:
    from assignment.preprocess import pretokenize

    # (2, 3) is learned before (1, 2): on bytes 1 2 3 the learned order merges 2 with 3 first, leftmost-first merging
    # merges 1 with 2. Random corpus words never hold these control bytes, so the text has to be constructed.
    merges = [(2, 3), (1, 2)]
    texts = hidden_preprocess._encode_texts(np.random.default_rng(0), merges, pretokenize, count=2, tries=0)
    assert "\x01\x02\x03" in texts and texts[-1] == ""
    assert any(oracles.bpe_encode_leftmost(pretokenize(t), merges) != oracles.bpe_encode_naive(pretokenize(t), merges)
               for t in texts)


@pytest.mark.parametrize("test", GRADED, ids=[t.name for t in GRADED])
def test_reference_passes(test, fixtures: dict) -> None:
    assert run(test, fixtures) is None


def test_every_part_has_tests_with_positive_weights() -> None:
    for part in parts.GRADED:
        assert part_tests(part) and all(t.weight > 0 for t in part_tests(part)), part
    names = [t.name for t in ALL_TESTS]
    assert len(names) == len(set(names))


# ---------------------------------------------------------------------------------------------------- samplers
SAMPLER_DESIGN_TESTS = ("samplers.temperature_distribution", "samplers.top_k_distribution",
                        "samplers.top_p_distribution")
"""The goodness-of-fit tests, each with its own recorded design (logits, settings and exact laws)."""


def test_sampler_design_detects_the_classic_bugs(fixtures: dict) -> None:
    """Analytic power from the stored design, confirmed by simulating the judge's test on multinomial counts."""
    from autograder.judge.hidden.common import goodness_of_fit

    rng = np.random.default_rng(0)
    designs = [(test_id, fixtures[f"{test_id}/logits"], name, s) for test_id in SAMPLER_DESIGN_TESTS
               for name, s in fixtures[f"{test_id}/settings"].items()]
    assert sorted(d[2] for d in designs) == sorted(
        ["low_temperature", "high_temperature", "top_k", "top_p", "temperature_top_p"])
    for test_id, logits, name, s in designs:
        probs = fixtures[f"{test_id}/probs/{name}"]
        assert np.allclose(probs, oracles.sampling_distribution(logits, s["temperature"], s["top_k"], s["top_p"]))
        mutants = oracles.mutant_distributions(logits, s["temperature"], s["top_k"], s["top_p"])
        assert len(mutants) >= 2, name
        for bug, q in mutants.items():
            assert oracles.miss_probability(probs, q, NUM_DRAWS, ALPHA, MIN_EXPECTED) < 1e-9, (name, bug)
            for counts in rng.multinomial(NUM_DRAWS, q, size=20):
                with pytest.raises(Failure) if (q[probs == 0] > 0).any() else _no_raise():
                    assert goodness_of_fit(counts, probs, MIN_EXPECTED) < ALPHA, (name, bug)
        p_values = [goodness_of_fit(c, probs, MIN_EXPECTED) for c in rng.multinomial(NUM_DRAWS, probs, size=200)]
        assert min(p_values) > ALPHA and 0.3 < np.mean(p_values) < 0.7, name


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------------- transformer
def test_model_oracle_names_a_missing_sublayer(fixtures: dict) -> None:
    import keras

    ref = REFERENCE.module("transformer")

    class Renamed(ref.TransformerLanguageModel):
        """Correct logits, but the final LayerNorm is called head_norm instead of the prescribed final_norm."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.head_norm = self.final_norm
            del self.final_norm

        def build(self, input_shape):
            self.final_norm = self.head_norm
            super().build(input_shape)
            del self.final_norm

        def call(self, tokens, training=False):
            h = self.token_embedding(tokens) + self.positions(0, tokens.shape[1])
            for block in self.blocks:
                h = block(h, training=training)
            h = self.head_norm(h)
            return keras.ops.einsum("btd,vd->btv", h, self.token_embedding.embeddings) + self.output_bias

    message = run(find("TransformerLanguageModel equals the pre-LN oracle"), fixtures,
                  transformer=namespace("transformer", TransformerLanguageModel=Renamed))
    assert message is not None and "TransformerLanguageModel.final_norm does not exist" in message, message


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 10, 31, 64, 199, 400])
def test_chi_square_survival_equals_scipys(df: int) -> None:
    from scipy import special

    from autograder.judge.hidden.common import chi_square_survival

    for x in [0.0, 1e-3, 0.5, df / 2, df, df + 3 * np.sqrt(2 * df), df + 10 * np.sqrt(2 * df), 4 * df + 60]:
        expected = float(special.chdtrc(df, x))
        assert chi_square_survival(df, float(x)) == pytest.approx(expected, rel=1e-9, abs=1e-300), (df, x)
