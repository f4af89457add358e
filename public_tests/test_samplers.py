"""Part 3, visible tests: greedy ties, temperature, top-k and top-p against brute force written here (on random rows
with ties), the top-p boundary and p = 1 on improbable tokens, chi-square tests of `sample` at fixed seeds, seeds, the
compiled sampler, and `generate` driving a fake model."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

LOGITS = np.log(np.array([[0.5, 0.3, 0.2, 1e-9], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32))
CHI_SQUARE_ALPHA = 1e-4
"""False-failure probability of each chi-square test below, for a correct `sample` at any seed."""
DRAWS = 4000
"""Draws per chi-square test (one row repeated DRAWS times: stateless_categorical draws every row independently)."""


def softmax64(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def brute_top_k(row: np.ndarray, k: int) -> np.ndarray:
    """Kept mask of one row: logit >= the k-th largest logit (ties kept, k >= V keeps all)."""
    return row >= np.sort(row)[::-1][min(k, len(row)) - 1]


def brute_top_p(row: np.ndarray, p: float) -> np.ndarray:
    """Kept mask of one row: the probability of the tokens with a strictly larger logit is < p (ties by logits)."""
    probs = softmax64(row)
    return np.array([probs[row > row[i]].sum() < p for i in range(len(row))])


def tied_rows(seed: int, rows: int = 40, vocab: int = 9) -> np.ndarray:
    """Random rows of logits from a coarse grid, so that most rows hold tied logits."""
    return (np.random.default_rng(seed).integers(-4, 5, size=(rows, vocab)) * 0.5).astype(np.float32)


def kept(filtered) -> np.ndarray:
    return np.isfinite(np.asarray(filtered))


def chi_square_p_value(ids: np.ndarray, probs: np.ndarray) -> float:
    """p-value of the draws `ids` under the distribution `probs` (tokens of probability 0 must never be drawn)."""
    counts = np.bincount(np.asarray(ids), minlength=len(probs))
    assert counts[probs == 0].sum() == 0, "a token that the filters remove was drawn"
    support = probs > 0
    return stats.chisquare(counts[support], probs[support] * len(ids)).pvalue


def draw(samplers, row: np.ndarray, seed: int, **kwargs) -> np.ndarray:
    ids = samplers.sample(np.tile(np.asarray(row, np.float32), (DRAWS, 1)), seed=seed, **kwargs)
    assert ids.shape == (DRAWS,) and ids.dtype.name == "int32"
    return np.asarray(ids)


# ---------------------------------------------------------------------------------------------- greedy, temperature
def test_greedy_picks_the_largest_logit_and_the_lowest_index_on_ties(samplers):
    ids = samplers.greedy(np.array([[0.0, 2.0, 1.0, 2.0], [-1.0, -1.0, -1.0, -3.0], [5.0, 0.0, 0.0, 5.0]], np.float32))
    assert ids.dtype.name == "int32"
    np.testing.assert_array_equal(ids, [1, 0, 0])


def test_temperature_divides_the_logits(samplers):
    np.testing.assert_allclose(samplers.apply_temperature(LOGITS, 2.0), LOGITS / 2.0, rtol=1e-6)
    np.testing.assert_allclose(samplers.apply_temperature(LOGITS, 0.25), LOGITS * 4.0, rtol=1e-6)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_temperature_must_be_positive(samplers, temperature):
    np.testing.assert_allclose(samplers.apply_temperature(LOGITS, 1e-3), LOGITS * 1e3, rtol=1e-6)
    with pytest.raises(ValueError):
        samplers.apply_temperature(LOGITS, temperature)


# ---------------------------------------------------------------------------------------------------- top-k
def test_top_k_keeps_the_k_largest(samplers):
    filtered = np.asarray(samplers.top_k_filter(LOGITS, 2))
    np.testing.assert_array_equal(np.isfinite(filtered), [[True, True, False, False], [False, False, True, True]])


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9, 12])
def test_top_k_matches_brute_force_on_rows_with_ties(samplers, k):
    logits = tied_rows(k)
    filtered = np.asarray(samplers.top_k_filter(logits, k))
    expected = np.array([brute_top_k(row, k) for row in logits])
    np.testing.assert_array_equal(kept(filtered), expected)
    np.testing.assert_array_equal(filtered[expected], logits[expected])  # kept logits unchanged, in place
    assert np.all(filtered[~expected] == -np.inf)


# ---------------------------------------------------------------------------------------------------- top-p
def test_top_p_keeps_the_token_that_crosses_p(samplers):
    filtered = np.asarray(samplers.top_p_filter(LOGITS, 0.6))
    # Row 0: 0.5 < 0.6 so the second token is kept too; row 1: 0.4 + 0.3 >= 0.6 stops after two tokens.
    np.testing.assert_array_equal(np.isfinite(filtered), [[True, True, False, False], [False, False, True, True]])


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_top_p_matches_brute_force_on_rows_with_ties(samplers, p):
    logits = tied_rows(int(p * 100))
    # Rows where some token's mass above it is within 1e-4 of p would depend on float32 rounding: leave them out.
    probs = softmax64(logits)
    margin = np.array([min(abs(probs[r][row > row[i]].sum() - p) for i in range(len(row)))
                       for r, row in enumerate(logits)])
    logits = logits[margin > 1e-4]
    assert len(logits) >= 30
    filtered = np.asarray(samplers.top_p_filter(logits, p))
    expected = np.array([brute_top_p(row, p) for row in logits])
    np.testing.assert_array_equal(kept(filtered), expected)
    np.testing.assert_array_equal(filtered[expected], logits[expected])  # kept logits unchanged, in place
    assert np.all(filtered[~expected] == -np.inf)


# V = 12 with three tied logits of 2.5 and two of -0.5: without oneDNN (the grader's kernels), tf.nn.softmax gives the
# two -0.5 tokens (positions 6 and 9) probabilities that differ in the last bit. The mass of the tokens with a larger
# logit than -0.5 is 0.95097, and with them 0.96386 (to 5 digits): ties are decided on the logits, so both -0.5 tokens
# are kept or dropped together, never one of them.
PITFALL_ROW = [1.5, 2.5, 2.5, -1, -2, -1, -0.5, 2.5, 0, -0.5, 1, -1.5]


@pytest.mark.parametrize("p", [0.96386, 0.96, 0.95])
def test_top_p_decides_ties_on_the_logits(samplers, p):
    row = np.array(PITFALL_ROW, np.float32)
    expected = brute_top_p(row, p)
    assert expected[6] == expected[9]
    np.testing.assert_array_equal(kept(samplers.top_p_filter(row[None, :], p))[0], expected)


def test_top_p_boundary_keeps_the_tie_that_reaches_p(samplers):
    # Probabilities .5, .25, .25 and 1e-9, exact in float32. At p = 0.75 the two .25 tokens are tied and the mass
    # strictly above them is .5 < .75: both are kept, although .5 + .25 already reaches p (keeping tokens while the
    # cumulative sum including them is <= p would keep one of the tie). The 1e-9 token has mass 1 above it: dropped.
    row = np.log(np.array([[0.5, 0.25, 0.25, 1e-9]], np.float32))
    expected = [[True, True, True, False]]
    np.testing.assert_array_equal(brute_top_p(row[0], 0.75)[None], expected)
    np.testing.assert_array_equal(kept(samplers.top_p_filter(row, 0.75)), expected)
    np.testing.assert_array_equal(kept(samplers.top_p_filter(row[:, ::-1], 0.75)), np.array(expected)[:, ::-1])


def test_top_p_of_one_keeps_everything(samplers):
    logits = tied_rows(1, rows=5)
    np.testing.assert_array_equal(samplers.top_p_filter(logits, 1.0), logits)
    # Improbable tokens: in float32 the mass above them rounds to exactly 1 (the first token's probability is 1.0), so
    # a literal `mass < p` test drops them at p = 1. The handout: p = 1 keeps everything.
    improbable = np.array([[0.0, -30.0, -45.0, -30.0], [2.0, 1.5, -40.0, -60.0]], np.float32)
    np.testing.assert_array_equal(samplers.top_p_filter(improbable, 1.0), improbable)


@pytest.mark.parametrize("p", [0.0, 1.5])
def test_top_p_outside_zero_one_raises(samplers, p):
    np.testing.assert_array_equal(kept(samplers.top_p_filter(LOGITS, 1e-6)), [[1, 0, 0, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError):
        samplers.top_p_filter(LOGITS, p)


# ---------------------------------------------------------------------------------------------------- sample
def test_sample_at_temperature_zero_is_greedy(samplers):
    logits = np.concatenate([LOGITS, tied_rows(2, rows=6, vocab=4)])
    expected = [int(np.argmax(row)) for row in logits]
    np.testing.assert_array_equal(samplers.sample(logits, temperature=0.0), expected)
    np.testing.assert_array_equal(samplers.sample(logits, temperature=0.0, top_k=1, top_p=0.1), expected)


def test_sample_is_reproducible_with_a_seed(samplers):
    logits = np.zeros((200, 8), np.float32)  # uniform: two unseeded draws of 200 ids agree with probability 8^-200
    first = samplers.sample(logits, temperature=1.0, seed=7)
    np.testing.assert_array_equal(first, samplers.sample(logits, temperature=1.0, seed=7))
    np.testing.assert_array_equal(first, samplers.sample(logits, temperature=1.0, seed=tf.constant([7, 0])))
    assert not np.array_equal(first, samplers.sample(logits, temperature=1.0, seed=8))


ROW = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], np.float32)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_follows_softmax_of_logits_over_temperature(samplers, temperature):
    ids = draw(samplers, ROW, seed=11, temperature=temperature)
    assert chi_square_p_value(ids, softmax64(ROW / temperature)) > CHI_SQUARE_ALPHA


def test_sample_with_top_k_follows_the_renormalised_distribution(samplers):
    row = np.array([1.0, 2.0, 0.0, 2.0, -1.0, 1.0], np.float32)  # k = 2 keeps the two 2.0 logits
    for temperature, seed in ((1.0, 12), (3.0, 13)):
        probs = np.where(brute_top_k(row / temperature, 2), softmax64(row / temperature), 0.0)
        ids = draw(samplers, row, seed=seed, temperature=temperature, top_k=2)
        assert chi_square_p_value(ids, probs / probs.sum()) > CHI_SQUARE_ALPHA


def test_sample_applies_the_temperature_before_top_p(samplers):
    # p = 0.7 keeps 2 tokens of the raw logits but 3 at temperature 2 (the handout's order: temperature, then top-p).
    scaled = ROW / 2.0
    assert brute_top_p(ROW, 0.7).sum() == 2 and brute_top_p(scaled, 0.7).sum() == 3
    probs = np.where(brute_top_p(scaled, 0.7), softmax64(scaled), 0.0)
    ids = draw(samplers, ROW, seed=14, temperature=2.0, top_p=0.7)
    assert chi_square_p_value(ids, probs / probs.sum()) > CHI_SQUARE_ALPHA


def test_sample_with_top_k_and_top_p_applies_both(samplers):
    # top_k = 4 keeps 3.0, 2.5, 2.0, 1.5; top-p 0.6 on those keeps 3.0 and 2.5 (0.455 + 0.276 of their mass, to 3
    # digits). Top-p on the whole row keeps the same two, so the order of the two filters does not matter here.
    row = np.array([3.0, 0.0, 2.0, -1.0, 1.5, 2.5, -2.0, 0.5], np.float32)
    after_k = np.where(brute_top_k(row, 4), row, -np.inf)
    keep = brute_top_p(after_k, 0.6)
    np.testing.assert_array_equal(keep, brute_top_p(row, 0.6))
    assert keep.sum() == 2
    probs = np.where(keep, softmax64(row), 0.0)
    ids = draw(samplers, row, seed=15, top_k=4, top_p=0.6)
    assert chi_square_p_value(ids, probs / probs.sum()) > CHI_SQUARE_ALPHA


@pytest.mark.parametrize("settings", [{"temperature": 1.5, "top_k": 3}, {"temperature": 0.7, "top_p": 0.8},
                                      {"temperature": 1.0, "top_k": 5, "top_p": 0.9}])
def test_compiled_sampler_makes_the_draws_of_sample_in_graph_mode(samplers, settings):
    # compiled_sampler (given) traces your sample into a tf.function: no .numpy() or Python branching on tensors.
    logits = tf.constant(tied_rows(3, rows=50))
    draw_compiled = samplers.compiled_sampler(**settings)
    for s in range(3):
        seed = tf.constant([5, s], tf.int64)
        np.testing.assert_array_equal(draw_compiled(logits, seed=seed), samplers.sample(logits, seed=seed, **settings))


# ---------------------------------------------------------------------------------------------------- generate
class CountingModel:
    """A fake language model over V tokens: the next-token logits favour (last token + 1) mod V.

    It records every call to step and checks what the handout asks of generate: the state passed back is the last one
    it returned, and no call goes past `context_length` positions (when set).
    """

    vocab_size = 7

    def __init__(self, context_length: int | None = None):
        if context_length is not None:
            self.context_length = context_length
        self.calls: list[tuple[int, bool]] = []  # (tokens per call, whether a state was given)
        self.latest: dict | None = None

    def step(self, tokens, state=None):
        tokens = np.asarray(tokens)
        assert tokens.ndim == 2, "step takes tokens [B, T]"
        position = 0 if state is None else state["position"]
        if state is not None:
            assert self.latest is not None and position == self.latest["position"], "pass the state step returned"
            np.testing.assert_array_equal(state["history"], self.latest["history"])
        if hasattr(self, "context_length"):
            assert position + tokens.shape[1] <= self.context_length, "generate fed more than context_length tokens"
        self.calls.append((tokens.shape[1], state is not None))
        history = tokens if state is None else np.concatenate([state["history"], tokens], axis=1)
        following = (history + 1) % self.vocab_size
        logits = 4.0 * np.eye(self.vocab_size, dtype=np.float32)[following]  # [B, T, V]
        self.latest = {"position": position + tokens.shape[1], "history": history}
        return tf.constant(logits), self.latest


def expected_calls(prompt_length: int, new: int, context_length: int | None = None) -> list[tuple[int, bool]]:
    """The handout's calls to step, as (tokens, whether a state was given): the prompt (its last C tokens), then each
    token drawn but the last fed back alone with the state, except that when the cache holds C positions the call is
    a restart instead, on the last max(C // 2, 1) tokens without a state. N calls for N new tokens."""
    cached = prompt_length if context_length is None else min(prompt_length, context_length)
    calls = [(cached, False)]
    for _ in range(new - 1):
        if context_length is not None and cached >= context_length:
            cached = max(context_length // 2, 1)
            calls.append((cached, False))
        else:
            cached += 1
            calls.append((1, True))
    return calls if new else []


def test_generate_returns_prompt_plus_new_tokens(samplers):
    model = CountingModel()
    ids = samplers.generate(model, [1, 2, 3], max_new_tokens=6, temperature=0.0)
    assert ids.shape == (9,) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [1, 2, 3, 4, 5, 6, 0, 1, 2])
    # One call on the prompt, then one per new token but the last, on that token alone, with the state.
    assert model.calls == expected_calls(3, 6) == [(3, False)] + [(1, True)] * 5


def test_generate_zero_new_tokens_returns_the_prompt_without_calling_the_model(samplers):
    model = CountingModel()
    np.testing.assert_array_equal(samplers.generate(model, [4, 2], max_new_tokens=0), [4, 2])
    assert model.calls == []
    with pytest.raises(ValueError):
        samplers.generate(model, [4, 2], max_new_tokens=-1)


def test_generate_batched_prompt(samplers):
    ids = samplers.generate(CountingModel(), np.array([[0, 1], [5, 6]]), max_new_tokens=3, temperature=0.0)
    np.testing.assert_array_equal(ids, [[0, 1, 2, 3, 4], [5, 6, 0, 1, 2]])


def test_generate_draws_step_s_with_seed_seed_s(samplers):
    model = CountingModel()
    prompt = np.array([[0], [3], [5]])
    ids = np.asarray(samplers.generate(model, prompt, max_new_tokens=5, temperature=3.0, seed=21))
    replay = CountingModel()
    logits, state = replay.step(prompt)
    expected = [prompt]
    for s in range(5):
        new = np.asarray(samplers.sample(np.asarray(logits)[:, -1], temperature=3.0, seed=tf.constant([21, s])))
        expected.append(new[:, None])
        if s < 4:
            logits, state = replay.step(new[:, None], state)
    np.testing.assert_array_equal(ids, np.concatenate(expected, axis=1))


@pytest.mark.parametrize("context_length, prompt_length, new", [(4, 4, 5), (4, 2, 9), (5, 7, 8), (1, 1, 3)])
def test_generate_restarts_the_cache_from_the_last_half_context(samplers, context_length, prompt_length, new):
    model = CountingModel(context_length)
    prompt = np.arange(prompt_length) % CountingModel.vocab_size
    ids = np.asarray(samplers.generate(model, prompt, max_new_tokens=new, temperature=0.0))
    assert ids.shape == (prompt_length + new,)
    np.testing.assert_array_equal(ids[prompt_length:], (prompt[-1] + 1 + np.arange(new)) % CountingModel.vocab_size)
    assert model.calls == expected_calls(prompt_length, new, context_length)
