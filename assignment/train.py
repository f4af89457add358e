"""Part 5: training. The loss and perplexity, one optimisation step under `tf.GradientTape`, evaluation, the learning
rate schedule and the optimizer, and a checkpoint policy that survives interruptions.

    python -m assignment.trainer --model transformer --out runs/transformer
    tensorboard --logdir runs

That command (given: trainer.py) runs these pieces in the training loop `fit` (given: loop.py) and writes the run
directory that runs.py describes: config.json, the tokenizer, the checkpoints and the TensorBoard logs. Ctrl-C stops
training after the current step and saves a checkpoint of it; running the same command again resumes from the latest
checkpoint and trains exactly as an uninterrupted run would.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import tensorflow as tf

from .runs import BEST_DIR, check_checkpointable, random_state


# ---------------------------------------------------------------------------------------------------- loss
def sequence_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean sparse categorical cross-entropy over all B * T positions.

    Args:
        labels: int32 [B, T], the next token at every position.
        logits: float32 [B, T, V], unnormalised scores.

    Returns:
        float32 scalar, -1/(BT) * sum_{b,t} log softmax(logits[b, t])[labels[b, t]].
    """
    labels = tf.cast(labels, tf.int32)
    logits = tf.cast(logits, tf.float32)
    # BEGIN SOLUTION (part train): Average the per-position cross-entropy of `logits` against `labels` (from logits).
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(losses)
    # END SOLUTION


def perplexity(loss: float | tf.Tensor) -> tf.Tensor:
    """exp(loss) as a float32 scalar: the effective number of equally likely next tokens."""
    loss = tf.cast(loss, tf.float32)
    return tf.exp(loss)  # SOLUTION (part train): Return the exponential of the mean loss.


# ---------------------------------------------------------------------------------------------------- one step
def train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    inputs: tf.Tensor,
    labels: tf.Tensor,
    clip_norm: float | None = None,
) -> dict[str, tf.Tensor]:
    """One optimisation step on a batch.

    Computes the loss of `model(inputs, training=True)` under `tf.GradientTape`, takes the gradients of
    `model.trainable_variables` (read after the forward pass: a fresh model has none before it), measures the global
    norm of the dense gradients (an embedding's gradient is a tf.IndexedSlices whose repeated rows add up: convert each
    gradient with tf.convert_to_tensor first), clips them to `clip_norm` by global norm when it is given, and applies
    them with `optimizer`. Runs eagerly and inside tf.function (`make_train_step`): TensorFlow operations only.

    Args:
        inputs, labels: int32 [B, T].
        clip_norm: maximum global norm of the applied gradients, or None for no clipping.

    Returns:
        {"loss": float32 scalar, the batch loss before the update,
         "grad_norm": float32 scalar, the global norm of the gradients before clipping}.
    """
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be a positive number or None, got {clip_norm!r}")
    # BEGIN SOLUTION (part train): Loss under a GradientTape, gradients, global norm, optional clipping, apply_gradients.
    with tf.GradientTape() as tape:
        loss = sequence_loss(labels, model(inputs, training=True))
    variables = model.trainable_variables
    # Dense gradients: an embedding's gradient comes as IndexedSlices whose repeated rows would distort the norm.
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
    grad_norm = tf.linalg.global_norm(grads)
    if clip_norm is not None:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=grad_norm)
    optimizer.apply_gradients(zip(grads, variables, strict=True))
    return {"loss": loss, "grad_norm": grad_norm}
    # END SOLUTION


def make_train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    clip_norm: float | None = None,
    jit_compile: bool = False,
) -> Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]]:
    """`train_step` for this model and optimizer compiled with `tf.function` (XLA too when `jit_compile`).

    The returned function takes (inputs, labels) and returns train_step's dict; it is traced once per batch shape.
    """

    @tf.function(jit_compile=jit_compile)
    def step(inputs: tf.Tensor, labels: tf.Tensor) -> dict[str, tf.Tensor]:
        return train_step(model, optimizer, inputs, labels, clip_norm=clip_norm)

    return step


