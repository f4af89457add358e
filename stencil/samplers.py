"""Part 3: decoding. Greedy, temperature, top-k and top-p (nucleus) sampling, and autoregressive generation.

Every sampler works on the last axis of `logits [B, V]` (float32) and returns token ids `[B]` (int32). The filters
return logits of the same shape with the dropped tokens set to `-inf`, so that a softmax (or
`tf.random.stateless_categorical`) gives them probability 0 and renormalises over the kept ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf


def _check_logits(logits: tf.Tensor) -> tf.Tensor:
    """logits (tensor or array-like) as a float32 tensor; ValueError unless it has rank 2 ([B, V])."""
    logits = tf.cast(logits, tf.float32)
    if logits.shape.rank != 2:
        raise ValueError(f"logits must have shape [B, V], got shape {logits.shape}")
    return logits


def _check_k(k: int, name: str = "k") -> None:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {k!r}")


def _check_p(p: float, name: str = "p") -> None:
    if not 0.0 < p <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {p!r}")


def _check_temperature(temperature: float) -> None:
    if not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature!r}")


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """ValueError unless temperature >= 0, top_k (when given) >= 1 and top_p (when given) lies in (0, 1]."""
    _check_temperature(temperature)
    if top_k is not None:
        _check_k(top_k, "top_k")
    if top_p is not None:
        _check_p(top_p, "top_p")


def _seed_pair(seed: int | tf.Tensor | None) -> tf.Tensor:
    """The shape-[2] int64 seed of a stateless op: int s -> [s, 0], a shape-[2] tensor as is, None -> a random pair."""
    if seed is None:
        return tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return tf.constant([int(seed), 0], tf.int64)
    pair = tf.convert_to_tensor(seed)
    if not pair.dtype.is_integer or pair.shape != (2,):
        raise ValueError(f"seed must be an int or a shape-[2] int tensor, got {seed!r}")
    return tf.cast(pair, tf.int64)


def greedy(logits: tf.Tensor) -> tf.Tensor:
    """The most likely token of each row: ids [B] int32 for logits [B, V]; ties go to the lowest index."""
    logits = _check_logits(logits)
    raise NotImplementedError("TODO(part 3): Take the argmax of each row (int32).")


def apply_temperature(logits: tf.Tensor, temperature: float) -> tf.Tensor:
    """logits [B, V] / temperature: below 1 sharpens the distribution, above 1 flattens it; temperature > 0."""
    logits = _check_logits(logits)
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    raise NotImplementedError("TODO(part 3): Divide the logits by the temperature.")


def top_k_filter(logits: tf.Tensor, k: int) -> tf.Tensor:
    """Keep every token whose logit is >= the k-th largest of its row, set the others to -inf: [B, V] -> [B, V].

    The k-th largest counts tied logits with multiplicity: it is entry k of the row sorted in decreasing order,
    repeated values included (for the row [3, 3, 1, 0] and k = 2 it is 3, so only the two 3s are kept). Ties at the
    k-th logit are all kept (more than k tokens may survive); k >= V keeps everything.
    """
    logits = _check_logits(logits)
    _check_k(k)
    raise NotImplementedError(
        "TODO(part 3): Find each row's k-th largest logit (k capped at V) and set smaller logits to -inf."
    )


def top_p_filter(logits: tf.Tensor, p: float) -> tf.Tensor:
    """Nucleus filter: keep token i iff the probability mass of the tokens strictly more probable than i is < p.

    logits [B, V] -> [B, V] with the dropped tokens set to -inf. The token that crosses p is kept, the most likely
    token is always kept, tokens of equal probability are kept or dropped together, and p = 1 keeps everything.
    Order and ties are decided on the logits (softmax is monotonic: "strictly more probable" is "strictly larger
    logit"); the probabilities are only summed. Float32 softmax can give equal logits values that differ in the last
    bit, so comparing probabilities could split a tie. The probabilities are the softmax of `logits` as given: the
    tokens already at -inf (dropped by top-k in `sample`) have probability 0, so top-p sums the probabilities of the
    kept tokens renormalised. At p = 1 the logits are returned unchanged: in float32 the mass above a very improbable
    token can round to exactly 1, and a literal `mass < p` test would then drop it.
    """
    logits = _check_logits(logits)
    _check_p(p)
    raise NotImplementedError(
        "TODO(part 3): Keep the tokens whose strictly-more-probable mass is < p (p = 1 keeps all), others -inf."
    )


def sample(
    logits: tf.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | tf.Tensor | None = None,
) -> tf.Tensor:
    """Draw one token per row of logits [B, V]: ids [B] int32.

    temperature == 0 is greedy (the filters are ignored); otherwise apply the temperature, then top-k, then top-p,
    and draw with tf.random.stateless_categorical. After top-k, top-p sums the probabilities of the kept tokens
    renormalised (the softmax of the tempered logits that top-k left), not those of the whole row. `seed` is an int s
    (used as [s, 0]) or a shape-[2] int tensor; the same seed gives the same ids. seed=None draws a fresh random seed.
    """
    logits = _check_logits(logits)
    _check_sampling(temperature, top_k, top_p)
    seed = _seed_pair(seed)
    raise NotImplementedError(
        "TODO(part 3): Greedy at temperature 0, else temperature -> top-k -> top-p -> stateless_categorical."
    )


@functools.lru_cache(maxsize=32)
def compiled_sampler(
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Callable[..., tf.Tensor]:
    """`sample` with these settings as one TensorFlow graph: draw(logits [B, V], seed=[2] int tensor) -> ids [B].

    The same draws as `sample`; in a generation loop it costs a fraction of the dozen eager operations of top-k and
    top-p, which take longer than a cached model step. One graph per setting, traced on the first call; greedy
    decoding (temperature 0) is a single argmax and stays eager.
    """
    _check_sampling(temperature, top_k, top_p)

    def draw(logits: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return sample(logits, temperature, top_k, top_p, seed=seed)

    return draw if temperature == 0.0 else tf.function(draw)


def generate(
    model,
    prompt: Sequence[int] | np.ndarray | tf.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> tf.Tensor:
    """Extend prompt ids [T0] or [B, T0] by max_new_tokens sampled ids: int32 [T0 + N] or [B, T0 + N].

    `model.step(tokens [B, T], state=None)` returns (logits [B, T, V], state). With max_new_tokens N = 0 the prompt is
    returned without calling the model. Otherwise call it once on the prompt and draw token 0 from the last position;
    then for s = 1 .. N - 1 feed the token drawn last alone ([B, 1]) with the state returned, and draw token s. The last
    token is never fed: N calls in all. The token drawn at step s (0-based) uses `sample(..., seed=[seed, s])`.

    When the model has a `context_length` C, a longer prompt is cut to its last C tokens for the first call, and when
    the cache holds C positions and a token must be fed, the cache restarts instead: `model.step(recent)` with state
    None on the last K = max(C // 2, 1) tokens so far (ending with that token), after which it holds K positions. So
    restarts come every C - K + 1 tokens (every 3 for C = 4; the handout traces it).
    """
    ids = tf.convert_to_tensor(prompt)
    if ids.shape.rank not in (1, 2):
        raise ValueError(f"prompt must have shape [T0] or [B, T0], got shape {ids.shape}")
    if ids.shape[-1] == 0:
        raise ValueError("prompt must hold at least one token, got an empty prompt")
    if not ids.dtype.is_integer:
        raise ValueError(f"prompt must hold integer token ids, got dtype {ids.dtype.name}")
    if isinstance(max_new_tokens, bool) or int(max_new_tokens) != max_new_tokens or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    _check_sampling(temperature, top_k, top_p)
    unbatched = ids.shape.rank == 1
    ids = tf.cast(ids[None, :] if unbatched else ids, tf.int32)
    raise NotImplementedError(
        "TODO(part 3): Step the prompt once, then sample and feed back one token at a time (seed [seed, s])."
    )
    return ids[0] if unbatched else ids
