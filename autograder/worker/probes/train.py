"""Probes for part 5 (train.py). They train a tiny model defined here (not the student's LMs), so that a mistake in
another part cannot fail these tests."""

from __future__ import annotations

import numpy as np

from .common import seed_everything, to_numpy
from .registry import probe


class TinyLanguageModel:
    """one_hot(tokens) -> Dense(8, tanh) -> Dense(V): logits [B, T, V] float32 for tokens [B, T] int32.

    One-hot inputs instead of an Embedding keep every gradient dense, so the global gradient norm does not depend on
    how IndexedSlices with repeated rows are reduced.
    """

    @staticmethod
    def build(vocab_size: int, seed: int):
        import keras

        seed_everything(seed)
        tokens = keras.Input((None,), dtype="int32")
        hidden = keras.layers.Dense(8, activation="tanh")(keras.ops.one_hot(tokens, vocab_size))
        return keras.Model(tokens, keras.layers.Dense(vocab_size)(hidden))


def _loss(model, x, y) -> float:
    import keras

    fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(fn(y, model(x)))


@probe("train.sequence_loss")
def sequence_loss(sub, labels: np.ndarray, logits: np.ndarray) -> dict:
    """{"loss": float} of sequence_loss(labels [B, T], logits [B, T, V])."""
    import tensorflow as tf

    train = sub.module("train")
    loss = train.sequence_loss(tf.constant(labels, tf.int32), tf.constant(logits, tf.float32))
    return {"loss": float(to_numpy(loss)), "perplexity": float(to_numpy(train.perplexity(loss)))}


@probe("train.train_step")
def train_step(sub, vocab_size: int, seed: int, inputs: np.ndarray, labels: np.ndarray, learning_rate: float,
               clip_norm=None) -> dict:
    """One train_step with SGD(learning_rate) on a TinyLanguageModel.

    Returns the loss before/after (computed here), the reported loss and grad_norm, the true global gradient norm
    before clipping, the update's global norm and each trainable variable's change norm.
    """
    import keras
    import tensorflow as tf

    model = TinyLanguageModel.build(int(vocab_size), int(seed))
    optimizer = keras.optimizers.SGD(learning_rate=float(learning_rate))
    x, y = tf.constant(inputs, tf.int32), tf.constant(labels, tf.int32)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x))
    grads = tape.gradient(loss, model.trainable_variables)
    grad_norm = float(tf.linalg.global_norm([tf.convert_to_tensor(g) for g in grads]))
    before = [to_numpy(v).copy() for v in model.trainable_variables]
    result = sub.module("train").train_step(model, optimizer, x, y, clip_norm=clip_norm)
    changes = [float(np.linalg.norm(to_numpy(v) - b)) for v, b in zip(model.trainable_variables, before, strict=False)]
    return {
        "loss_before": float(loss),
        "loss_after": _loss(model, x, y),
        "reported_loss": float(to_numpy(result["loss"])),
        "reported_grad_norm": float(to_numpy(result["grad_norm"])),
        "grad_norm": grad_norm,
        "update_norm": float(np.sqrt(np.sum(np.square(changes)))),
        "changes": np.asarray(changes, dtype=np.float64),
        "names": [getattr(v, "path", v.name) for v in model.trainable_variables],
    }


@probe("train.evaluate")
def evaluate(sub, vocab_size: int, seed: int, inputs: np.ndarray, labels: np.ndarray, batch_size: int,
             max_batches=None) -> dict:
    """evaluate(TinyLanguageModel, dataset of [batch_size] batches, last one partial) and the model's logits."""
    import tensorflow as tf

    model = TinyLanguageModel.build(int(vocab_size), int(seed))
    dataset = tf.data.Dataset.from_tensor_slices((inputs.astype(np.int32), labels.astype(np.int32)))
    result = sub.module("train").evaluate(model, dataset.batch(int(batch_size)), max_batches=max_batches)
    return {
        "loss": float(to_numpy(result["loss"])),
        "perplexity": float(to_numpy(result["perplexity"])),
        "logits": to_numpy(model(tf.constant(inputs, tf.int32))),
    }
