"""Probes for part 7 (ngram.py): counts, a fitted model's methods, epsilon choice, the samplers' step interface and
generation through the submission's samplers."""

from __future__ import annotations

import numpy as np

from .common import error_name, to_numpy
from .registry import probe


def _count_rows(counts, order: int) -> np.ndarray:
    """ngram_counts' {context: {token: count}} as rows int64 [M, n + 1] (context, token, count), sorted; ValueError
    naming what is not a tuple of n - 1 ints, an int token or a positive int count."""
    if not isinstance(counts, dict):
        raise ValueError(f"ngram_counts must return a dict, got {type(counts).__name__}")
    rows = []
    for context, following in counts.items():
        if not isinstance(context, tuple) or len(context) != order - 1 or not all(
                isinstance(c, (int, np.integer)) for c in context):
            raise ValueError(f"ngram_counts: every key must be a tuple of n - 1 = {order - 1} ints, got {context!r}")
        if not isinstance(following, dict):
            raise ValueError(f"ngram_counts: counts[{context!r}] must be a dict {{token: count}}, got "
                             f"{type(following).__name__}")
        for token, count in following.items():
            if not isinstance(token, (int, np.integer)) or not isinstance(count, (int, np.integer)) or count < 1:
                raise ValueError(f"ngram_counts: counts[{context!r}] must map int tokens to int counts >= 1, got "
                                 f"{token!r}: {count!r}")
            rows.append([*(int(c) for c in context), int(token), int(count)])
    return np.asarray(sorted(rows), np.int64).reshape(-1, order + 1)


@probe("ngram.counts")
def counts(sub, tokens: np.ndarray, order: int) -> dict:
    """{"rows": int64 [M, n + 1]}: ngram_counts(tokens, order) as (context..., token, count) rows, sorted."""
    return {"rows": _count_rows(sub.module("ngram").ngram_counts(tokens, int(order)), int(order))}


def _model(sub, order: int, vocab_size: int, epsilon: float, train: np.ndarray):
    return sub.module("ngram").NGramModel(int(order), int(vocab_size), float(epsilon)).fit(train)


@probe("ngram.model")
def model_calls(sub, order: int, vocab_size: int, epsilon: float, train: np.ndarray, method: str,
                inputs: list) -> dict:
    """Fit NGramModel(order, vocab_size, epsilon) on train, then call `method` ("log_probs", "log_likelihood" or
    "perplexity") on each input: {"values": [result as returned, arrays as arrays, numbers as numbers]}."""
    model = _model(sub, order, vocab_size, epsilon, train)
    values = []
    for tokens in inputs:
        value = getattr(model, method)(tokens)
        values.append(to_numpy(value) if method == "log_probs" else value)
    return {"values": [v.item() if isinstance(v, np.generic) else v for v in values]}


@probe("ngram.choose_epsilon")
def choose(sub, order: int, vocab_size: int, train: np.ndarray, valid: np.ndarray, candidates: list) -> dict:
    """choose_epsilon on a model fitted on train: {"best", "perplexities", "epsilon_after"} (model.epsilon after)."""
    model = _model(sub, order, vocab_size, 1.0, train)
    best, perplexities = sub.module("ngram").choose_epsilon(model, valid, [float(c) for c in candidates])
    return {"best": float(best), "perplexities": [float(p) for p in perplexities],
            "epsilon_after": float(model.epsilon)}


@probe("ngram.step")
def step(sub, order: int, vocab_size: int, epsilon: float, train: np.ndarray, prompt: np.ndarray,
         feeds: np.ndarray) -> dict:
    """step(prompt [B, T0]), then step(feeds[:, k : k + 1], state) for each k: {"first": float [B, T0, V],
    "fed": float [K, B, V] (each feed's single position)}."""
    model = _model(sub, order, vocab_size, epsilon, train)
    logits, state = model.step(prompt)
    first = to_numpy(logits)
    fed = []
    for k in range(feeds.shape[1]):
        logits, state = model.step(feeds[:, k : k + 1], state)
        logits = to_numpy(logits)
        if logits.ndim != 3 or logits.shape[1] != 1:
            raise ValueError(f"step with one new token per row must return logits [B, 1, V], got {list(logits.shape)}")
        fed.append(logits[:, 0])
    return {"first": first, "fed": np.stack(fed)}


@probe("ngram.generate")
def generate(sub, order: int, vocab_size: int, epsilon: float, train: np.ndarray, prompt: np.ndarray,
             max_new_tokens: int, temperature: float, top_k: int | None, seed: int) -> dict:
    """The submission's samplers.generate driven by the model: {"ids": int [T0 + N]}."""
    model = _model(sub, order, vocab_size, epsilon, train)
    ids = sub.module("samplers").generate(model, prompt.astype(np.int32), int(max_new_tokens),
                                          temperature=float(temperature), top_k=top_k, seed=int(seed))
    return {"ids": to_numpy(ids).astype(np.int64)}


@probe("ngram.dtypes")
def dtypes(sub, train: np.ndarray) -> dict:
    """The types the model returns: log_probs and step logits dtypes and shapes, log_likelihood and perplexity
    types."""
    model = _model(sub, 2, 5, 0.5, train)
    log_probs = to_numpy(model.log_probs(train[:3]))
    logits = to_numpy(model.step(train[None, :3])[0])
    return {"log_probs": [str(log_probs.dtype), list(log_probs.shape)], "step": [str(logits.dtype), list(logits.shape)],
            "log_likelihood": type(model.log_likelihood(train)).__name__,
            "perplexity": type(model.perplexity(train)).__name__}


@probe("ngram.invalid_arguments")
def invalid_arguments(sub, train: np.ndarray) -> dict:
    """Name of the exception raised by each invalid call (None when nothing was raised); "valid:" cases must not
    raise."""
    ngram = sub.module("ngram")
    model = ngram.NGramModel(3, 5, 0.5)
    return {
        "valid: fit, log_probs, perplexity and choose_epsilon": error_name(lambda: (
            model.fit(train), model.log_probs(train[:2]), model.perplexity(train),
            ngram.choose_epsilon(model, train, [0.1, 1.0]))),
        "NGramModel with order 0": error_name(lambda: ngram.NGramModel(0, 5)),
        "NGramModel with vocab_size 0": error_name(lambda: ngram.NGramModel(2, 0)),
        "NGramModel with epsilon 0": error_name(lambda: ngram.NGramModel(2, 5, 0.0)),
        "NGramModel with a negative epsilon": error_name(lambda: ngram.NGramModel(2, 5, -0.5)),
        "NGramModel with epsilon nan": error_name(lambda: ngram.NGramModel(2, 5, float("nan"))),
        "fit with an id >= vocab_size": error_name(lambda: ngram.NGramModel(2, 5).fit([0, 1, 5])),
        "ngram_counts with order 0": error_name(lambda: ngram.ngram_counts(train, 0)),
        "perplexity of a stream shorter than the order": error_name(lambda: model.perplexity(train[:2])),
        "choose_epsilon without candidates": error_name(lambda: ngram.choose_epsilon(model, train, [])),
        "choose_epsilon with a candidate 0": error_name(lambda: ngram.choose_epsilon(model, train, [0.1, 0.0])),
    }
