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
    """{"loss": float, "perplexity": float}: sequence_loss(labels [B, T], logits [B, T, V]) and perplexity(loss)."""
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


# ---------------------------------------------------------------------------------------------------- checkpoints
class FakeClock:
    """A clock that only moves when the probe advances it: `clock()` returns `now` in seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _checkpoint_numbers(directory) -> list[int]:
    """Step numbers of the checkpoints in `directory` (from the `ckpt-N.index` files), sorted."""
    from pathlib import Path

    names = [p.name for p in Path(directory).glob("ckpt-*.index")]
    return sorted(int(name[len("ckpt-") : -len(".index")]) for name in names)


def _policy(sub, directory, model, optimizer, iterator=None, **kwargs):
    import tensorflow as tf

    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    return sub.module("train").CheckpointPolicy(directory, model, optimizer, step, iterator, **kwargs)


@probe("train.checkpoint_schedule")
def checkpoint_schedule(sub, vocab_size: int, seed: int, max_to_keep: int, checkpoint_every: int,
                        checkpoint_minutes: float, advances: list) -> dict:
    """maybe_save(step) for steps 1, 2, ... with a fake clock advanced by `advances[step - 1]` seconds before each.

    Returns which calls saved (maybe_save returned a path) and the step numbers of the checkpoint files left.
    """
    import tempfile

    import keras

    model = TinyLanguageModel.build(int(vocab_size), int(seed))
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as directory:
        policy = _policy(sub, directory, model, keras.optimizers.SGD(0.1), max_to_keep=int(max_to_keep),
                         checkpoint_every=int(checkpoint_every), checkpoint_minutes=float(checkpoint_minutes),
                         clock=clock)
        saved = []
        for step, seconds in enumerate(advances, start=1):
            clock.now += float(seconds)
            policy.step.assign(step)
            saved.append(policy.maybe_save(step) is not None)
        return {"saved": saved, "kept": _checkpoint_numbers(directory)}


@probe("train.checkpoint_best")
def checkpoint_best(sub, vocab_size: int, seed: int, losses: list) -> dict:
    """save_best(loss) for each validation loss in turn, at steps 1, 2, ...

    Returns save_best's answers, best_loss at the end, and the checkpoint step numbers in `best/` and in the
    directory itself (where save_best must not write).
    """
    import os
    import tempfile

    import keras

    model = TinyLanguageModel.build(int(vocab_size), int(seed))
    with tempfile.TemporaryDirectory() as directory:
        policy = _policy(sub, directory, model, keras.optimizers.SGD(0.1), clock=FakeClock())
        answers = []
        for step, loss in enumerate(losses, start=1):
            policy.step.assign(step)
            answers.append(bool(policy.save_best(float(loss))))
        return {"answers": answers, "best_loss": float(to_numpy(policy.best_loss)),
                "best": _checkpoint_numbers(os.path.join(directory, "best")), "regular": _checkpoint_numbers(directory)}


class LazyTinyLanguageModel:
    """TinyLanguageModel as a subclassed keras.Model: its variables only exist after the first call."""

    @staticmethod
    def build(vocab_size: int, seed: int):
        import keras

        class Tiny(keras.Model):
            def __init__(self):
                super().__init__()
                self.hidden = keras.layers.Dense(8, activation="tanh")
                self.logits = keras.layers.Dense(vocab_size)

            def call(self, tokens, training=False):
                return self.logits(self.hidden(keras.ops.one_hot(tokens, vocab_size)))

        seed_everything(seed)
        return Tiny()


def _update(model, optimizer, x, y) -> None:
    """One Adam update computed here (not with the submission's train_step)."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))


def _state(model, optimizer) -> dict:
    return {"weights": [to_numpy(v).copy() for v in model.weights],
            "optimizer": [to_numpy(v).copy() for v in optimizer.variables]}


@probe("train.checkpoint_restore")
def checkpoint_restore(sub, vocab_size: int, seed: int, inputs: np.ndarray, labels: np.ndarray, learning_rate: float,
                       steps: int) -> dict:
    """Train a lazily built model with Adam for `steps` updates (on inputs[i], labels[i]) while a data iterator
    advances once per update, save with `CheckpointPolicy.save` (given code), then restore into a fresh, unbuilt model
    (other initial weights), a fresh Adam and a fresh iterator with a new CheckpointPolicy on the same directory.

    Returns restore()'s answer, the restored step counter, the fresh optimizer's iterations, the next item of the fresh
    iterator, the weights and optimizer variables of both (saved and restored), and both again after one more
    identical update of each on inputs[steps], labels[steps].
    """
    import tempfile

    import keras
    import tensorflow as tf

    steps = int(steps)
    x, y = tf.constant(inputs, tf.int32), tf.constant(labels, tf.int32)
    model = LazyTinyLanguageModel.build(int(vocab_size), int(seed))
    optimizer = keras.optimizers.Adam(float(learning_rate))
    iterator = iter(tf.data.Dataset.range(1000))
    for i in range(steps):
        _update(model, optimizer, x[i], y[i])
        next(iterator)
    with tempfile.TemporaryDirectory() as directory:
        policy = _policy(sub, directory, model, optimizer, iterator, clock=FakeClock())
        policy.step.assign(steps)
        policy.save(steps)
        saved = _state(model, optimizer)

        fresh_model = LazyTinyLanguageModel.build(int(vocab_size), int(seed) + 1)
        fresh_optimizer = keras.optimizers.Adam(float(learning_rate))
        fresh_iterator = iter(tf.data.Dataset.range(1000))
        fresh = _policy(sub, directory, fresh_model, fresh_optimizer, fresh_iterator, clock=FakeClock())
        returned = fresh.restore()
        restored = _state(fresh_model, fresh_optimizer) if fresh_model.built else {"weights": [], "optimizer": []}
        reply = {
            "returned": None if returned is None else int(returned),
            "step": int(to_numpy(fresh.step)),
            "iterations": int(to_numpy(fresh_optimizer.iterations)),
            "next_item": int(to_numpy(next(fresh_iterator))),
            "saved": saved,
            "restored": restored,
        }
        _update(model, optimizer, x[steps], y[steps])
        reply["continued"] = _state(model, optimizer)
        try:
            _update(fresh_model, fresh_optimizer, x[steps], y[steps])
            reply["resumed"] = _state(fresh_model, fresh_optimizer)
        except Exception as error:  # noqa: BLE001 - e.g. an optimizer built before the model: reported, not raised
            reply["resumed"] = f"{type(error).__name__}: {str(error).split(', value=')[0][:160]}"
    return reply
