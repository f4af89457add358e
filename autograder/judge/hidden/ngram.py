"""Hidden tests of part 7: n-gram language models with add-epsilon smoothing (ngram.py).

Expected values come from the numpy definitions in `oracles.py` (counts by sliding windows, the smoothed probability
of one context by a scan of the training stream, the likelihood as a sum of their logs). Hidden streams come from a
random second-order chain over ids 0 .. V - 2 (rows drawn from a Dirichlet(0.3), so some contexts are frequent and many
never occur), so the last id V - 1 never occurs in training: a vocabulary counted from the training stream instead of
the V passed in shows.

Each test grades one thing, so that a bug costs the tests of what it breaks: the counts, the smoothed log-probabilities
of seen contexts, those of unseen contexts and of contexts shorter than n - 1, the likelihood (natural log, first n - 1
positions not scored), the perplexity, the choice of epsilon, the samplers' step interface, generation through the
submission's samplers, argument checks and types.
"""

from __future__ import annotations

import math

import numpy as np

from autograder.judge.hidden import oracles
from autograder.judge.hidden.common import as_array, close, expect_dict, expect_errors, expect_number
from autograder.judge.registry import TestFailure, hidden_test

PART = "ngram"
V = 7
TRAIN_LENGTH, VALID_LENGTH = 600, 200
COUNT_ORDERS = (1, 2, 3, 4)
SPARSE_VOCAB, SPARSE_ORDER, SPARSE_LENGTH = 5000, 3, 2000
"""The sparse-counts stream: V^n = 1.25e11 counts would not fit in memory; T - n + 1 windows do."""
MODEL_CASES = ((1, 0.5), (2, 0.1), (3, 0.05), (4, 1.5))
"""(order, epsilon) of the likelihood and perplexity tests."""
LOG_ATOL, LOG_RTOL = 2e-5, 1e-5
"""float32 log-probabilities: |log p| < 20 here, so float32 rounding stays far below this."""
STREAM_RTOL = 1e-6
"""Likelihoods and perplexities: float64 sums of a few hundred terms, or sums of the float32 log_probs (relative error
below 2^-24 per term, so below 6e-8 for the sum of these negative terms and 1.2e-7 for a perplexity near e^2)."""
CANDIDATES = 6
GENERATE_TOKENS = 24


# ---------------------------------------------------------------------------------------------------- hidden inputs
def markov_stream(rng: np.random.Generator, length: int, vocab: int = V - 1) -> np.ndarray:
    """int64 [length]: ids 0 .. vocab - 1 from a random second-order chain."""
    table = rng.dirichlet(np.full(vocab, 0.3), size=(vocab, vocab))  # [vocab, vocab, vocab]
    ids = [int(t) for t in rng.integers(0, vocab, 2)]
    for _ in range(length - 2):
        ids.append(int(rng.choice(vocab, p=table[ids[-2], ids[-1]])))
    return np.asarray(ids[:length], np.int64)


def _train(ctx) -> np.ndarray:
    return ctx.hidden("train", lambda: markov_stream(ctx.rng, TRAIN_LENGTH))


def _epsilon(ctx, key: str = "epsilon") -> float:
    return ctx.hidden(key, lambda: float(np.round(np.exp(ctx.rng.uniform(np.log(0.02), np.log(2.0))), 4)))


def _log_probs(ctx, key: str, order: int, epsilon: float, train: np.ndarray, contexts: list) -> np.ndarray:
    """The submission's log_probs of each context, checked as float [len(contexts), V]."""
    reply = expect_dict(ctx.call("ngram.model", order=order, vocab_size=V, epsilon=epsilon, train=train,
                                 method="log_probs", inputs=contexts), ("values",), "NGramModel.log_probs")
    rows = [as_array(v, f"log_probs of a context ({key})", "f", (V,)) for v in reply["values"]]
    return np.stack(rows)


