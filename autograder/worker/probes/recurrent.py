"""Probes for part 2 (rnn.py and lstm.py); `kind` is "rnn" (RNNCell, RNNLanguageModel) or "lstm" (LSTM*)."""

from __future__ import annotations

import numpy as np

from .common import assign_weights, seed_everything, to_numpy
from .registry import probe

CLASSES = {"rnn": ("rnn", "RNNCell", "RNNLanguageModel"), "lstm": ("lstm", "LSTMCell", "LSTMLanguageModel")}


def _classes(sub, kind: str):
    module_name, cell_name, model_name = CLASSES[kind]
    module = sub.module(module_name)
    return getattr(module, cell_name), getattr(module, model_name)


def _as_list(states) -> list:
    return list(states) if isinstance(states, (list, tuple)) else [states]


@probe("recurrent.cell_forward")
def cell_forward(sub, kind: str, units: int, x: np.ndarray, states: list, weights: dict) -> dict:
    """Run the student's cell with the given weights over x [B, T, D] from `states` (list of [B, D_h]).

    Returns the per-step outputs [B, T, D_h] and final states, both from a Python loop over `cell(x_t, states)` and
    from `keras.layers.RNN(cell, return_sequences=True, return_state=True)`.
    """
    import keras
    import tensorflow as tf

    cell_class, _ = _classes(sub, kind)
    cell = cell_class(units)
    xs = tf.constant(x, tf.float32)
    current = [tf.constant(s, tf.float32) for s in states]
    cell(xs[:, 0], current)
    assign_weights(cell, weights, cell_class.__name__)
    outputs = []
    for t in range(xs.shape[1]):
        out, current = cell(xs[:, t], current)
        current = _as_list(current)
        outputs.append(out)
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    layer_out = _as_list(layer(xs, initial_state=[tf.constant(s, tf.float32) for s in states]))
    return {
        "step_outputs": np.stack([to_numpy(o) for o in outputs], axis=1),
        "step_states": [to_numpy(s) for s in current],
        "layer_outputs": to_numpy(layer_out[0]),
        "layer_states": [to_numpy(s) for s in layer_out[1:]],
    }


@probe("recurrent.cell_initial_weights")
def cell_initial_weights(sub, kind: str, input_dim: int, units: int, seed: int) -> dict:
    """Build a fresh cell for inputs [B, input_dim]; returns {weight name: initial value} and, under "call_output",
    the output [2, units] of one call on an all-ones input from zero states (so the weights count only together with
    a working cell)."""
    import tensorflow as tf

    from .common import weight_name

    seed_everything(seed)
    cell_class, _ = _classes(sub, kind)
    cell = cell_class(units)
    cell.build((None, input_dim))
    reply = {weight_name(v): to_numpy(v) for v in cell.weights}
    zeros = [tf.zeros([2, units]) for _ in range(2 if kind == "lstm" else 1)]
    output, _ = cell(tf.ones([2, input_dim]), zeros)
    reply["call_output"] = to_numpy(output)
    return reply


def _build_model(sub, kind: str, vocab_size: int, embed_dim: int, hidden_dim: int, tokens: np.ndarray):
    _, model_class = _classes(sub, kind)
    model = model_class(vocab_size, embed_dim, hidden_dim)
    model(tokens[:, :1])
    return model


@probe("recurrent.lm_forward")
def lm_forward(sub, kind: str, vocab_size: int, embed_dim: int, hidden_dim: int, tokens: np.ndarray, weights: dict,
               split: int) -> dict:
    """Logits of the student's LM with the given weights, from one call and from step(:split) + step(split:, state).

    weights: {"embeddings": [V, E], "kernel", "recurrent_kernel", "bias" (the cell's), "output_kernel": [D_h, V],
    "output_bias": [V]}, assigned to model.embedding, model.rnn.cell and model.output_layer by name.
    """
    import tensorflow as tf

    seed_everything(0)
    model = _build_model(sub, kind, vocab_size, embed_dim, hidden_dim, tokens)
    name = type(model).__name__
    assign_weights(model.embedding, {"embeddings": weights["embeddings"]}, f"{name}.embedding")
    cell_weights = {k: weights[k] for k in ("kernel", "recurrent_kernel", "bias")}
    assign_weights(model.rnn.cell, cell_weights, f"{name}.rnn.cell")
    assign_weights(model.output_layer, {"kernel": weights["output_kernel"], "bias": weights["output_bias"]},
                   f"{name}.output_layer")
    x = tf.constant(tokens, tf.int32)
    logits = model(x)
    first, state = model.step(x[:, :split])
    second, _ = model.step(x[:, split:], state)
    return {"logits": to_numpy(logits), "step_logits": np.concatenate([to_numpy(first), to_numpy(second)], axis=1)}


@probe("recurrent.lm_gradients")
def lm_gradients(sub, kind: str, vocab_size: int, embed_dim: int, hidden_dim: int, tokens: np.ndarray,
                 labels: np.ndarray, seed: int) -> dict:
    """Gradient of the mean cross-entropy w.r.t. every trainable variable of a freshly built LM.

    Returns {"names": [str], "shapes": [[int]], "norms": float [n] (NaN where the gradient is None)}.
    """
    import keras
    import tensorflow as tf

    seed_everything(seed)
    model = _build_model(sub, kind, vocab_size, embed_dim, hidden_dim, tokens)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(tf.constant(labels, tf.int32), model(tf.constant(tokens, tf.int32), training=True))
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    norms = [np.nan if g is None else float(tf.norm(tf.convert_to_tensor(g))) for g in grads]
    return {
        "names": [getattr(v, "path", v.name) for v in variables],
        "shapes": [list(v.shape) for v in variables],
        "norms": np.asarray(norms, dtype=np.float64),
    }
