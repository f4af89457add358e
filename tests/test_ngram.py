"""Part 7 reference against an oracle written elsewhere: NLTK's `nltk.lm.Lidstone` (add-gamma smoothing) on the same
n-grams gives the probabilities, the natural-log likelihood and the perplexity of the reference exactly. NLTK's
vocabulary adds `<UNK>` to the words it has seen; the streams here use ids 0 .. V - 2 only, so its vocabulary holds the
V - 1 seen ids plus `<UNK>`, V entries, and id V - 1 (unseen, looked up as `<UNK>`, count 0) is the V-th. Its counts
(`lm.counts`) are the oracle of `ngram_counts`. Where no oracle fits, properties: probabilities sum to 1 over V for
seen, unseen and short contexts, unseen contexts are uniform, the handout's hand-computed example, the counts never
allocate V^n, generation through part 3's samplers follows the log-probabilities, bad arguments are one-line
ValueErrors naming the argument.

The NLTK oracle (development only: requirements-dev.txt) is skipped when nltk is not installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from assignment.ngram import NGramModel, choose_epsilon, ngram_counts

V = 7
ORDERS = [1, 2, 3, 4]
EPSILONS = [0.01, 0.5, 2.0]


def markov_stream(seed: int, length: int, vocab: int = V - 1) -> np.ndarray:
    """A stream of ids 0 .. vocab - 1 from a random second-order chain: some contexts frequent, many never seen."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(vocab, 0.3), size=(vocab, vocab))  # [vocab, vocab, vocab]
    ids = list(rng.integers(0, vocab, 2))
    for _ in range(length - 2):
        ids.append(int(rng.choice(vocab, p=table[ids[-2], ids[-1]])))
    return np.asarray(ids, np.int32)


TRAIN, VALID = markov_stream(0, 800), markov_stream(1, 300)


# ---------------------------------------------------------------------------------------------------- NLTK oracle
def nltk_model(order: int, epsilon: float, train: np.ndarray):
    """nltk.lm.Lidstone(epsilon, order) fitted on the order-grams of `train` (ids as strings, no padding)."""
    lm = pytest.importorskip("nltk.lm")
    from nltk.util import ngrams

    words = [str(i) for i in train.tolist()]
    vocabulary = lm.Vocabulary(words, unk_cutoff=1)
    assert len(vocabulary) == len(set(words)) + 1 == V  # the seen ids and <UNK>
    model = lm.Lidstone(epsilon, order, vocabulary=vocabulary)
    model.fit([list(ngrams(words, order))])
    return model


def words(ids) -> list[str]:
    return [str(i) for i in ids]


@pytest.mark.parametrize("order", ORDERS)
def test_counts_equal_nltks(order):
    oracle = nltk_model(order, 1.0, TRAIN).counts[order]
    counts = ngram_counts(TRAIN, order)
    if order == 1:
        expected = {(): {int(w): c for w, c in oracle.items()}}
    else:
        expected = {tuple(int(w) for w in context): {int(w): c for w, c in oracle[context].items()}
                    for context in oracle.conditions()}
    assert counts == expected
    assert sum(c for following in counts.values() for c in following.values()) == len(TRAIN) - order + 1


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("epsilon", EPSILONS)
def test_probabilities_equal_nltks_for_seen_and_unseen_contexts(order, epsilon):
    oracle = nltk_model(order, epsilon, TRAIN)
    model = NGramModel(order, V, epsilon).fit(TRAIN)
    rng = np.random.default_rng(order)
    contexts = [TRAIN[i - order + 1 : i] for i in range(order - 1, 60)]  # seen
    contexts += [rng.integers(0, V, order - 1) for _ in range(20)]  # mostly unseen, some with the unseen id V - 1
    for context in contexts:
        expected = [oracle.score(str(x), words(context) or None) for x in range(V)]
        np.testing.assert_allclose(np.exp(model.log_probs(context)), expected, rtol=2e-6)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("epsilon", EPSILONS)
def test_log_likelihood_and_perplexity_equal_nltks(order, epsilon):
    oracle = nltk_model(order, epsilon, TRAIN)
    model = NGramModel(order, V, epsilon).fit(TRAIN)
    valid = words(VALID)
    expected = sum(math.log(oracle.score(valid[i], valid[i - order + 1 : i] or None))
                   for i in range(order - 1, len(valid)))
    assert model.log_likelihood(VALID) == pytest.approx(expected, rel=1e-12)
    from nltk.util import ngrams

    # NLTK's perplexity is 2 ** (cross-entropy in bits) over the n-grams given: the first n - 1 tokens are not scored.
    assert model.perplexity(VALID) == pytest.approx(oracle.perplexity(ngrams(valid, order)), rel=1e-10)


# ---------------------------------------------------------------------------------------------------- properties
@pytest.mark.parametrize("order", ORDERS)
def test_probabilities_sum_to_one_and_unseen_or_short_contexts_are_uniform(order):
    model = NGramModel(order, V, 0.2).fit(TRAIN)
    seen = [TRAIN[i - order + 1 : i] for i in range(order - 1, 100)]
    unseen = [np.full(order - 1, V - 1)] if order > 1 else []  # id V - 1 never occurs in TRAIN; order 1: one context
    short = [TRAIN[: k] for k in range(order - 1)]  # the first n - 1 positions of a stream
    for context in seen + unseen + short:
        probs = np.exp(model.log_probs(context).astype(np.float64))
        assert model.log_probs(context).dtype == np.float32 and probs.shape == (V,)
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    for context in unseen + short:
        np.testing.assert_allclose(model.log_probs(context), np.full(V, -math.log(V)), rtol=1e-6)
    longer = np.concatenate([[V - 1, V - 1], seen[-1]])  # only the last n - 1 ids of a longer context count
    np.testing.assert_array_equal(model.log_probs(longer), model.log_probs(seen[-1]))