def _expected_log_probs(ctx, key: str, order: int, epsilon: float, train: np.ndarray, contexts: list) -> np.ndarray:
    return ctx.expected(key, lambda: np.log(np.stack([
        oracles.ngram_probabilities(train, order, V, epsilon, c) for c in contexts])))


# ---------------------------------------------------------------------------------------------------- counts
@hidden_test("ngram_counts counts every window tokens[i - n + 1 : i + 1] (i >= n - 1) under its context, for n = 1 "
             "to 4", PART, weight=1.5)
def test_counts(ctx) -> None:
    stream = _train(ctx)
    for order in COUNT_ORDERS:
        expected = ctx.expected(f"rows_{order}", lambda order=order: oracles.ngram_count_rows(stream, order))
        reply = expect_dict(ctx.call("ngram.counts", tokens=stream, order=order), ("rows",), "ngram_counts")
        rows = as_array(reply["rows"], f"ngram_counts with n = {order}", "iu", (None, order + 1))
        if rows.shape != expected.shape or not np.array_equal(rows, expected):
            raise TestFailure(f"ngram_counts with n = {order}: expected {len(expected)} distinct (context, token) "
                              f"pairs whose counts add up to T - n + 1, got {len(rows)} pairs adding up to "
                              f"{int(rows[:, -1].sum()) if len(rows) else 0}, or other counts: every position "
                              "i >= n - 1 counts once, under the context of the n - 1 tokens before it.")


@hidden_test("ngram_counts stores only the n-grams that occur (V = 5000, n = 3: V^n counts would not fit)", PART,
             weight=0.5)
