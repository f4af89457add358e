"""Probes for part 3 (samplers.py): filters, batched sampling and generation with a stub model."""

from __future__ import annotations

import numpy as np

from .common import error_name, to_numpy
from .registry import probe


@probe("samplers.greedy")
def greedy(sub, logits: np.ndarray) -> dict:
    """Return greedy(logits) and sample(logits, temperature=0) for logits [B, V]."""
    import tensorflow as tf

    samplers = sub.module("samplers")
    x = tf.constant(logits, tf.float32)
    return {
        "greedy": to_numpy(samplers.greedy(x)),
        "sample_t0": to_numpy(samplers.sample(x, temperature=0.0, seed=0)),
    }


@probe("samplers.filter")
def filter_logits(sub, kind: str, logits: np.ndarray, values: list) -> dict:
    """Apply one filter row by row: kind "temperature", "top_k" or "top_p", values[b] is that row's argument.

    Returns {"filtered": float [B, V]}; each row is filtered on its own as a [1, V] batch.
    """
    import tensorflow as tf

    samplers = sub.module("samplers")
    fn = {"temperature": samplers.apply_temperature, "top_k": samplers.top_k_filter, "top_p": samplers.top_p_filter}
    rows = []
    for row, value in zip(logits, values, strict=False):
        out = fn[kind](tf.constant(row[None, :], tf.float32), value)
        rows.append(to_numpy(out).reshape(-1))
    return {"filtered": np.stack(rows).astype(np.float32)}


@probe("samplers.filter_batch")
def filter_batch(sub, kind: str, logits: np.ndarray, value: float) -> dict:
    """Apply one filter to a whole [B, V] batch with one argument (rows must be filtered independently)."""
    import tensorflow as tf

    samplers = sub.module("samplers")
    fn = {"top_k": samplers.top_k_filter, "top_p": samplers.top_p_filter}[kind]
    return {"filtered": to_numpy(fn(tf.constant(logits, tf.float32), value)).astype(np.float32)}


@probe("samplers.draw")
def draw(sub, logits: np.ndarray, num_samples: int, seed: int, temperature: float = 1.0, top_k=None,
         top_p=None) -> dict:
    """Tile logits [V] to [num_samples, V] and call sample() once with the given seed; returns ids [num_samples]."""
    import tensorflow as tf

    samplers = sub.module("samplers")
    tiled = tf.tile(tf.constant(logits[None, :], tf.float32), [int(num_samples), 1])
    ids = samplers.sample(tiled, temperature=temperature, top_k=top_k, top_p=top_p, seed=int(seed))
    return {"ids": to_numpy(ids)}


@probe("samplers.invalid_arguments")
def invalid_arguments(sub) -> dict:
    """Name of the exception raised by each invalid call (None when nothing was raised).

    The "valid:" case is a correct call that must not raise: argument checks are given code, so they only earn points
    together with a working implementation.
    """
    import tensorflow as tf

    samplers = sub.module("samplers")
    x = tf.constant([[0.5, 1.0, -1.0]], tf.float32)
    return {
        "valid: sample with temperature, top_k and top_p": error_name(
            lambda: samplers.sample(x, temperature=0.5, top_k=2, top_p=0.9, seed=0)
        ),
        "temperature=0 in apply_temperature": error_name(lambda: samplers.apply_temperature(x, 0.0)),
        "negative temperature in sample": error_name(lambda: samplers.sample(x, temperature=-1.0, seed=0)),
        "top_k_filter with k=0": error_name(lambda: samplers.top_k_filter(x, 0)),
        "top_p_filter with p=0": error_name(lambda: samplers.top_p_filter(x, 0.0)),
        "top_p_filter with p=1.5": error_name(lambda: samplers.top_p_filter(x, 1.5)),
    }


class CountingModel:
    """A stub language model for `generate`: the next token is (last token + shift) mod V, with margin `gap`.

    `step(tokens [B, t], state)` returns logits [B, t, V] where row (b, s) puts `gap` on (tokens[b, s] + shift) % V
    and 0 elsewhere; the state counts the positions seen. Calls are recorded as (t, state position). With a
    `context_length`, the model has that attribute and refuses a step that would hold more positions.
    """

    def __init__(self, vocab_size: int, shift: int, gap: float, context_length: int | None = None):
        self.vocab_size = vocab_size
        self.shift = shift
        self.gap = gap
        if context_length is not None:
            self.context_length = int(context_length)
        self.calls: list[list[int]] = []

    def step(self, tokens, state=None):
        import tensorflow as tf

        tokens = tf.convert_to_tensor(tokens)
        position = 0 if state is None else int(state)
        self.calls.append([int(tokens.shape[1]), position])
        limit = getattr(self, "context_length", None)
        if limit is not None and position + int(tokens.shape[1]) > limit:
            raise ValueError(f"step: {position} cached + {int(tokens.shape[1])} new positions exceed "
                             f"context_length = {limit}")
        target = (tf.cast(tokens, tf.int32) + self.shift) % self.vocab_size
        logits = self.gap * tf.one_hot(target, self.vocab_size, dtype=tf.float32)
        return logits, position + int(tokens.shape[1])

    def __call__(self, tokens, training=False):
        return self.step(tokens)[0]


