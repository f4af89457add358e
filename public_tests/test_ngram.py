"""Part 7, visible tests: the handout's hand-computed example, counts against a count of sliding windows, counts that
never allocate V^n, add-epsilon log-probabilities against the formula (seen, unseen and short contexts), the natural-log
likelihood and perplexity with the first n - 1 positions not scored, the choice of epsilon, the samplers' step
interface, float32 log-probabilities, and bad arguments.
"""

import math
from collections import Counter

import numpy as np
import pytest

V = 7


def markov_stream(seed: int, length: int, vocab: int = V - 1) -> np.ndarray:
    """ids 0 .. vocab - 1 (id V - 1 never occurs) from a random second-order chain."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(vocab, 0.3), size=(vocab, vocab))
    ids = list(rng.integers(0, vocab, 2))
    for _ in range(length - 2):
        ids.append(int(rng.choice(vocab, p=table[ids[-2], ids[-1]])))
    return np.asarray(ids, np.int64)


TRAIN, VALID = markov_stream(0, 500), markov_stream(1, 150)


def probabilities(train, order: int, epsilon: float, context) -> np.ndarray:
    """The handout's formula for the last n - 1 ids of `context` (a shorter context is never counted)."""
    width, train, context = order - 1, list(train), list(context)
    counts = np.zeros(V)
    if len(context) >= width:
        for i in range(width, len(train)):
            if train[i - width : i] == context[len(context) - width :]:
                counts[train[i]] += 1
    return (counts + epsilon) / (counts.sum() + epsilon * V)


def log_likelihood(train, order: int, epsilon: float, stream) -> float:
    return sum(math.log(probabilities(train, order, epsilon, stream[i - order + 1 : i])[stream[i]])
               for i in range(order - 1, len(stream)))


def test_handout_example(ngram):
    """Train "abaab" (a = 0, b = 1, c = 2: V = 3), n = 2, epsilon = 0.5; validation "acab"."""
    assert ngram.ngram_counts([0, 1, 0, 0, 1], 2) == {(0,): {1: 2, 0: 1}, (1,): {0: 1}}
    model = ngram.NGramModel(2, 3, 0.5).fit([0, 1, 0, 0, 1])
    np.testing.assert_allclose(np.exp(model.log_probs([0])), [1 / 3, 5 / 9, 1 / 9], rtol=1e-6)
    np.testing.assert_allclose(np.exp(model.log_probs([1])), [3 / 5, 1 / 5, 1 / 5], rtol=1e-6)
    np.testing.assert_allclose(np.exp(model.log_probs([2])), [1 / 3, 1 / 3, 1 / 3], rtol=1e-6)  # unseen: uniform
    assert model.log_likelihood([0, 2, 0, 1]) == pytest.approx(math.log(1 / 9 * 1 / 3 * 5 / 9))  # = ln(5 / 243)
    assert model.perplexity([0, 2, 0, 1]) == pytest.approx((243 / 5) ** (1 / 3))  # 3 scored positions


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_counts_are_the_sliding_windows(ngram, order):
    windows = Counter(tuple(TRAIN[i - order + 1 : i + 1].tolist()) for i in range(order - 1, len(TRAIN)))
    counts = ngram.ngram_counts(TRAIN, order)
    assert {(*context, token): count for context, following in counts.items()
            for token, count in following.items()} == dict(windows)
    assert all(isinstance(context, tuple) and len(context) == order - 1 for context in counts)


def test_counts_never_allocate_v_to_the_n(ngram):
    ids = np.random.default_rng(2).integers(0, 10**6, 3000)  # V^3 = 10^18 counts would never fit
    counts = ngram.ngram_counts(ids, 3)
    assert sum(sum(following.values()) for following in counts.values()) == 3000 - 2


