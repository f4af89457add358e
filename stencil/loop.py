"""The training loop (given): `fit` runs part 5's train step, evaluation and checkpoint policy for a number of steps
on batches of the token stream, and logs to TensorBoard.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import train
from .console import Progress


def training_batches(ids: np.ndarray, context_length: int, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless (inputs [B, T], labels [B, T]) int32 batches of the windows of `ids`, in a new order every epoch.

    Epoch e visits the windows in the order of a stateless shuffle seeded with (seed, e) and drops its last partial
    batch. Batch number k is a pure function of k, so the data iterator, which every checkpoint saves, holds just a
    counter (a shuffle buffer would copy the training set into each checkpoint).
    """
    from .preprocess import make_windows

    if len(ids) < context_length + 1:
        raise ValueError(f"the train split has only {len(ids)} tokens, --context-length {context_length} needs "
                         f"{context_length + 1}: use a longer text or a smaller --context-length")
    inputs, labels = make_windows(ids, context_length)
    if len(inputs) < batch_size:
        raise ValueError(f"the train split has only {len(inputs)} windows of {context_length} tokens, fewer than "
                         f"--batch-size {batch_size}: use a longer text or a smaller --context-length/--batch-size")
    inputs, labels = tf.constant(inputs), tf.constant(labels)
    batches_per_epoch = len(inputs) // batch_size

    def batch(k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        epoch, position = k // batches_per_epoch, k % batches_per_epoch
        order = tf.random.experimental.stateless_shuffle(tf.range(len(inputs)), seed=tf.stack([seed, epoch]))
        chosen = order[position * batch_size : (position + 1) * batch_size]
        return tf.gather(inputs, chosen), tf.gather(labels, chosen)

    return tf.data.Dataset.range(np.iinfo(np.int64).max).map(batch).prefetch(2)


def validation_batches(ids: np.ndarray, context_length: int, batch_size: int) -> tf.data.Dataset:
    """The windows of `ids` in order, the last batch possibly smaller (`make_dataset` without shuffling)."""
    from .preprocess import make_dataset, make_windows

    if len(ids) < context_length + 1:
        raise ValueError(f"the valid split has only {len(ids)} tokens, --context-length {context_length} needs "
                         f"{context_length + 1}: use a longer text or a smaller --context-length")
    inputs, labels = make_windows(ids, context_length)
    return make_dataset(inputs, labels, batch_size, shuffle=False, drop_remainder=False)


def _scalars(writer: tf.summary.SummaryWriter | None, step: int, values: dict[str, float]) -> None:
    if writer is not None:
        with writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)


def fit(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    policy: train.CheckpointPolicy,
    batches: Iterator,
    steps: int,
    valid: tf.data.Dataset | None = None,
    clip_norm: float | None = None,
    log_dir: str | os.PathLike | None = None,
    log_every: int = 10,
    eval_every: int = 200,
    eval_batches: int | None = None,
    sample: Callable[[int], str] | None = None,
    jit_compile: bool = False,
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Train from `policy.step` up to `steps` steps; returns the last step done ("step"), the last train loss and
    the last validation results.

    Every `log_every` steps the train loss, perplexity, learning rate and gradient norm go to TensorBoard
    (`log_dir/train`); every `eval_every` steps and at the end, `evaluate` on `valid` (its first `eval_batches`
    batches) goes to `log_dir/valid`, together with a text sample `sample(step)` when given, and `policy.save_best`
    keeps the best model. `policy.maybe_save` runs after every step, `policy.save` at the end. `progress` (a
    `console.Progress`, when given) shows every step's values on the console; each evaluation (with its sample and
    best checkpoint) runs inside `progress.untimed()`, so the progress line's ms/step leaves evaluation time out.

    `stop` (such as a `console.StopRequest`) is called after every step, once the step is complete (logged,
    evaluated, saved when due); when it returns True, fit saves a checkpoint of that step, unless it has just saved
    one, and returns.
    """
    train_fn = train.make_train_step(model, optimizer, clip_norm=clip_norm, jit_compile=jit_compile)
    writers = {}
    if log_dir is not None:
        writers = {name: tf.summary.create_file_writer(str(Path(log_dir) / name)) for name in ("train", "valid")}
    start = int(policy.step.numpy())
    results: dict[str, float] = {"step": start}
    try:
        for step in range(start + 1, steps + 1):
            learning_rate = float(optimizer.learning_rate)  # the rate this step uses
            inputs, labels = next(batches)
            metrics = train_fn(inputs, labels)
            policy.step.assign(step)
            results["step"] = step
            results["loss"] = loss = float(metrics["loss"])
            shown = [("loss", loss), ("grad_norm", float(metrics["grad_norm"])), ("lr", learning_rate)]
            if step % log_every == 0 or step == steps:
                _scalars(writers.get("train"), step, {"loss": loss, "perplexity": float(train.perplexity(loss)),
                                                       "learning_rate": learning_rate, "grad_norm": shown[1][1]})
            evaluated = valid is not None and (step % eval_every == 0 or step == steps)
            if evaluated:
                with progress.untimed() if progress is not None else contextlib.nullcontext():
                    result = train.evaluate(model, valid, max_batches=eval_batches)
                    results.update(valid_loss=result["loss"], valid_perplexity=result["perplexity"])
                    _scalars(writers.get("valid"), step, {"loss": result["loss"], "perplexity": result["perplexity"]})
                    policy.save_best(result["loss"])
                    if sample is not None and "valid" in writers:
                        with writers["valid"].as_default(step=step):
                            tf.summary.text("sample", sample(step))
                shown.append(("valid_loss", result["loss"]))
            if step == steps:
                saved = policy.save(step)
            else:
                saved = policy.maybe_save(step)
            if progress is not None:
                progress.update(step, shown, force=evaluated)
            if stop is not None and step < steps and stop():
                if saved is None:
                    policy.save(step)
                break
    finally:
        if progress is not None:
            progress.close()
        for writer in writers.values():
            writer.flush()
    return results