def test_counts_sparse(ctx) -> None:
    def draw() -> np.ndarray:
        stream = ctx.rng.integers(0, SPARSE_VOCAB, SPARSE_LENGTH).astype(np.int64)
        stream[SPARSE_LENGTH // 2 :: 7] = stream[3]  # some contexts and n-grams repeat
        return stream

    stream = ctx.hidden("stream", draw)
    expected = ctx.expected("rows", lambda: oracles.ngram_count_rows(stream, SPARSE_ORDER))
    reply = expect_dict(ctx.call("ngram.counts", tokens=stream, order=SPARSE_ORDER), ("rows",), "ngram_counts")
    rows = as_array(reply["rows"], "ngram_counts of ids below 5000", "iu", (None, SPARSE_ORDER + 1))
    if rows.shape != expected.shape or not np.array_equal(rows, expected):
        raise TestFailure("ngram_counts of ids below 5000 with n = 3: the counts differ from those of the T - n + 1 "
                          "windows of the stream.")


# ---------------------------------------------------------------------------------------------------- smoothing
@hidden_test("log_probs of seen contexts is log((count(ctx, x) + eps) / (count(ctx) + eps V)), natural log, for "
             "every token of V", PART, weight=1.5)
def test_probabilities(ctx) -> None:
    train = _train(ctx)
    for order in (2, 3):
        epsilon = _epsilon(ctx, f"epsilon_{order}")
        picks = ctx.hidden(f"positions_{order}", lambda order=order: ctx.rng.choice(
            np.arange(order - 1, TRAIN_LENGTH), 12, replace=False).astype(np.int64))
        contexts = [train[i - order + 1 : i] for i in picks]  # seen in training
        expected = _expected_log_probs(ctx, f"log_probs_{order}", order, epsilon, train, contexts)
        actual = _log_probs(ctx, "seen", order, epsilon, train, contexts)
        close(actual, expected, f"log_probs of contexts seen in training (n = {order}, epsilon = {epsilon:g}, "
              f"V = {V}: V is the vocab_size passed in, not the tokens seen)", atol=LOG_ATOL, rtol=LOG_RTOL)


@hidden_test("log_probs of a context never seen in training is uniform, log(1 / V) (only its last n - 1 ids count)",
             PART, weight=1.0)
def test_unseen_contexts(ctx) -> None:
    train = _train(ctx)
    order, epsilon = 3, _epsilon(ctx)

    def draw() -> list:
        seen = {tuple(train[i - 2 : i].tolist()) for i in range(2, TRAIN_LENGTH)}
        pairs = [[V - 1, V - 1], [0, V - 1], [V - 1, 2]]  # id V - 1 never occurs in training
        pairs += [[a, b] for a in range(V - 1) for b in range(V - 1) if (a, b) not in seen][:3]
        seen_pair = [int(t) for t in train[10:12]]
        return pairs + [[V - 1, *seen_pair[:1], *pairs[-1]], [*seen_pair, *pairs[0]]]  # longer: last two unseen

    contexts = [np.asarray(c, np.int64) for c in ctx.hidden("contexts", draw)]
    actual = _log_probs(ctx, "unseen", order, epsilon, train, contexts)
    close(actual, np.full((len(contexts), V), -math.log(V)), "log_probs of contexts never seen in training (count 0 "
          "for every token: the formula gives 1/V)", atol=LOG_ATOL, rtol=LOG_RTOL)


@hidden_test("the first n - 1 positions: a context shorter than n - 1 is uniform, and the likelihood does not score "
             "those positions", PART, weight=1.0)
def test_first_positions(ctx) -> None:
    train = _train(ctx)
    order, epsilon = 4, _epsilon(ctx)
    contexts = [train[:k] for k in range(order - 1)]  # 0, 1 and 2 ids: the first positions of a stream
    actual = _log_probs(ctx, "short", order, epsilon, train, contexts)
    close(actual, np.full((len(contexts), V), -math.log(V)), "log_probs of a context shorter than n - 1 = 3 (never "
          "counted: uniform)", atol=LOG_ATOL, rtol=LOG_RTOL)
    streams = [train[20 : 20 + k] for k in (1, 3, 4, 5)]  # T < n: nothing scored; T = n: one position
    expected = ctx.expected("log_likelihoods", lambda: [
        oracles.ngram_log_likelihood(train, order, V, epsilon, s) for s in streams])
    reply = expect_dict(ctx.call("ngram.model", order=order, vocab_size=V, epsilon=epsilon, train=train,
                                 method="log_likelihood", inputs=streams), ("values",), "log_likelihood")
    for stream, value, want in zip(streams, reply["values"], expected, strict=True):
        got = expect_number(value, f"log_likelihood of {len(stream)} tokens")
        if not math.isclose(got, want, rel_tol=STREAM_RTOL, abs_tol=1e-9):
            raise TestFailure(f"log_likelihood of a stream of {len(stream)} tokens with n = {order}: only the "
                              f"positions i >= n - 1 are scored ({max(len(stream) - order + 1, 0)} here), each by "
                              "the natural log of its probability given the n - 1 tokens before it.")


# ---------------------------------------------------------------------------------------------------- streams
def _stream_values(ctx, method: str) -> None:
    train = _train(ctx)
    valid = ctx.hidden("valid", lambda: markov_stream(ctx.rng, VALID_LENGTH))
    for order, epsilon in MODEL_CASES:
        def oracle(order=order, epsilon=epsilon) -> float:
            log_likelihood = oracles.ngram_log_likelihood(train, order, V, epsilon, valid)
            scored = VALID_LENGTH - order + 1
            return log_likelihood if method == "log_likelihood" else math.exp(-log_likelihood / scored)

        expected = ctx.expected(f"{method}_{order}", oracle)
        reply = expect_dict(ctx.call("ngram.model", order=order, vocab_size=V, epsilon=epsilon, train=train,
                                     method=method, inputs=[valid]), ("values",), method)
        got = expect_number(reply["values"][0], f"{method} of a stream (n = {order})")
        if not math.isclose(got, expected, rel_tol=STREAM_RTOL):
            raise TestFailure(f"{method} of a validation stream with n = {order}, epsilon = {epsilon:g}: expected "
                              + ("the sum over i >= n - 1 of ln p(x_i | the n - 1 tokens before it) (natural log)"
                                 if method == "log_likelihood" else
                                 "exp(-log_likelihood / (T - n + 1)), the T - n + 1 scored positions"))


@hidden_test("log_likelihood of a stream is the natural-log sum over its positions i >= n - 1, n = 1 to 4", PART,
             weight=1.0)
def test_log_likelihood(ctx) -> None:
    _stream_values(ctx, "log_likelihood")


@hidden_test("perplexity is exp(-log_likelihood / (T - n + 1)), n = 1 to 4", PART, weight=1.0)
def test_perplexity(ctx) -> None:
    _stream_values(ctx, "perplexity")


@hidden_test("choose_epsilon returns the candidate of the lowest validation perplexity and every candidate's "
             "perplexity, and leaves it in model.epsilon", PART, weight=1.0)
def test_epsilon_choice(ctx) -> None:
    train = _train(ctx)
    valid = ctx.hidden("valid", lambda: markov_stream(ctx.rng, VALID_LENGTH))
    order = 3

    def draw() -> list[float]:  # log-spaced over 1e-3 .. 10 in random order, so the best is not always first or last
        return [float(c) for c in ctx.rng.permutation(np.round(np.geomspace(1e-3, 10.0, CANDIDATES), 6))]

    candidates = ctx.hidden("candidates", draw)
    expected = ctx.expected("perplexities", lambda: [math.exp(
        -oracles.ngram_log_likelihood(train, order, V, c, valid) / (VALID_LENGTH - order + 1)) for c in candidates])
    reply = expect_dict(ctx.call("ngram.choose_epsilon", order=order, vocab_size=V, train=train, valid=valid,
                                 candidates=candidates), ("best", "perplexities", "epsilon_after"), "choose_epsilon")
    perplexities = as_array(np.asarray(reply["perplexities"], np.float64), "choose_epsilon's perplexities", "f",
                            (CANDIDATES,))
    close(perplexities, np.asarray(expected), "choose_epsilon's perplexities (one per candidate, in the given "
          "order)", atol=0.0, rtol=STREAM_RTOL)
    best = candidates[int(np.argmin(expected))]
    if reply["best"] != best:
        raise TestFailure("choose_epsilon must return the candidate of the lowest validation perplexity.")
    if reply["epsilon_after"] != best:
        raise TestFailure("choose_epsilon must leave model.epsilon at the chosen candidate.")


# ---------------------------------------------------------------------------------------------------- generation
@hidden_test("step gives log_probs after every new token and carries the context in its state from call to call",
             PART, weight=1.5)
def test_step(ctx) -> None:
    train = _train(ctx)
    order, epsilon = 3, _epsilon(ctx)
    prompt = ctx.hidden("prompt", lambda: np.stack([train[40:46], train[100:106]]))  # [2, 6]
    feeds = ctx.hidden("feeds", lambda: ctx.rng.integers(0, V, (2, 4)).astype(np.int64))  # [2, 4], one per call

    def oracle() -> dict:
        first = [[oracles.ngram_probabilities(train, order, V, epsilon, row[: t + 1]) for t in range(6)]
                 for row in prompt]
        history = np.concatenate([prompt, feeds], axis=1)
        fed = [[oracles.ngram_probabilities(train, order, V, epsilon, row[: 7 + k]) for row in history]
               for k in range(feeds.shape[1])]
        return {"first": np.log(np.asarray(first)).tolist(), "fed": np.log(np.asarray(fed)).tolist()}

    expected = ctx.expected("log_probs", oracle)
    reply = expect_dict(ctx.call("ngram.step", order=order, vocab_size=V, epsilon=epsilon, train=train, prompt=prompt,
                                 feeds=feeds), ("first", "fed"), "step")
    first = as_array(reply["first"], "step(prompt [B, T]): logits", "f", (2, 6, V))
    close(first, np.asarray(expected["first"]), "step(prompt [B, T]): logits[b, t] must be log_probs of the row's "
          "first t + 1 tokens", atol=LOG_ATOL, rtol=LOG_RTOL)
    fed = as_array(reply["fed"], "step(one token, state): logits", "f", (feeds.shape[1], 2, V))
    close(fed, np.asarray(expected["fed"]), "step(one token [B, 1], state) after earlier calls: the logits must be "
          "log_probs of the whole history (the state carries the last n - 1 ids)", atol=LOG_ATOL, rtol=LOG_RTOL)


@hidden_test("samplers.generate runs the model: greedy follows the largest log-probability, top-k draws stay in the "
             "top-k set", PART, weight=1.0)
def test_generate(ctx) -> None:
    train = _train(ctx)
    order, epsilon = 3, _epsilon(ctx)
    prompt = ctx.hidden("prompt", lambda: train[200:203].copy())

    def greedy() -> np.ndarray:
        ids = list(prompt)
        for _ in range(GENERATE_TOKENS):
            ids.append(int(np.argmax(oracles.ngram_probabilities(train, order, V, epsilon, ids))))
        return np.asarray(ids, np.int64)

    expected = ctx.expected("greedy", greedy)
    reply = expect_dict(ctx.call("ngram.generate", order=order, vocab_size=V, epsilon=epsilon, train=train,
                                 prompt=prompt, max_new_tokens=GENERATE_TOKENS, temperature=0.0, top_k=None, seed=0),
                        ("ids",), "generate")
    ids = as_array(reply["ids"], "samplers.generate(model, ...) with temperature 0", "iu", (len(expected),))
    if not np.array_equal(ids, expected):
        raise TestFailure("samplers.generate with temperature 0 must follow the largest log-probability given the "
                          "last n - 1 tokens at every step (lowest id on ties).")
    seed = ctx.hidden("seed", lambda: int(ctx.rng.integers(0, 2**31 - 1)))
    reply = expect_dict(ctx.call("ngram.generate", order=order, vocab_size=V, epsilon=epsilon, train=train,
                                 prompt=prompt, max_new_tokens=GENERATE_TOKENS, temperature=1.0, top_k=2, seed=seed),
                        ("ids",), "generate")
    ids = as_array(reply["ids"], "samplers.generate(model, ...) with top_k 2", "iu", (len(expected),))
    for i in range(len(prompt), len(ids)):
        probs = oracles.ngram_probabilities(train, order, V, epsilon, ids[:i])
        if not 0 <= ids[i] < V or probs[ids[i]] < np.sort(probs)[-2]:
            raise TestFailure("samplers.generate with top_k 2 drew a token outside the two most probable given the "
                              "last n - 1 tokens: step must return log_probs of the history as logits.")


# ---------------------------------------------------------------------------------------------------- checks, types
@hidden_test("NGramModel, ngram_counts, perplexity and choose_epsilon reject bad arguments with ValueError", PART,
             weight=0.5)
def test_bad_arguments(ctx) -> None:
    train = ctx.hidden("train", lambda: ctx.rng.integers(0, 5, 40).astype(np.int64))
    expect_errors(ctx.call("ngram.invalid_arguments", train=train), "n-gram argument checks")


@hidden_test("log_probs and step return float32 log-probabilities [V] and [B, T, V]; likelihood and perplexity are "
             "numbers", PART, weight=0.25)
def test_dtypes(ctx) -> None:
    train = ctx.hidden("train", lambda: ctx.rng.integers(0, 5, 40).astype(np.int64))
    reply = expect_dict(ctx.call("ngram.dtypes", train=train), ("log_probs", "step", "log_likelihood", "perplexity"),
                        "types")
    if reply["log_probs"] != ["float32", [5]]:
        raise TestFailure(f"log_probs must return a float32 array [V], got {reply['log_probs'][0]} of shape "
                          f"{reply['log_probs'][1]}.")
    if reply["step"] != ["float32", [1, 3, 5]]:
        raise TestFailure(f"step must return float32 logits [B, T, V], got {reply['step'][0]} of shape "
                          f"{reply['step'][1]}.")
    for method in ("log_likelihood", "perplexity"):
        if reply[method] not in ("float", "float64", "float32"):
            raise TestFailure(f"{method} must return a number (float), got {reply[method]}.")
