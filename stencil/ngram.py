"""Part 7: n-gram language models with add-epsilon smoothing, the baseline the neural models must beat.

An n-gram model of order n predicts the next token from the n - 1 tokens before it (its context) by counting how often
each token followed that context in the training stream:

    p(x | ctx) = (count(ctx, x) + epsilon) / (count(ctx) + epsilon V),    count(ctx) = sum over x of count(ctx, x).

Only the (context, token) pairs that occur are stored, never a table of V^n entries. A context never seen in training
has count 0 for every token, so the formula gives it the uniform distribution 1/V. Logarithms are natural logarithms.

Shapes: T stream length, V vocabulary size (the tokenizer's, passed in), B batch, n the order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_epsilon(epsilon: float, name: str = "epsilon") -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {epsilon!r}")
    if not 0 < epsilon < math.inf:
        raise ValueError(f"{name} must be a positive number, got {epsilon!r}")
    return float(epsilon)


def as_ids(tokens: Sequence[int] | np.ndarray, vocab_size: int | None = None, ndim: int = 1) -> np.ndarray:
    """tokens as an int64 array of rank `ndim`; ValueError for another rank, non-integer values, or (when vocab_size
    is given) an id outside [0, vocab_size)."""
    ids = np.asarray(tokens)
    if ids.size == 0:
        ids = ids.astype(np.int64)
    if ids.ndim != ndim or ids.dtype.kind not in "iu":
        raise ValueError(f"token ids must be a rank-{ndim} array of integers, got shape {ids.shape} and dtype "
                         f"{ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or (vocab_size is not None and ids.max() >= vocab_size)):
        bound = "" if vocab_size is None else f" and below vocab_size {vocab_size}"
        raise ValueError(f"token ids must be >= 0{bound}, got ids from {ids.min()} to {ids.max()}")
    return ids


def ngram_counts(tokens: Sequence[int] | np.ndarray, order: int) -> dict[tuple[int, ...], dict[int, int]]:
    """Count the n-grams of a token stream, sparsely: counts[ctx][x] = how often token x follows context ctx.

    Every position i >= n - 1 of the stream counts once, with the context tokens[i - n + 1 : i] (a tuple of n - 1
    ints; () for n = 1) and the token tokens[i]. The first n - 1 positions have no full context and are not counted;
    a stream shorter than n gives {}. Only pairs that occur are stored: at most T - n + 1 entries, whatever V^n is.

    Args:
        tokens: int [T], token ids >= 0.
        order: n >= 1.
    Returns:
        {context tuple (n - 1 ints): {token: count >= 1}}, keys and counts Python ints.
    """
    tokens = as_ids(tokens)
    order = _check_positive_int(order, "order")
    raise NotImplementedError(
        "TODO(part 7): Count each n-gram tokens[i - n + 1 : i + 1] (i >= n - 1), grouped by its context."
    )


class NGramModel:
    """An n-gram language model with add-epsilon smoothing.

    Attributes:
        order: n, the number of tokens of an n-gram (the context holds n - 1).
        vocab_size: V, the tokenizer's vocabulary size (every token 0 .. V - 1 gets probability, seen or not).
        epsilon: the pseudo-count added to every (context, token) count; `choose_epsilon` changes it.
    """

    def __init__(self, order: int, vocab_size: int, epsilon: float = 1.0):
        """An untrained model (every context unseen until `fit`): order n >= 1, vocab_size V >= 1, epsilon > 0."""
        self.order = _check_positive_int(order, "order")
        self.vocab_size = _check_positive_int(vocab_size, "vocab_size")
        self.epsilon = _check_epsilon(epsilon)
        self.counts: dict[tuple[int, ...], dict[int, int]] = {}
        self.totals: dict[tuple[int, ...], int] = {}

    def fit(self, tokens: Sequence[int] | np.ndarray) -> NGramModel:
        """Count the training stream tokens int [T] (ids in [0, V)): `counts` as `ngram_counts` gives them and
        `totals[ctx] = count(ctx)`. Returns the model."""
        tokens = as_ids(tokens, self.vocab_size)
        raise NotImplementedError(
            "TODO(part 7): Count the n-grams and, per context, count(ctx) = the sum of its counts."
        )
        return self

    def log_probs(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 [V]: log p(x | context) for every token x (natural log), usable as the logits of part 3's samplers.

        `context` int [L] is what precedes the next token; its last n - 1 ids are the n-gram context. With fewer than
        n - 1 ids (the first n - 1 positions of a stream) the context was never counted: like any unseen context it
        gives the uniform distribution, log(1 / V) everywhere.
        """
        context = as_ids(context, self.vocab_size)
        raise NotImplementedError(
            "TODO(part 7): Look up the last n - 1 ids; (count(ctx, x) + eps) / (count(ctx) + eps V), logged."
        )

    def log_likelihood(self, tokens: Sequence[int] | np.ndarray) -> float:
        """The natural-log likelihood of a stream tokens int [T]: the sum over positions i = n - 1 .. T - 1 of
        log p(tokens[i] | tokens[i - n + 1 : i]), in float64. The first n - 1 positions are not scored (0.0 when
        T < n)."""
        tokens = as_ids(tokens, self.vocab_size)
        raise NotImplementedError("TODO(part 7): Sum log p(x_i | the n - 1 tokens before it) over i >= n - 1.")

    def perplexity(self, tokens: Sequence[int] | np.ndarray) -> float:
        """Per-token perplexity of tokens int [T]: exp(-log_likelihood / (T - n + 1)), the T - n + 1 scored positions.

        ValueError when T < n (no position is scored)."""
        ids = as_ids(tokens, self.vocab_size)
        if len(ids) < self.order:
            raise ValueError(f"perplexity needs at least order = {self.order} tokens, got {len(ids)}")
        raise NotImplementedError("TODO(part 7): Average.")

    def step(self, tokens: Sequence[Sequence[int]] | np.ndarray, state: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """The model interface of `samplers.generate`: next-token logits for every new position, and the new state.

        Args:
            tokens: int [B, T], the new tokens of each row.
            state: None at the start, else int [B, S], the state the previous call returned.
        Returns:
            logits float32 [B, T, V], logits[b, t] = log_probs(history[b, : S + t + 1]) with history = state followed
            by tokens ([B, S + T]); and the new state, int [B, min(n - 1, S + T)]: the last n - 1 ids of each history
            row (all of them when it holds fewer), which is all the next call needs.
        """
        new = as_ids(tokens, self.vocab_size, ndim=2)
        past = np.zeros((new.shape[0], 0), np.int64) if state is None else as_ids(state, self.vocab_size, ndim=2)
        if past.shape[0] != new.shape[0]:
            raise ValueError(f"state has {past.shape[0]} rows but tokens has {new.shape[0]}")
        raise NotImplementedError(
            "TODO(part 7): Log-probs after each new token of history = state + tokens; keep its last n - 1."
        )


def choose_epsilon(model: NGramModel, valid_tokens: Sequence[int] | np.ndarray,
                   candidates: Sequence[float]) -> tuple[float, list[float]]:
    """Pick epsilon on the validation stream: the candidate of the lowest `model.perplexity(valid_tokens)`.

    Args:
        model: a fitted NGramModel (its counts do not depend on epsilon).
        valid_tokens: int [T] with T >= n.
        candidates: epsilons > 0, at least one.
    Returns:
        (the best candidate (the first of them on a tie), the perplexity of every candidate in the given order).
        `model.epsilon` is left at the best candidate.
    """
    candidates = [_check_epsilon(c, "every epsilon candidate") for c in candidates]
    if not candidates:
        raise ValueError("choose_epsilon needs at least one candidate")
    ids = as_ids(valid_tokens, model.vocab_size)
    if len(ids) < model.order:
        raise ValueError(f"the validation stream needs at least order = {model.order} tokens, got {len(ids)}")
    raise NotImplementedError(
        "TODO(part 7): Measure the validation perplexity of each candidate; keep the lowest (first on ties)."
    )