def test_handout_example():
    """The handout's example: train "abaab", V = 3 (a, b, c), n = 2, epsilon = 0.5; validation "acab"."""
    model = NGramModel(2, 3, 0.5).fit([0, 1, 0, 0, 1])
    assert ngram_counts([0, 1, 0, 0, 1], 2) == {(0,): {1: 2, 0: 1}, (1,): {0: 1}}
    assert model.totals == {(0,): 3, (1,): 1}
    np.testing.assert_allclose(np.exp(model.log_probs([0])), [1 / 3, 5 / 9, 1 / 9], rtol=1e-6)
    np.testing.assert_allclose(np.exp(model.log_probs([1])), [3 / 5, 1 / 5, 1 / 5], rtol=1e-6)
    np.testing.assert_allclose(np.exp(model.log_probs([2])), [1 / 3] * 3, rtol=1e-6)
    assert model.log_likelihood([0, 2, 0, 1]) == pytest.approx(math.log(5 / 243))
    assert model.perplexity([0, 2, 0, 1]) == pytest.approx((243 / 5) ** (1 / 3))
    assert model.log_likelihood([0]) == 0.0  # nothing scored


def test_counts_are_sparse_whatever_v_to_the_n_is():
    ids = np.random.default_rng(3).integers(0, 10**9, 5000)
    counts = ngram_counts(ids, 5)  # a dense table would hold 10^45 entries
    assert sum(len(following) for following in counts.values()) == 4996
    assert ngram_counts([1, 2], 3) == {} and ngram_counts([], 1) == {}


def test_choose_epsilon_keeps_the_lowest_validation_perplexity_and_leaves_it_set():
    model = NGramModel(3, V).fit(TRAIN)
    candidates = [3.0, 0.001, 0.1, 1.0]
    best, perplexities = choose_epsilon(model, VALID, candidates)
    expected = [NGramModel(3, V, epsilon).fit(TRAIN).perplexity(VALID) for epsilon in candidates]
    np.testing.assert_allclose(perplexities, expected, rtol=1e-12)
    assert best == candidates[int(np.argmin(expected))] and model.epsilon == best


# ---------------------------------------------------------------------------------------------------- generation
@pytest.mark.parametrize("order", [1, 2, 4])
def test_step_gives_the_log_probs_of_every_prefix_and_carries_its_context(order):
    model = NGramModel(order, V, 0.1).fit(TRAIN)
    prompt = np.stack([TRAIN[10:15], TRAIN[40:45]])  # [2, 5]
    logits, state = model.step(prompt)
    assert logits.shape == (2, 5, V) and logits.dtype == np.float32
    for b in range(2):
        for t in range(5):
            np.testing.assert_array_equal(logits[b, t], model.log_probs(prompt[b, : t + 1]))
    history = prompt
    for token in ([[1], [2]], [[0], [5]], [[3], [3]]):
        logits, state = model.step(np.asarray(token), state)
        history = np.concatenate([history, token], axis=1)
        assert logits.shape == (2, 1, V) and state.shape[1] == order - 1
        for b in range(2):
            np.testing.assert_array_equal(logits[b, 0], model.log_probs(history[b]))


def test_generation_through_part_3s_samplers_follows_the_log_probs():
    from assignment.samplers import generate

    model = NGramModel(3, V, 0.05).fit(TRAIN)
    ids = np.asarray(generate(model, TRAIN[:1], 30, temperature=0.0))  # a prompt shorter than n - 1: uniform first
    assert ids[1] == 0  # greedy on the uniform distribution: the lowest id
    for i in range(1, len(ids)):
        assert ids[i] == np.argmax(model.log_probs(ids[:i]))
    ids = np.asarray(generate(model, TRAIN[:4], 60, temperature=1.0, top_k=2, seed=5))
    for i in range(4, len(ids)):
        log_probs = model.log_probs(ids[:i])
        assert log_probs[ids[i]] >= np.sort(log_probs)[-2]  # in the top-2 set (ties kept)


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("call", "words"), [
    (lambda: NGramModel(0, V), "order"),
    (lambda: NGramModel(2.5, V), "order"),
    (lambda: NGramModel(2, 0), "vocab_size"),
    (lambda: NGramModel(2, V, 0.0), "epsilon"),
    (lambda: NGramModel(2, V, -1.0), "epsilon"),
    (lambda: NGramModel(2, V, math.nan), "epsilon"),
    (lambda: NGramModel(2, V, math.inf), "epsilon"),
    (lambda: NGramModel(2, V).fit([0, V]), "vocab_size"),
    (lambda: NGramModel(2, V).fit([[0, 1]]), "rank-1"),
    (lambda: NGramModel(2, V).fit([0.5, 1.0]), "integers"),
    (lambda: ngram_counts([0, -1], 2), ">= 0"),
    (lambda: ngram_counts([0, 1], 0), "order"),
    (lambda: NGramModel(3, V).fit(TRAIN).perplexity([0, 1]), "at least order"),
    (lambda: choose_epsilon(NGramModel(2, V).fit(TRAIN), VALID, []), "candidate"),
    (lambda: choose_epsilon(NGramModel(2, V).fit(TRAIN), VALID, [0.1, 0.0]), "epsilon"),
    (lambda: NGramModel(2, V).step([[0]], np.zeros((2, 1), np.int64)), "rows"),
])
def test_bad_arguments_are_one_line_value_errors(call, words):
    with pytest.raises(ValueError, match=words) as error:
        call()
    assert "\n" not in str(error.value)