# ---------------------------------------------------------------------------------------------------- evaluation
def evaluate(model: keras.Model, dataset: tf.data.Dataset, max_batches: int | None = None) -> dict[str, float]:
    """Token-weighted mean loss of `model` over `dataset` (or its first `max_batches` batches) and its perplexity.

    Every token counts once, so a smaller last batch weighs less than a full one (the mean of the batch means would
    weigh it as much). The model runs with `training=False`.

    Args:
        dataset: yields (inputs [B, T] int32, labels [B, T] int32); batches may differ in size.
        max_batches: evaluate only the first `max_batches` batches; None means all of them.

    Returns:
        {"loss": float, "perplexity": float}.

    Raises:
        ValueError: the dataset (or its first `max_batches` batches) holds no tokens.
    """
    if max_batches is not None and (isinstance(max_batches, bool) or not int(max_batches) >= 1):
        raise ValueError(f"max_batches must be an int >= 1 or None, got {max_batches!r}")
    # BEGIN SOLUTION (part train): Sum the per-token losses and count the tokens over the batches; return mean and exp.
    if max_batches is not None:
        dataset = dataset.take(int(max_batches))
    total, count = 0.0, 0
    for inputs, labels in dataset:
        logits = model(inputs, training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)
        total += float(tf.reduce_sum(tf.cast(losses, tf.float64)))
        count += int(tf.size(losses))
    if count == 0:
        raise ValueError("dataset is empty: there is nothing to evaluate")
    loss = total / count
    return {"loss": loss, "perplexity": float(perplexity(loss))}
    # END SOLUTION


# ---------------------------------------------------------------------------------------------------- schedule
class WarmupCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then cosine decay to `peak * final_fraction` at
    `total_steps` (constant after it)."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, final_fraction: float = 0.1):
        if not peak > 0:
            raise ValueError(f"peak learning rate must be positive, got {peak!r}")
        if warmup_steps < 0 or total_steps < 1:
            raise ValueError(f"need warmup_steps >= 0 and total_steps >= 1, got {warmup_steps} and {total_steps}")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0  # the first update (optimizer iterations = 0) is step 1
        warmup = self.peak * step / max(self.warmup_steps, 1)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        decayed = self.peak * (self.final_fraction + (1.0 - self.final_fraction) * cosine)
        return tf.where(step <= self.warmup_steps, warmup, decayed)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "final_fraction": self.final_fraction}


def make_optimizer(learning_rate: float, warmup_steps: int, total_steps: int,
                   weight_decay: float = 0.01) -> keras.optimizers.Optimizer:
    """AdamW with the warmup + cosine schedule."""
    schedule = WarmupCosineSchedule(learning_rate, warmup_steps, total_steps)
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)