@probe("samplers.generate")
def generate(sub, prompt: np.ndarray, max_new_tokens: int, vocab_size: int, shift: int, gap: float,
             temperature: float, seed: int, context_length: int | None = None) -> dict:
    """Run generate() on a CountingModel; returns the ids and the recorded step calls [num_calls, 2]."""
    samplers = sub.module("samplers")
    model = CountingModel(vocab_size, shift, gap, context_length)
    ids = samplers.generate(model, prompt, max_new_tokens, temperature=temperature, seed=int(seed))
    return {"ids": to_numpy(ids), "calls": np.asarray(model.calls, dtype=np.int64).reshape(-1, 2)}


@probe("samplers.generate_invalid")
def generate_invalid(sub) -> dict:
    """Name of the exception raised by generate() for an empty prompt and for max_new_tokens < 0."""
    samplers = sub.module("samplers")
    model = CountingModel(5, 1, 1.0)
    return {
        "empty prompt": error_name(lambda: samplers.generate(model, np.zeros([0], np.int32), 3, seed=0)),
        "max_new_tokens < 0": error_name(lambda: samplers.generate(model, np.array([1, 2], np.int32), -1, seed=0)),
    }


@probe("samplers.ids_dtypes")
def ids_dtypes(sub, logits: np.ndarray) -> dict:
    """The dtype names of the ids of greedy(logits), sample(logits, temperature=0) and sample(logits, seed=0)."""
    import tensorflow as tf

    samplers = sub.module("samplers")
    x = tf.constant(logits, tf.float32)
    results = {"greedy": samplers.greedy(x), "sample(temperature=0)": samplers.sample(x, temperature=0.0, seed=0),
               "sample(temperature=1)": samplers.sample(x, temperature=1.0, seed=0)}
    return {name: tf.as_dtype(value.dtype).name if hasattr(value, "dtype") else type(value).__name__
            for name, value in results.items()}


@probe("samplers.compiled_draw")
def compiled_draw(sub, logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None,
                  seeds: list) -> dict:
    """Draw ids [B] from logits [B, V] once per seed s (as [s, 0]) with `compiled_sampler(temperature, top_k, top_p)`
    (one tf.function graph) and with `sample` eagerly; returns {"compiled", "eager": int [S, B]}."""
    import tensorflow as tf

    samplers = sub.module("samplers")
    x = tf.constant(logits, tf.float32)
    draw = samplers.compiled_sampler(temperature, top_k, top_p)
    compiled, eager = [], []
    for s in seeds:
        pair = tf.constant([int(s), 0], tf.int64)
        compiled.append(to_numpy(draw(x, seed=pair)))
        eager.append(to_numpy(samplers.sample(x, temperature, top_k, top_p, seed=pair)))
    return {"compiled": np.stack(compiled), "eager": np.stack(eager)}


@probe("samplers.generate_seeds")
def generate_seeds(sub, prompt: np.ndarray, max_new_tokens: int, vocab_size: int, temperature: float,
                   seed: int) -> dict:
    """generate() on a CountingModel with uniform logits (gap 0), and the ids that sample() draws from those logits
    with the seed [seed, s] of each step s: {"ids": [B, T0 + N], "per_step": [N, B]}."""
    import tensorflow as tf

    samplers = sub.module("samplers")
    model = CountingModel(vocab_size, 1, 0.0)
    ids = samplers.generate(model, prompt, max_new_tokens, temperature=temperature, seed=int(seed))
    uniform = tf.zeros([prompt.shape[0], int(vocab_size)], tf.float32)
    per_step = [to_numpy(samplers.sample(uniform, temperature, seed=tf.constant([int(seed), s], tf.int64)))
                for s in range(int(max_new_tokens))]
    return {"ids": to_numpy(ids), "per_step": np.stack(per_step)}