@pytest.mark.parametrize(("order", "epsilon"), [(1, 0.3), (2, 0.05), (3, 1.0)])
def test_log_probs_follow_add_epsilon_smoothing(ngram, order, epsilon):
    model = ngram.NGramModel(order, V, epsilon).fit(TRAIN)
    for i in range(order - 1, 40):
        context = TRAIN[i - order + 1 : i]
        log_probs = model.log_probs(context)
        assert log_probs.dtype == np.float32 and log_probs.shape == (V,)
        np.testing.assert_allclose(log_probs, np.log(probabilities(TRAIN, order, epsilon, context)), rtol=1e-5)


def test_unseen_short_and_long_contexts(ngram):
    model = ngram.NGramModel(3, V, 0.2).fit(TRAIN)
    uniform = np.full(V, -math.log(V), np.float32)
    for context in ([V - 1, V - 1], [0, V - 1], [], [TRAIN[0]]):  # unseen (id V - 1 never occurs), shorter than 2
        np.testing.assert_allclose(model.log_probs(context), uniform, rtol=1e-6)
    seen = TRAIN[10:12]
    longer = np.concatenate([[V - 1, V - 1, V - 1], seen])  # only its last n - 1 = 2 ids count
    np.testing.assert_allclose(model.log_probs(longer), np.log(probabilities(TRAIN, 3, 0.2, seen)), rtol=1e-5)


@pytest.mark.parametrize(("order", "epsilon"), [(1, 0.5), (2, 0.1), (4, 0.02)])
def test_log_likelihood_and_perplexity(ngram, order, epsilon):
    model = ngram.NGramModel(order, V, epsilon).fit(TRAIN)
    expected = log_likelihood(TRAIN, order, epsilon, VALID)  # natural log, positions n - 1 .. T - 1
    assert model.log_likelihood(VALID) == pytest.approx(expected, rel=1e-6)
    assert model.perplexity(VALID) == pytest.approx(math.exp(-expected / (len(VALID) - order + 1)), rel=1e-6)
    assert model.log_likelihood(VALID[: order - 1]) == 0.0  # fewer than n tokens: nothing scored


def test_choose_epsilon(ngram):
    model = ngram.NGramModel(3, V).fit(TRAIN)
    candidates = [5.0, 0.001, 0.05, 1.0]  # the best (5.0 on this small stream) is not the last one tried
    best, perplexities = ngram.choose_epsilon(model, VALID, candidates)
    expected = [math.exp(-log_likelihood(TRAIN, 3, c, VALID) / (len(VALID) - 2)) for c in candidates]
    np.testing.assert_allclose(perplexities, expected, rtol=1e-6)
    assert best == candidates[int(np.argmin(expected))] and model.epsilon == best


def test_step_returns_log_probs_after_each_token_and_carries_the_context(ngram):
    model = ngram.NGramModel(3, V, 0.1).fit(TRAIN)
    prompt = np.stack([TRAIN[20:24], TRAIN[60:64]])  # [B = 2, T = 4]
    logits, state = model.step(prompt)
    assert logits.shape == (2, 4, V) and logits.dtype == np.float32
    for b in range(2):
        for t in range(4):
            np.testing.assert_allclose(logits[b, t], model.log_probs(prompt[b, : t + 1]), rtol=1e-6)
    history = prompt
    for token in ([[3], [1]], [[0], [5]]):
        logits, state = model.step(np.asarray(token), state)
        history = np.concatenate([history, token], axis=1)
        assert logits.shape == (2, 1, V)
        for b in range(2):
            np.testing.assert_allclose(logits[b, 0], model.log_probs(history[b]), rtol=1e-6)


def test_bad_arguments(ngram):
    fitted = ngram.NGramModel(3, V).fit(TRAIN)
    for call in (lambda: ngram.NGramModel(0, V), lambda: ngram.NGramModel(2, V, 0.0),
                 lambda: ngram.NGramModel(2, V).fit([0, V]), lambda: fitted.perplexity([0, 1]),  # T < n
                 lambda: ngram.choose_epsilon(fitted, VALID, [])):
        with pytest.raises(ValueError):
            call()