# ---------------------------------------------------------------------------------------------------- checkpoints
class CheckpointPolicy:
    """When to save, which checkpoints to keep, and how to resume.

    A `tf.train.CheckpointManager` over (model, optimizer, step, iterator, and the random state of the model's dropout
    layers) in `directory` keeps the last `max_to_keep` checkpoints; `maybe_save` writes one every `checkpoint_every`
    steps and whenever `checkpoint_minutes` have passed since `last_save_time` (the save clock). A second manager keeps
    the single best checkpoint by validation loss (model, step and the loss itself) in `directory/best`, so the best
    value survives a restart.

    Attributes:
        step: int64 tf.Variable, the number of training steps done (saved with every checkpoint).
        best_loss: float64 tf.Variable, the lowest validation loss saved so far (inf before the first).
        manager, best_manager: the two tf.train.CheckpointManager.
        last_save_time: the save clock: `clock()` at construction, at every `save` (`maybe_save`'s included) and at
            every `restore` that loads a checkpoint; `save_best` does not reset it.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        step: tf.Variable,
        iterator: Iterator | None = None,
        max_to_keep: int = 3,
        checkpoint_every: int = 100,
        checkpoint_minutes: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"max_to_keep must be an int >= 1, got {max_to_keep!r}")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be an int >= 1, got {checkpoint_every!r}")
        if not checkpoint_minutes > 0:
            raise ValueError(f"checkpoint_minutes must be positive, got {checkpoint_minutes!r}")
        if not isinstance(step, tf.Variable):
            raise ValueError(f"step must be a tf.Variable (an int64 step counter), got {type(step).__name__}")
        self.directory = Path(directory)
        self.model, self.optimizer, self.step = model, optimizer, step
        self.checkpoint_every, self.checkpoint_minutes, self.clock = checkpoint_every, checkpoint_minutes, clock
        tracked = {"model": model, "optimizer": optimizer, "step": step, "random_state": random_state(model)}
        if iterator is not None:
            tracked["iterator"] = iterator
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=max_to_keep)
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.best_checkpoint = tf.train.Checkpoint(model=model, step=step, valid_loss=self.best_loss)
        self.best_manager = tf.train.CheckpointManager(self.best_checkpoint, str(self.directory / BEST_DIR),
                                                       max_to_keep=1)
        if self.best_manager.latest_checkpoint:  # only the value: the weights stay those of the latest checkpoint
            tf.train.Checkpoint(valid_loss=self.best_loss).read(self.best_manager.latest_checkpoint).expect_partial()
        self.last_save_time = clock()

    def should_save(self, step: int) -> bool:
        """True when `step` is a multiple of `checkpoint_every` (0 included), or when at least `checkpoint_minutes`
        minutes (60 * checkpoint_minutes seconds of `self.clock`, the boundary included) have passed since
        `self.last_save_time`, the save clock: `clock()` at construction, at every `save` (`maybe_save`'s included)
        and at every `restore` that loads a checkpoint; `save_best` does not reset it."""
        # BEGIN SOLUTION (part train): Save on every checkpoint_every-th step, or when checkpoint_minutes have passed.
        due_by_steps = step % self.checkpoint_every == 0
        due_by_time = self.clock() - self.last_save_time >= 60.0 * self.checkpoint_minutes
        return due_by_steps or due_by_time
        # END SOLUTION

    def save(self, step: int) -> str:
        """Write a checkpoint numbered `step` now and reset the save clock (`last_save_time`); returns its path
        prefix."""
        check_checkpointable(self.model)
        path = self.manager.save(checkpoint_number=int(step))
        self.last_save_time = self.clock()
        return path

    def maybe_save(self, step: int) -> str | None:
        """Save when `should_save(step)`; returns the checkpoint's path prefix, or None when it did not save."""
        return self.save(step) if self.should_save(int(step)) else None

    def save_best(self, valid_loss: float) -> bool:
        """Save to `directory/best`, numbered by `self.step`, when `valid_loss` is lower than `best_loss` (and record
        it); True if it saved. It does not reset the save clock (`last_save_time`): only `save` and `restore` do."""
        valid_loss = float(valid_loss)
        # BEGIN SOLUTION (part train): Only on a strict improvement: assign best_loss, save with best_manager at self.step.
        if not valid_loss < float(self.best_loss.numpy()):  # also False for NaN
            return False
        self.best_loss.assign(valid_loss)
        self.best_manager.save(checkpoint_number=int(self.step.numpy()))
        return True
        # END SOLUTION

    def restore(self) -> int:
        """Resume from the latest checkpoint in `directory`, if any; returns the restored step (0 when none).

        Keras creates variables lazily, so build the model (call it on a [1, 1] batch of token 0) and the optimizer
        (`optimizer.build(model.trainable_variables)` unless `optimizer.built`) before restoring: then every variable
        exists when the checkpoint is read, and `assert_existing_objects_matched()` checks that each one was found in
        it (a variable created after the restore is filled later if TensorFlow still holds its value, and no check sees
        it). When it loads a checkpoint, it resets the save clock (`last_save_time`), so the minutes until the next
        time-based save count from the restore.
        """
        latest = self.manager.latest_checkpoint
        if latest is None:
            return 0
        # BEGIN SOLUTION (part train): Build the model and optimizer variables, restore `latest`, reset the save clock.
        self.model(tf.zeros([1, 1], tf.int32))
        if not self.optimizer.built:
            self.optimizer.build(self.model.trainable_variables)
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        self.last_save_time = self.clock()
        return int(self.step.numpy())
        # END SOLUTION
