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
    """{"loss": float, "perplexity": float, "dtype": the loss's dtype name}: sequence_loss(labels [B, T],
    logits [B, T, V]) and perplexity(loss)."""
    import tensorflow as tf

    train = sub.module("train")
    loss = train.sequence_loss(tf.constant(labels, tf.int32), tf.constant(logits, tf.float32))
    return {"loss": float(to_numpy(loss)), "perplexity": float(to_numpy(train.perplexity(loss))),
            "dtype": _dtype_name(loss)}


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


class RecordingLanguageModel:
    """one_hot(tokens) -> Dense(8, tanh) -> Dropout(0.5) -> Dense(V), subclassed, recording the `training` argument
    of every call in `flags`."""

    @staticmethod
    def build(vocab_size: int, seed: int):
        import keras

        class Recording(keras.Model):
            def __init__(self):
                super().__init__()
                self.hidden = keras.layers.Dense(8, activation="tanh")
                self.dropout = keras.layers.Dropout(0.5)
                self.logits = keras.layers.Dense(vocab_size)
                self.flags: list = []

            def call(self, tokens, training=None):
                self.flags.append(training)
                hidden = self.hidden(keras.ops.one_hot(tokens, vocab_size))
                return self.logits(self.dropout(hidden, training=training))

        seed_everything(seed)
        return Recording()


def _flag_name(flag) -> str:
    """"True", "False" or "None" for those values; for anything else its truth value and type, e.g. "True (Tensor)"."""
    if flag is None or isinstance(flag, bool):
        return str(flag)
    try:
        return f"{bool(flag)} ({type(flag).__name__})"
    except Exception:  # noqa: BLE001 - a symbolic tensor has no truth value
        return f"? ({type(flag).__name__})"


@probe("train.train_step_training")
def train_step_training(sub, vocab_size: int, seed: int, inputs: np.ndarray, labels: np.ndarray) -> dict:
    """One eager train_step with SGD on a RecordingLanguageModel (built first, so only train_step's calls count).

    Returns {"flags": the `training` argument of each call of the model during train_step, by `_flag_name`}.
    """
    import keras
    import tensorflow as tf

    model = RecordingLanguageModel.build(int(vocab_size), int(seed))
    x, y = tf.constant(inputs, tf.int32), tf.constant(labels, tf.int32)
    model(x)
    model.flags.clear()
    sub.module("train").train_step(model, keras.optimizers.SGD(learning_rate=0.1), x, y)
    return {"flags": [_flag_name(flag) for flag in model.flags]}


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


class EmbeddingLanguageModel:
    """A subclassed keras.Model with fixed initial weights: logits = Dense(V)(tanh(Embedding(V, D)(tokens))).

    Its variables exist only after its first call (as those of the course's models). The embedding's gradient comes
    as IndexedSlices with one row per token occurrence, so repeated ids exercise how the gradient norm is taken.
    """

    @staticmethod
    def build(embedding: np.ndarray, kernel: np.ndarray, bias: np.ndarray):
        import keras

        constant = keras.initializers.Constant

        class EmbeddingModel(keras.Model):
            def __init__(self):
                super().__init__()
                self.embedding = keras.layers.Embedding(embedding.shape[0], embedding.shape[1],
                                                        embeddings_initializer=constant(embedding))
                self.logits = keras.layers.Dense(kernel.shape[1], kernel_initializer=constant(kernel),
                                                 bias_initializer=constant(bias))

            def call(self, tokens, training=False):
                return self.logits(keras.ops.tanh(self.embedding(tokens)))

        return EmbeddingModel()


def _dtype_name(value) -> str:
    """The dtype name of a tensor or array ("float32"), else the Python type's name ("float")."""
    import tensorflow as tf

    dtype = getattr(value, "dtype", None)
    return type(value).__name__ if dtype is None else tf.as_dtype(dtype).name


@probe("train.embedding_steps")
def embedding_steps(sub, weights: dict, inputs: np.ndarray, labels: np.ndarray, learning_rate: float,
                    clip_norm=None, compiled: bool = False, built: bool = True) -> dict:
    """SGD steps on an EmbeddingLanguageModel with the given initial weights, one per batch inputs[s], labels[s].

    With `compiled`, the steps go through `make_train_step(model, optimizer, clip_norm)` (tf.function), else through
    `train_step` eagerly; with `built`, the probe calls the model once before the first step, else the first step
    meets a fresh model without variables. Returns the reported losses and grad_norms, their dtypes, and the final
    weights {"embedding", "kernel", "bias"}.
    """
    import keras
    import tensorflow as tf

    model = EmbeddingLanguageModel.build(weights["embedding"], weights["kernel"], weights["bias"])
    optimizer = keras.optimizers.SGD(learning_rate=float(learning_rate))
    train = sub.module("train")
    if built:
        model(tf.constant(inputs[0], tf.int32))
    step = (train.make_train_step(model, optimizer, clip_norm=clip_norm) if compiled else
            lambda x, y: train.train_step(model, optimizer, x, y, clip_norm=clip_norm))
    losses, norms, dtypes = [], [], set()
    for x, y in zip(inputs, labels, strict=True):
        result = step(tf.constant(x, tf.int32), tf.constant(y, tf.int32))
        for key in ("loss", "grad_norm"):
            dtypes.add(f"{key}: {_dtype_name(result[key])}")
        losses.append(float(to_numpy(result["loss"])))
        norms.append(float(to_numpy(result["grad_norm"])))
    return {"losses": losses, "grad_norms": norms, "dtypes": sorted(dtypes),
            "weights": {"embedding": to_numpy(model.embedding.embeddings), "kernel": to_numpy(model.logits.kernel),
                        "bias": to_numpy(model.logits.bias)}}


@probe("train.restore_clock")
def restore_clock(sub, vocab_size: int, seed: int, checkpoint_every: int, checkpoint_minutes: float,
                  before: float, after: float) -> dict:
    """Save at step checkpoint_every, then on a new CheckpointPolicy (same directory, fake clock): advance the clock by
    `before` seconds, restore(), advance it by `after` seconds and call maybe_save(checkpoint_every + 1).

    Returns {"restored": restore()'s answer, "saved": whether that maybe_save saved}.
    """
    import tempfile

    import keras

    every = int(checkpoint_every)
    with tempfile.TemporaryDirectory() as directory:
        model = TinyLanguageModel.build(int(vocab_size), int(seed))
        policy = _policy(sub, directory, model, keras.optimizers.SGD(0.1), checkpoint_every=every,
                         checkpoint_minutes=float(checkpoint_minutes), clock=FakeClock())
        policy.step.assign(every)
        policy.save(every)
        clock = FakeClock()
        fresh = _policy(sub, directory, TinyLanguageModel.build(int(vocab_size), int(seed)),
                        keras.optimizers.SGD(0.1), checkpoint_every=every,
                        checkpoint_minutes=float(checkpoint_minutes), clock=clock)
        clock.now += float(before)
        returned = fresh.restore()
        clock.now += float(after)
        fresh.step.assign(every + 1)
        return {"restored": None if returned is None else int(returned),
                "saved": fresh.maybe_save(every + 1) is not None}
