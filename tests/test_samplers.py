"""Tests of part 3 (assignment/samplers.py): filters, greedy, seeded sampling and generation.

Kept sets are checked on hand-made logits (the reasoning is in the comments) and against the numpy definitions of the
handout's rules that the judge records its expected values with (`autograder/judge/hidden/oracles.py`); sampled
frequencies are checked with a chi-square goodness-of-fit test against those oracles' distributions; generation runs
on small fake models whose next token is a known function of the tokens they were fed, so the expected output can be
worked out by hand.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from assignment import samplers
from autograder.judge.hidden.oracles import mass_strictly_above, sampling_distribution, softmax, top_k_kept, top_p_kept

NEG_INF = -np.inf


def kept(filtered) -> list[list[bool]]:
    return np.isfinite(np.asarray(filtered)).tolist()


# ------------------------------------------------------------------------------------------------ greedy, temperature
def test_greedy_takes_the_argmax_and_breaks_ties_by_the_lowest_index():
    logits = np.array([[0.1, 2.0, -1.0, 2.0], [3.0, 3.0, 3.0, 3.0], [-5.0, -4.0, -6.0, -4.5]], np.float32)
    ids = samplers.greedy(logits)
    assert ids.dtype == tf.int32 and ids.shape == (3,)
    # Row 0: tokens 1 and 3 tie at 2.0 -> 1; row 1: all equal -> 0; row 2: -4.0 is the largest -> 1.
    assert ids.numpy().tolist() == [1, 0, 1]


def test_sample_at_temperature_zero_is_greedy_and_ignores_the_filters():
    logits = np.array([[0.1, 2.0, -1.0, 2.0], [1.0, 0.0, 5.0, 4.9]], np.float32)
    for seed in (0, 1, 2):
        ids = samplers.sample(logits, temperature=0.0, top_k=1, top_p=1e-3, seed=seed)
        assert ids.dtype == tf.int32 and ids.numpy().tolist() == [1, 2]


def test_apply_temperature_divides_the_logits():
    logits = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -0.25]], np.float32)
    for t in (0.25, 1.0, 3.0):
        np.testing.assert_allclose(samplers.apply_temperature(logits, t).numpy(), logits / t, rtol=1e-6)
    # Below 1 sharpens (the top token gains probability), above 1 flattens.
    top = softmax(logits.astype(np.float64))[0, 0]
    assert softmax(samplers.apply_temperature(logits, 0.5).numpy())[0, 0] > top
    assert softmax(samplers.apply_temperature(logits, 2.0).numpy())[0, 0] < top


# ------------------------------------------------------------------------------------------------ top-k
def test_top_k_keeps_ties_at_the_kth_logit():
    logits = np.array([[3.0, 1.0, 2.0, 2.0, 0.0]], np.float32)
    # Sorted: 3, 2, 2, 1, 0. k = 1: only 3. k = 2: the 2nd largest is 2.0, held by two tokens -> both kept (3 tokens).
    assert kept(samplers.top_k_filter(logits, 1)) == [[True, False, False, False, False]]
    assert kept(samplers.top_k_filter(logits, 2)) == [[True, False, True, True, False]]
    # k = 3: the 3rd largest is still 2.0, so the same three tokens survive; k = 4 adds the 1.0.
    assert kept(samplers.top_k_filter(logits, 3)) == [[True, False, True, True, False]]
    assert kept(samplers.top_k_filter(logits, 4)) == [[True, True, True, True, False]]


def test_top_k_keeps_everything_when_k_reaches_the_vocabulary():
    logits = np.array([[0.5, -1.0, 2.0]], np.float32)
    for k in (3, 4, 100):
        np.testing.assert_array_equal(samplers.top_k_filter(logits, k).numpy(), logits)


def test_top_k_leaves_kept_logits_unchanged_and_sets_the_rest_to_minus_infinity():
    logits = np.array([[0.5, -1.0, 2.0, 1.0]], np.float32)
    out = samplers.top_k_filter(logits, 2).numpy()
    np.testing.assert_array_equal(out, [[NEG_INF, NEG_INF, 2.0, 1.0]])
    assert out.dtype == np.float32


def test_top_k_filters_each_row_of_a_batch_on_its_own():
    rng = np.random.default_rng(0)
    logits = (rng.integers(-4, 5, (64, 9)) * 0.5).astype(np.float32)  # a coarse grid: many ties
    for k in (1, 2, 4, 8, 9, 12):
        assert kept(samplers.top_k_filter(logits, k)) == top_k_kept(logits, k).tolist()


# ------------------------------------------------------------------------------------------------ top-p
def test_top_p_keeps_the_token_that_crosses_p():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    # Mass strictly above each token: 0, 0.5, 0.8, 0.95.
    # p = 0.6: 0 and 0.5 are < 0.6, so the second token (where the running mass crosses 0.6) is kept.
    assert kept(samplers.top_p_filter(logits, 0.6)) == [[True, True, False, False]]
    # p = 0.45: the first token alone already reaches 0.45, so the mass 0.5 above the second is not < 0.45.
    assert kept(samplers.top_p_filter(logits, 0.45)) == [[True, False, False, False]]
    # p = 0.9: 0.8 < 0.9 keeps the third token, 0.95 drops the last.
    assert kept(samplers.top_p_filter(logits, 0.9)) == [[True, True, True, False]]


def test_top_p_keeps_or_drops_tied_tokens_together():
    logits = np.log(np.array([[0.4, 0.2, 0.2, 0.2]], np.float32))
    # Each 0.2 token has mass 0.4 strictly above it (the other 0.2s are not *strictly* more probable), so with
    # p = 0.5 all three are kept, although the first of them alone already brings the running sum to 0.6.
    assert kept(samplers.top_p_filter(logits, 0.5)) == [[True, True, True, True]]
    # With p = 0.3 the mass 0.4 above them is not < 0.3: all three are dropped together.
    assert kept(samplers.top_p_filter(logits, 0.3)) == [[True, False, False, False]]
    # The tie order in the vocabulary must not matter.
    shuffled = logits[:, [1, 0, 3, 2]]
    assert kept(samplers.top_p_filter(shuffled, 0.3)) == [[False, True, False, False]]


def test_top_p_always_keeps_the_most_likely_tokens():
    logits = np.log(np.array([[0.1, 0.35, 0.2, 0.35]], np.float32))
    # Mass strictly above the two 0.35 tokens is 0, which is < any p > 0: both most likely tokens survive.
    assert kept(samplers.top_p_filter(logits, 1e-6)) == [[False, True, False, True]]


def test_top_p_of_one_keeps_everything_even_underflowing_tokens():
    # exp(-200) underflows to 0 in float32, yet its true probability is positive, so p = 1 must keep it.
    logits = np.array([[0.0, -1.0, -200.0], [5.0, 5.0, 5.0]], np.float32)
    np.testing.assert_array_equal(samplers.top_p_filter(logits, 1.0).numpy(), logits)


def test_top_p_is_shift_invariant_and_leaves_kept_logits_unchanged():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32)) + 7.0
    out = samplers.top_p_filter(logits, 0.6).numpy()
    np.testing.assert_array_equal(out, [[logits[0, 0], logits[0, 1], NEG_INF, NEG_INF]])


def test_top_p_matches_the_brute_force_rule_on_batches_with_ties():
    rng = np.random.default_rng(1)
    logits = (rng.integers(-4, 7, (200, 12)) * 0.5).astype(np.float32)  # 0.5 grid: ties in most rows
    for p in (0.05, 0.3, 0.55, 0.8, 0.97):
        # Rows whose mass-strictly-above lands within 1e-5 of p are float-rounding coin flips: skip them.
        safe = np.min(np.abs(mass_strictly_above(logits) - p), axis=1) > 1e-5
        assert safe.sum() > 150
        got = np.isfinite(samplers.top_p_filter(logits, p).numpy())
        np.testing.assert_array_equal(got[safe], top_p_kept(logits, p)[safe])


# ------------------------------------------------------------------------------------------------ sampling law
ALPHA = 1e-3  # a correct sampler fails one comparison with probability ALPHA (seeds are fixed, so the run is stable)
NUM_DRAWS = 20_000
DRAW_LOGITS = np.array([1.2, 0.4, -0.3, 2.0, 0.9, -1.5, 0.0, 0.4], np.float32)


def chi_square_p_value(ids: np.ndarray, probs: np.ndarray) -> float:
    """Pearson chi-square p-value of the drawn ids against probs; tokens of probability 0 must never be drawn."""
    counts = np.bincount(ids, minlength=len(probs))
    possible = probs > 0
    assert counts[~possible].sum() == 0, "a filtered-out token was drawn"
    expected = NUM_DRAWS * probs[possible]
    assert expected.min() >= 5, "test design: every cell needs an expected count >= 5"
    return float(stats.chisquare(counts[possible], expected).pvalue)


def draw(seed: int, **settings) -> np.ndarray:
    tiled = tf.tile(tf.constant(DRAW_LOGITS[None, :]), [NUM_DRAWS, 1])
    ids = samplers.sample(tiled, seed=seed, **settings)
    assert ids.dtype == tf.int32 and ids.shape == (NUM_DRAWS,)
    return ids.numpy()


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"temperature": 0.5},
        {"temperature": 2.0},
        {"temperature": 0.7, "top_k": 3},
        # Two tokens tie at 0.4: top_k = 4 keeps both (5 tokens), so the law has five cells.
        {"temperature": 1.0, "top_k": 4},
        {"top_p": 0.7},
        {"temperature": 0.6, "top_p": 0.8},
        # Top-5 keeps 2.0, 1.2, 0.9 and the two 0.4 tokens; mass strictly above the tied pair is 0.75 < 0.85, so
        # top-p keeps both of them (five cells), while a "stop once the running sum reaches p" sampler keeps one.
        {"temperature": 1.5, "top_k": 5, "top_p": 0.85},
    ],
)
def test_sample_follows_the_filtered_softmax(settings):
    probs = sampling_distribution(DRAW_LOGITS, **settings)
    assert chi_square_p_value(draw(seed=11, **settings), probs) > ALPHA


def test_the_goodness_of_fit_test_rejects_a_wrong_law():
    # Power check of the test above: the draws at temperature 0.5 are clearly not softmax(logits * 0.5).
    ids = draw(seed=11, temperature=0.5)
    wrong = softmax(DRAW_LOGITS.astype(np.float64) * 0.5)
    assert chi_square_p_value(ids, wrong) < 1e-12


def test_top_k_one_and_tiny_top_p_always_draw_the_argmax():
    assert set(draw(seed=3, top_k=1).tolist()) == {3}
    assert set(draw(seed=4, top_p=1e-4).tolist()) == {3}


# ------------------------------------------------------------------------------------------------ seeds
def test_the_same_seed_gives_the_same_ids_and_different_seeds_differ():
    logits = tf.zeros([500, 10])
    first = samplers.sample(logits, seed=5).numpy()
    assert np.array_equal(first, samplers.sample(logits, seed=5).numpy())
    assert not np.array_equal(first, samplers.sample(logits, seed=6).numpy())
    pair = tf.constant([5, 9], tf.int32)
    assert np.array_equal(samplers.sample(logits, seed=pair).numpy(), samplers.sample(logits, seed=pair).numpy())
    assert not np.array_equal(samplers.sample(logits, seed=pair).numpy(), first)


def test_an_int_seed_is_the_stateless_seed_pair_s_0():
    logits = tf.zeros([300, 7])
    np.testing.assert_array_equal(samplers.sample(logits, seed=42), samplers.sample(logits, seed=tf.constant([42, 0])))
    # And it is exactly the draw of tf.random.stateless_categorical with that seed.
    direct = tf.random.stateless_categorical(logits, 1, seed=[42, 0], dtype=tf.int32)[:, 0]
    np.testing.assert_array_equal(samplers.sample(logits, seed=42), direct)


def test_sample_without_a_seed_still_draws_valid_ids():
    ids = samplers.sample(tf.zeros([50, 4]))
    assert ids.shape == (50,) and ids.dtype == tf.int32
    assert 0 <= int(tf.reduce_min(ids)) and int(tf.reduce_max(ids)) < 4


# ------------------------------------------------------------------------------------------------ generate
class SumModel:
    """Fake LM: the logits after each position put `gap` on (sum of all tokens in the cache so far) % V.

    The state is (sum, length) of the cache. Every call is recorded as (number of tokens, state passed in), and a
    cache longer than `context_length` (when set) fails the test.
    """

    def __init__(self, vocab_size: int, context_length: int | None = None, gap: float = 50.0):
        self.vocab_size = vocab_size
        if context_length is not None:
            self.context_length = context_length
        self.limit = context_length
        self.gap = gap
        self.calls: list[tuple[int, tuple[int, int] | None]] = []

    def step(self, tokens, state=None):
        tokens = np.asarray(tokens)
        assert tokens.ndim == 2 and tokens.dtype == np.int32
        self.calls.append((tokens.shape[1], state))
        total, length = state if state is not None else (0, 0)
        running = total + np.cumsum(tokens, axis=1)  # [B, T]
        length += tokens.shape[1]
        assert self.limit is None or length <= self.limit, "the cache exceeded context_length"
        logits = self.gap * tf.one_hot(running % self.vocab_size, self.vocab_size)
        # With a batch the state keeps row 0's sum only; the batched tests below use equal-sum rows where it matters.
        return logits, (int(running[0, -1]), length)


def test_generate_returns_the_prompt_then_the_new_tokens():
    model = SumModel(vocab_size=7)
    ids = samplers.generate(model, [1, 2, 3], max_new_tokens=4, temperature=0.0)
    assert ids.dtype == tf.int32 and ids.shape == (7,)
    # Sums: 1+2+3 = 6 -> 6; 6+6 = 12 -> 5; 12+5 = 17 -> 3; 17+3 = 20 -> 6.
    assert ids.numpy().tolist() == [1, 2, 3, 6, 5, 3, 6]
    # One call with the prompt (fresh state), then one call per new token but the last, each with the last state.
    assert model.calls == [(3, None), (1, (6, 3)), (1, (12, 4)), (1, (17, 5))]


def test_generate_keeps_a_batch_dimension_and_an_empty_continuation():
    model = SumModel(vocab_size=7)
    prompt = np.array([[1, 2, 3], [3, 2, 1]], np.int32)  # equal sums, so one shared state is enough for the fake
    ids = samplers.generate(model, prompt, max_new_tokens=2, temperature=0.0)
    assert ids.shape == (2, 5)
    assert ids.numpy().tolist() == [[1, 2, 3, 6, 5], [3, 2, 1, 6, 5]]
    unchanged = samplers.generate(model, tf.constant([4, 5]), max_new_tokens=0)
    assert unchanged.dtype == tf.int32 and unchanged.numpy().tolist() == [4, 5]


def test_generate_restarts_the_cache_at_the_context_length():
    model = SumModel(vocab_size=7, context_length=5)
    ids = samplers.generate(model, [1, 2, 3], max_new_tokens=5, temperature=0.0)
    # [1,2,3] sum 6 -> 6; feed 6 (cache 4) sum 12 -> 5; feed 5 (cache 5 = full) sum 17 -> 3.
    # Feeding 3 would make 6 positions: restart from the last 5 // 2 = 2 tokens [5, 3], sum 8 -> 1 (without the
    # restart the sum would be 20 -> 6). Feed 1 (cache 3) sum 9 -> 2.
    assert ids.numpy().tolist() == [1, 2, 3, 6, 5, 3, 1, 2]
    assert model.calls == [(3, None), (1, (6, 3)), (1, (12, 4)), (2, None), (1, (8, 2))]


def test_generate_cuts_a_long_prompt_to_the_context_length():
    model = SumModel(vocab_size=7, context_length=4)
    ids = samplers.generate(model, [1, 2, 3, 4, 5, 6], max_new_tokens=1, temperature=0.0)
    # Only the last 4 prompt tokens fit: 3+4+5+6 = 18 -> 4.
    assert ids.numpy().tolist() == [1, 2, 3, 4, 5, 6, 4]
    assert model.calls == [(4, None)]


class FixedModel:
    """Fake LM whose next-token logits are always the same row, whatever it is fed."""

    def __init__(self, logits: np.ndarray):
        self.logits = tf.constant(logits, tf.float32)

    def step(self, tokens, state=None):
        tokens = tf.convert_to_tensor(tokens)
        return tf.tile(self.logits[None, None, :], [tokens.shape[0], tokens.shape[1], 1]), state


def test_generate_draws_step_s_with_the_seed_pair_seed_s():
    logits = np.zeros(6, np.float32)
    model = FixedModel(logits)
    prompt = np.zeros([64, 1], np.int32)
    ids = samplers.generate(model, prompt, max_new_tokens=3, temperature=1.3, top_k=4, seed=9).numpy()
    tiled = tf.tile(tf.constant(logits[None, :]), [64, 1])
    for s in range(3):
        expected = samplers.sample(tiled, temperature=1.3, top_k=4, seed=tf.constant([9, s]))
        np.testing.assert_array_equal(ids[:, 1 + s], expected)
    again = samplers.generate(model, prompt, max_new_tokens=3, temperature=1.3, top_k=4, seed=9).numpy()
    np.testing.assert_array_equal(ids, again)


def test_generate_with_the_transformer_cache_matches_recomputing_the_window():
    transformer = pytest.importorskip("assignment.transformer")
    import keras

    keras.utils.set_random_seed(0)
    model = transformer.TransformerLanguageModel(vocab_size=11, context_length=6, d_model=16, num_heads=2,
                                                 num_layers=1)
    prompt = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
    ids = samplers.generate(model, prompt, max_new_tokens=7, temperature=1.0, seed=3).numpy()
    # Recompute every step from scratch (no cache) on the window the handout's rule gives: the cache holds the prompt,
    # grows by one token per step until it holds 6, then restarts from the last 6 // 2 = 3 tokens.
    seq, window = prompt, 3
    for s in range(7):
        logits = model(tf.constant(seq[:, -window:]))[:, -1, :]
        next_ids = samplers.sample(logits, temperature=1.0, seed=tf.constant([3, s])).numpy()
        seq = np.concatenate([seq, next_ids[:, None]], axis=1)
        window = 3 if window == 6 else window + 1
    np.testing.assert_array_equal(ids, seq)


# ------------------------------------------------------------------------------------------------ invalid arguments
LOGITS = np.array([[0.5, 1.0, -1.0]], np.float32)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: samplers.apply_temperature(LOGITS, 0.0), "temperature"),
        (lambda: samplers.apply_temperature(LOGITS, -2.0), "temperature"),
        (lambda: samplers.sample(LOGITS, temperature=-1.0, seed=0), "temperature"),
        (lambda: samplers.top_k_filter(LOGITS, 0), "k"),
        (lambda: samplers.top_k_filter(LOGITS, -3), "k"),
        (lambda: samplers.sample(LOGITS, top_k=0, seed=0), "top_k"),
        (lambda: samplers.top_p_filter(LOGITS, 0.0), "p"),
        (lambda: samplers.top_p_filter(LOGITS, 1.5), "p"),
        (lambda: samplers.top_p_filter(LOGITS, -0.1), "p"),
        (lambda: samplers.sample(LOGITS, top_p=2.0, seed=0), "top_p"),
        (lambda: samplers.generate(SumModel(5), [1, 2], 2, top_p=0.0), "top_p"),
        (lambda: samplers.greedy(LOGITS[0]), "logits"),
        (lambda: samplers.top_k_filter(LOGITS[None], 1), "logits"),
        (lambda: samplers.sample(LOGITS, seed=tf.constant([1, 2, 3])), "seed"),
        (lambda: samplers.generate(SumModel(5), np.zeros([0], np.int32), 3), "prompt"),
        (lambda: samplers.generate(SumModel(5), np.zeros([2, 0], np.int32), 3), "prompt"),
        (lambda: samplers.generate(SumModel(5), np.zeros([1, 1, 1], np.int32), 3), "prompt"),
        (lambda: samplers.generate(SumModel(5), [1, 2], -1), "max_new_tokens"),
        (lambda: samplers.generate(SumModel(5), [1, 2], 2, temperature=-0.5), "temperature"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


# ------------------------------------------------------------------------------------------------ autograder probes
class Reference:
    """The submission accessor the probes take, serving the reference package."""

    def module(self, name: str):
        import importlib

        return importlib.import_module(f"assignment.{name}")


def test_autograder_probes_accept_the_reference():
    registry = pytest.importorskip("autograder.worker.probes.registry")
    import autograder.worker.probes.samplers  # noqa: F401 - registers the probes

    def probe(name, **kwargs):
        return registry.PROBES[f"samplers.{name}"](Reference(), **kwargs)

    grid = np.array([[1.0, 0.5, 1.0, -0.5, 0.0], [0.0, 0.0, 0.5, 0.5, -1.0]], np.float32)
    reply = probe("greedy", logits=grid)
    assert reply["greedy"].tolist() == [0, 2] and reply["sample_t0"].tolist() == [0, 2]
    filtered = probe("filter", kind="top_k", logits=grid, values=[1, 3])["filtered"]
    assert np.isfinite(filtered).tolist() == top_k_kept(grid[:1], 1).tolist() + top_k_kept(grid[1:], 3).tolist()
    filtered = probe("filter_batch", kind="top_p", logits=grid, value=0.5)["filtered"]
    assert np.isfinite(filtered).tolist() == top_p_kept(grid, 0.5).tolist()
    np.testing.assert_allclose(probe("filter", kind="temperature", logits=grid, values=[0.5, 2.0])["filtered"],
                               grid / np.array([[0.5], [2.0]]), rtol=1e-6)
    ids = probe("draw", logits=DRAW_LOGITS, num_samples=100, seed=3, temperature=0.8, top_k=4, top_p=0.9)["ids"]
    assert ids.shape == (100,) and set(ids.tolist()) <= set(np.flatnonzero(top_k_kept(DRAW_LOGITS[None], 4)[0]))
    errors = probe("invalid_arguments")
    assert {case: error for case, error in errors.items() if case.startswith("valid: ")} == {
        "valid: sample with temperature, top_k and top_p": None
    }
    assert {error for case, error in errors.items() if not case.startswith("valid: ")} == {"ValueError"}
    assert set(probe("generate_invalid").values()) == {"ValueError"}
    # CountingModel: next token = (last + shift) % V with a large margin, so even temperature 1 follows it.
    reply = probe("generate", prompt=np.array([[3, 1], [4, 0]], np.int32), max_new_tokens=3, vocab_size=5, shift=2,
                  gap=30.0, temperature=1.0, seed=1)
    assert reply["ids"].tolist() == [[3, 1, 3, 0, 2], [4, 0, 2, 4, 1]]
    assert reply["calls"].tolist() == [[2, 0], [1, 2], [1, 3]]
