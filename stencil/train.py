"""Part 5: training. The loss and perplexity, one optimisation step under `tf.GradientTape`, evaluation, a checkpoint
policy that survives interruptions, and the training loop and command line that put every part together.

    python -m stencil.train --model transformer --out runs/transformer
    tensorboard --logdir runs

The run directory DIR (--out) holds `config.json` (model kind, hyperparameters, tokenizer), the tokenizer as JSON, the
checkpoints (`ckpt-STEP.*`, the best one by validation loss in `best/`) and the TensorBoard logs (`logs/train`,
`logs/valid`). Ctrl-C stops training after the current step and saves a checkpoint of it; running the same command
again resumes from the latest checkpoint and trains exactly as an uninterrupted run would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf


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
    raise NotImplementedError(
        "TODO(part 5): Average the per-position cross-entropy of `logits` against `labels` (from logits)."
    )


def perplexity(loss: float | tf.Tensor) -> tf.Tensor:
    """exp(loss) as a float32 scalar: the effective number of equally likely next tokens."""
    loss = tf.cast(loss, tf.float32)
    raise NotImplementedError("TODO(part 5): Return the exponential of the mean loss.")


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
    `model.trainable_variables`, measures their global norm, clips them to `clip_norm` by global norm when it is
    given, and applies them with `optimizer`.

    Args:
        inputs, labels: int32 [B, T].
        clip_norm: maximum global norm of the applied gradients, or None for no clipping.

    Returns:
        {"loss": float32 scalar, the batch loss before the update,
         "grad_norm": float32 scalar, the global norm of the gradients before clipping}.
    """
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be a positive number or None, got {clip_norm!r}")
    raise NotImplementedError(
        "TODO(part 5): Loss under a GradientTape, gradients, global norm, optional clipping, apply_gradients."
    )


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
    """
    if max_batches is not None and (isinstance(max_batches, bool) or not int(max_batches) >= 1):
        raise ValueError(f"max_batches must be an int >= 1 or None, got {max_batches!r}")
    raise NotImplementedError(
        "TODO(part 5): Sum the per-token losses and count the tokens over the batches; return mean and exp."
    )


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
def check_checkpointable(model: keras.Model) -> None:
    """ValueError unless `tf.train.Checkpoint(model=model)` reaches every variable of the (built) model.

    Under Keras 3, layers kept only in a Python list are invisible to tf.train.Checkpoint: their weights would be
    silently left out of every checkpoint. Assigning each such layer to an attribute as well makes it visible.
    """
    reachable = {id(obj) for obj in tf.train.TrackableView(model).descendants()}
    missing = [v.path for v in model.variables if id(v) not in reachable]
    if missing:
        raise ValueError(f"checkpoints of {type(model).__name__} would miss {len(missing)} variables, e.g. "
                         f"{missing[0]!r}: tf.train.Checkpoint does not see layers kept in a Python list; assign each "
                         "layer to an attribute of the model too")


class CheckpointPolicy:
    """When to save, which checkpoints to keep, and how to resume.

    A `tf.train.CheckpointManager` over (model, optimizer, step, iterator) in `directory` keeps the last
    `max_to_keep` checkpoints; `maybe_save` writes one every `checkpoint_every` steps and whenever
    `checkpoint_minutes` have passed since the last save. A second manager keeps the single best checkpoint by
    validation loss (model, step and the loss itself) in `directory/best`, so the best value survives a restart.

    Attributes:
        step: int64 tf.Variable, the number of training steps done (saved with every checkpoint).
        best_loss: float64 tf.Variable, the lowest validation loss saved so far (inf before the first).
        manager, best_manager: the two tf.train.CheckpointManager.
        last_save_time: `clock()` at the last save (or at construction / restore).
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
        tracked = {"model": model, "optimizer": optimizer, "step": step}
        if iterator is not None:
            tracked["iterator"] = iterator
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=max_to_keep)
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.best_checkpoint = tf.train.Checkpoint(model=model, step=step, valid_loss=self.best_loss)
        self.best_manager = tf.train.CheckpointManager(self.best_checkpoint, str(self.directory / "best"),
                                                       max_to_keep=1)
        if self.best_manager.latest_checkpoint:  # only the value: the weights stay those of the latest checkpoint
            tf.train.Checkpoint(valid_loss=self.best_loss).read(self.best_manager.latest_checkpoint).expect_partial()
        self.last_save_time = clock()

    def should_save(self, step: int) -> bool:
        """True when `step` is a multiple of `checkpoint_every`, or `checkpoint_minutes` minutes (by `self.clock`)
        have passed since `self.last_save_time`."""
        raise NotImplementedError(
            "TODO(part 5): Save on every checkpoint_every-th step, or when checkpoint_minutes have passed."
        )

    def save(self, step: int) -> str:
        """Write a checkpoint numbered `step` now; returns its path prefix."""
        check_checkpointable(self.model)
        path = self.manager.save(checkpoint_number=int(step))
        self.last_save_time = self.clock()
        return path

    def maybe_save(self, step: int) -> str | None:
        """Save when `should_save(step)`; returns the checkpoint's path prefix, or None when it did not save."""
        return self.save(step) if self.should_save(int(step)) else None

    def save_best(self, valid_loss: float) -> bool:
        """Save to `directory/best` when `valid_loss` is lower than `best_loss` (and record it); True if it saved."""
        valid_loss = float(valid_loss)
        raise NotImplementedError(
            "TODO(part 5): Only on a strict improvement: assign best_loss, save with best_manager at self.step."
        )

    def restore(self) -> int:
        """Resume from the latest checkpoint in `directory`, if any; returns the restored step (0 when none).

        Keras creates variables lazily and a checkpoint restores silently nothing into variables that do not exist
        yet, so build the model (call it on a [1, 1] batch of token 0) and the optimizer
        (`optimizer.build(model.trainable_variables)` unless `optimizer.built`) before restoring.
        """
        latest = self.manager.latest_checkpoint
        if latest is None:
            return 0
        raise NotImplementedError(
            "TODO(part 5): Build the model and optimizer variables, restore `latest`, reset the save clock."
        )


# ---------------------------------------------------------------------------------------------------- data
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


# ---------------------------------------------------------------------------------------------------- training loop
def _scalars(writer: tf.summary.SummaryWriter | None, step: int, values: dict[str, float]) -> None:
    if writer is not None:
        with writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)


def estimate_eta(first: tuple[int, float], current: tuple[int, float], total: int) -> float | None:
    """Seconds until step `total`, from the pace between the end of the first step of this process and now.

    Args:
        first: (step, clock time) when the first step this process ran had finished. That step is left out of the
            pace: it includes tracing the training step (seconds, against milliseconds for the steps after it).
        current: (step, clock time) of the last finished step.
        total: the last step of the run.

    Returns:
        (total - step) * seconds per step since `first`, or None before a step after the first one has finished.
    """
    (first_step, first_time), (step, now) = first, current
    if step <= first_step:
        return None
    return max(total - step, 0) * (now - first_time) / (step - first_step)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """The console progress of `fit`.

    On a terminal, one line rewritten in place (carriage return, no escape codes), which keeps showing a value until
    a new one comes (the validation loss between evaluations); otherwise (a log file, a pipe) a plain line every
    `every` steps, on the steps given `force`, and at the last one, with the values of that step. Each line shows the
    step, the values, the time per step and the estimated time left (`estimate_eta`: both leave out the first step
    this process runs, which includes tracing).
    """

    def __init__(self, total: int, every: int = 10, stream=None, interactive: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, min_interval: float = 0.1):
        self.total, self.every, self.clock, self.min_interval = int(total), max(int(every), 1), clock, min_interval
        self.stream = sys.stdout if stream is None else stream
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self.first: tuple[int, float] | None = None
        self._width, self._last_write, self._open = 0, -math.inf, False
        self._shown: dict[str, float] = {}

    def line(self, step: int, values: Sequence[tuple[str, float]], now: float) -> str:
        """The progress line of `step` with `values` at clock time `now`."""
        digits = len(str(self.total))
        parts = [f"step {step:{digits}d}/{self.total}"]
        parts += [f"{name} {value:.2e}" if name == "lr" else f"{name} {value:.4f}" for name, value in values]
        eta = estimate_eta(self.first, (step, now), self.total) if self.first is not None else None
        if eta is not None:
            per_step = (now - self.first[1]) / (step - self.first[0])
            parts.append(f"{per_step * 1000:.0f} ms/step")
            if step < self.total:
                parts.append(f"ETA {_duration(eta)}")
        return "  ".join(parts)

    def update(self, step: int, values: Sequence[tuple[str, float]] = (), force: bool = False) -> None:
        """Show the progress after `step` has finished."""
        now = self.clock()
        if self.first is None:
            self.first = (step, now)
        last = step >= self.total
        if self.interactive:
            if not (last or force or now - self._last_write >= self.min_interval):
                self._shown.update(values)
                return
            self._shown.update(values)
            text = self.line(step, list(self._shown.items()), now)
            self.stream.write("\r" + text + " " * max(self._width - len(text), 0) + ("\n" if last else ""))
            self._width, self._open = (0, False) if last else (len(text), True)
        else:
            if not (last or force or step % self.every == 0):
                return
            self.stream.write(self.line(step, values, now) + "\n")
        self._last_write = now
        self.stream.flush()

    def close(self) -> None:
        """End the line being rewritten in place, if any (before printing something else)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open, self._width = False, 0


class StopRequest:
    """Ctrl-C (SIGINT) during training, deferred to the end of the current step.

    Inside `with StopRequest() as stop:` (in the main thread) the first SIGINT only sets `stop.requested`; `fit`
    checks it after every step, saves a checkpoint of that step and returns, so the step counter, the optimizer, the
    weights, the data position and the best loss in the checkpoint all describe the same point. The first SIGINT also
    puts the previous handler back, so a second one interrupts at once (KeyboardInterrupt), without saving.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:  # a process started with SIGINT ignored keeps ignoring it
                signal.signal(signal.SIGINT, self._handle)
                self._previous = signal.default_int_handler if previous is None else previous
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)
        self._previous = None
        try:  # os.write: print could re-enter a write to stderr that the signal interrupted
            os.write(sys.stderr.fileno(), b"\ninterrupted: stopping after this step and saving a checkpoint "
                                          b"(Ctrl-C again to quit without saving it)\n")
        except (AttributeError, OSError, ValueError):
            pass


def fit(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    policy: CheckpointPolicy,
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
    verbose: int = 1,
    stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Train from `policy.step` up to `steps` steps; returns the last step done ("step"), the last train loss and
    the last validation results.

    Every `log_every` steps the train loss, perplexity, learning rate and gradient norm go to TensorBoard
    (`log_dir/train`); every `eval_every` steps and at the end, `evaluate` on `valid` (its first `eval_batches`
    batches) goes to `log_dir/valid`, together with a text sample `sample(step)` when given, and `policy.save_best`
    keeps the best model. `policy.maybe_save` runs after every step, `policy.save` at the end. With `verbose`, the
    console shows a `Progress` line (every `log_every` steps when it is not a terminal).

    `stop` (such as a `StopRequest`) is called after every step, once the step is complete (logged, evaluated, saved
    when due); when it returns True, fit saves a checkpoint of that step, unless it has just saved one, and returns.
    """
    train_fn = make_train_step(model, optimizer, clip_norm=clip_norm, jit_compile=jit_compile)
    writers = {}
    if log_dir is not None:
        writers = {name: tf.summary.create_file_writer(str(Path(log_dir) / name)) for name in ("train", "valid")}
    start = int(policy.step.numpy())
    progress = Progress(steps, every=log_every) if verbose else None
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
                _scalars(writers.get("train"), step, {"loss": loss, "perplexity": float(perplexity(loss)),
                                                       "learning_rate": learning_rate, "grad_norm": shown[1][1]})
            evaluated = valid is not None and (step % eval_every == 0 or step == steps)
            if evaluated:
                result = evaluate(model, valid, max_batches=eval_batches)
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


# ---------------------------------------------------------------------------------------------------- command line
class UsageError(Exception):
    """Bad command-line input; `main` prints the message as one line and exits with status 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


RESUME_FIELDS = ("model", "tokenizer", "bpe_vocab_size", "text", "context_length", "batch_size", "seed", "embed_dim",
                 "hidden_dim", "d_model", "num_heads", "num_layers", "dropout", "positional")
"""config.json fields that a resumed run must share with the command line (the model, the data and their order)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m stencil.train`."""
    from .models import MODEL_KINDS

    parser = OneLineErrorParser(
        prog="python -m stencil.train",
        description="Train a language model; run the same command again to resume from the latest checkpoint in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, choices=sorted(MODEL_KINDS), help="model kind")
    parser.add_argument("--tokenizer", default="char", choices=["char", "bpe"], help="tokenizer kind")
    parser.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size (with --tokenizer bpe)")
    parser.add_argument("--text", metavar="FILE", help="UTF-8 text file to train on instead of the default corpus")
    parser.add_argument("--splits-dir", metavar="DIR",
                        help="where the train/valid/test splits live (default: data/prepare.py's default)")
    parser.add_argument("--out", metavar="DIR", help="run directory (default runs/MODEL)")
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=int, default=1000, help="total number of training steps")
    group.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    group.add_argument("--context-length", type=int, default=128, help="tokens per window")
    group.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, warmup + cosine decay)")
    group.add_argument("--warmup-steps", type=int, default=100, help="linear warmup steps")
    group.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    group.add_argument("--clip-norm", type=float, default=1.0, help="clip gradients to this global norm (0: off)")
    group.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the data order")
    group.add_argument("--jit", action="store_true", help="compile the train step with XLA")
    group = parser.add_argument_group("model (rnn, lstm)")
    group.add_argument("--embed-dim", type=int, default=64, help="embedding size D")
    group.add_argument("--hidden-dim", type=int, default=512, help="hidden size H")
    group = parser.add_argument_group("model (transformer)")
    group.add_argument("--d-model", type=int, default=128, help="model width")
    group.add_argument("--num-heads", type=int, default=4, help="attention heads")
    group.add_argument("--num-layers", type=int, default=4, help="transformer blocks")
    group.add_argument("--dropout", type=float, default=0.0, help="dropout rate")
    group.add_argument("--positional", default="learned", choices=["sinusoidal", "learned"],
                       help="positional encoding (sinusoidal trains slower here: its unit-amplitude vectors dwarf the "
                            "small tied token embeddings)")
    group = parser.add_argument_group("logging and checkpoints")
    group.add_argument("--log-every", type=int, default=10, help="steps between TensorBoard train scalars")
    group.add_argument("--eval-every", type=int, default=250, help="steps between evaluations")
    group.add_argument("--eval-batches", type=int, default=20, help="validation batches per evaluation (0: all)")
    group.add_argument("--sample-tokens", type=int, default=200, help="length of the text sample in TensorBoard")
    group.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    group.add_argument("--checkpoint-minutes", type=float, default=10.0, help="minutes between checkpoints")
    group.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    positive = ("steps", "batch_size", "context_length", "log_every", "eval_every", "checkpoint_every", "keep",
                "embed_dim", "hidden_dim", "d_model", "num_heads", "num_layers")
    for name in positive:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("warmup_steps", "eval_batches", "sample_tokens", "weight_decay", "clip_norm"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not (args.lr > 0 and args.checkpoint_minutes > 0 and 0 <= args.dropout < 1):
        raise UsageError("--lr and --checkpoint-minutes must be positive and --dropout in [0, 1)")
    if args.tokenizer == "bpe" and args.vocab_size < 256:
        raise UsageError(f"--vocab-size must be >= 256 (the byte vocabulary), got {args.vocab_size}")
    if args.model == "transformer" and args.d_model % args.num_heads:
        raise UsageError(f"--d-model {args.d_model} must be a multiple of --num-heads {args.num_heads}")


def run_config(args: argparse.Namespace) -> dict:
    """config.json of a run (without vocab_size, which the tokenizer gives): model kind and the hyperparameters of
    that kind, tokenizer, data, and the training settings under "training"."""
    from .models import MODEL_KINDS

    config = {"model": args.model, "tokenizer": args.tokenizer, "tokenizer_file": "tokenizer.json",
              "text": None if args.text is None else str(Path(args.text).resolve()),
              "context_length": args.context_length, "batch_size": args.batch_size, "seed": args.seed}
    if args.tokenizer == "bpe":
        config["bpe_vocab_size"] = args.vocab_size
    config.update({name: getattr(args, name) for name in MODEL_KINDS[args.model].arguments if name in vars(args)})
    config["training"] = {name: getattr(args, name) for name in (
        "steps", "lr", "warmup_steps", "weight_decay", "clip_norm", "jit", "log_every", "eval_every", "eval_batches",
        "checkpoint_every", "checkpoint_minutes", "keep")}
    return config


def has_checkpoint(out: Path) -> bool:
    """True when `out` holds a checkpoint, the latest or the best one: a run there has trained."""
    return any(tf.train.latest_checkpoint(str(directory)) for directory in (out, out / "best") if directory.is_dir())


def check_resume(out: Path, config: dict) -> dict | None:
    """The config.json of the run in `out` to resume, or None for a new run (also when `out` holds no checkpoint:
    what an earlier run that stopped before its first checkpoint left there is replaced); UsageError when the run in
    `out` is another one."""
    if not has_checkpoint(out):
        return None
    path = out / "config.json"
    if not path.is_file():
        raise UsageError(f"{out} holds checkpoints but no config.json: use another --out to start a new run")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise UsageError(f"{path} is not valid JSON: use another --out or remove the directory") from None
    if saved.get("model") != config["model"]:
        raise UsageError(f"{out} holds a run of model {saved.get('model')!r}, not {config['model']!r}: "
                         "use another --out to start a new run")
    for field in RESUME_FIELDS:
        if saved.get(field) != config.get(field):
            raise UsageError(f"{out} was trained with {field}={saved.get(field)!r}, not {config.get(field)!r}: "
                             "pass the same options to resume, or use another --out")
    return saved


def check_same_splits(out: Path, saved: dict, config: dict) -> None:
    """UsageError when the run in `out` (config.json `saved`) was trained on other splits than `config["splits"]`."""
    before, now = saved.get("splits"), config["splits"]
    if isinstance(before, dict) and before.get("sha256") != now["sha256"]:
        where = "" if before.get("dir") == now["dir"] else f" (it used {before.get('dir')})"
        raise UsageError(f"{out} was trained on other train/valid/test splits than those in {now['dir']}{where}: "
                         "pass the --text and --splits-dir it was trained with to resume, or use another --out")


def load_texts(text_file: str | None, splits_dir: str | None) -> tuple[dict[str, str], Path]:
    """The train/valid/test texts of the default corpus or of `text_file` (split with data/prepare.py), and the
    folder of the splits."""
    from data.prepare import CorpusError, ensure_splits

    try:
        paths = ensure_splits(splits_dir, text_file, option="--splits-dir")
        texts = {split: path.read_bytes().decode("utf-8") for split, path in paths.items()}
    except (CorpusError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(str(exc)) from None
    return texts, paths["train"].parent


def splits_record(directory: Path, texts: dict[str, str]) -> dict:
    """config.json's "splits": the folder and a SHA-256 of the three texts, which a resumed run must match."""
    digest = hashlib.sha256()
    for split in sorted(texts):
        data = texts[split].encode("utf-8")
        digest.update(f"{split} {len(data)}\n".encode() + data)
    return {"dir": str(directory.resolve()), "sha256": digest.hexdigest()}


def make_tokenizer(out: Path | None, config: dict, texts: dict[str, str]):
    """The run's tokenizer: loaded from run directory `out` when given and it holds one (resuming), else trained.

    The character vocabulary covers all three splits, so that validation and test text encode; BPE learns its merges
    on the train split only (its byte base vocabulary covers any text). A trained tokenizer is not saved here: `main`
    writes it to the run directory once the run is set up.
    """
    from .preprocess import BPETokenizer, CharTokenizer

    kind = CharTokenizer if config["tokenizer"] == "char" else BPETokenizer
    if out is not None and (out / config["tokenizer_file"]).is_file():
        return kind.load(out / config["tokenizer_file"])
    if kind is CharTokenizer:
        return CharTokenizer.train("".join(texts.values()))
    started = time.monotonic()
    tokenizer = BPETokenizer.train(texts["train"], config["bpe_vocab_size"])
    print(f"trained BPE ({tokenizer.vocab_size} ids) in {time.monotonic() - started:.1f} s")
    return tokenizer


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    """`write(partial)` to a file next to `path`, then rename it to `path`: `path` is never left half written."""
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def sample_prompt(text: str) -> str:
    """The prompt of the TensorBoard text samples: the first line of `text` with its newline, at most 48 characters."""
    first_line = text.split("\n", 1)[0]
    return first_line[:48] if len(first_line) >= 48 or "\n" not in text else first_line + "\n"


def text_sampler(model: keras.Model, tokenizer, prompt: str, max_new_tokens: int, temperature: float = 0.8):
    """A function step -> prompt and continuation sampled with `samplers.generate` (seed = step)."""
    from .samplers import generate

    prompt_ids = tf.constant(tokenizer.encode(prompt), tf.int32)

    def sample(step: int) -> str:
        try:
            ids = generate(model, prompt_ids, max_new_tokens, temperature=temperature, seed=int(step))
        except NotImplementedError as exc:  # training works before part 3 is done
            return f"(no sample: {exc})"
        return tokenizer.decode(np.asarray(ids))

    return sample


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m stencil.train`: returns the exit status (2 for bad input, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        _check_arguments(args)
        out = Path(args.out or Path("runs") / args.model)
        config = run_config(args)
        saved = check_resume(out, config)
        texts, splits_dir = load_texts(args.text, args.splits_dir)
        config["splits"] = splits_record(splits_dir, texts)
        if saved is not None:
            check_same_splits(out, saved, config)
        tokenizer = make_tokenizer(out if saved is not None else None, config, texts)
        config["vocab_size"] = tokenizer.vocab_size
        train_ids = np.asarray(tokenizer.encode(texts["train"]), np.int32)
        valid_ids = np.asarray(tokenizer.encode(texts["valid"]), np.int32)
        batches = training_batches(train_ids, args.context_length, args.batch_size, args.seed)
        valid = validation_batches(valid_ids, args.context_length, args.batch_size)
    except (UsageError, ValueError) as exc:  # ValueError: the text cannot make windows
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted before training started: nothing was saved", file=sys.stderr)
        return 130
    # Only now, with the data ready, does the run directory get its files: a run that failed before its first
    # checkpoint leaves nothing that stops a retry with other settings (check_resume treats its directory as new).
    if saved is None and (out / "config.json").is_file():
        print(f"note: {out} holds no checkpoint (an earlier run there stopped before its first one): starting a new "
              "run there")
    out.mkdir(parents=True, exist_ok=True)
    tokenizer_path = out / config["tokenizer_file"]
    if saved is None or not tokenizer_path.is_file():
        _replace(tokenizer_path, tokenizer.save)
    _replace(out / "config.json",
             lambda path: path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8"))
    try:
        return train_run(args, out, config, tokenizer, batches, valid, texts["valid"])
    except KeyboardInterrupt:  # before the training loop started, or a second Ctrl-C in it
        latest = tf.train.latest_checkpoint(str(out))
        print("\ninterrupted: " + (f"the latest checkpoint is {latest}; run the same command to resume from it"
                                   if latest else "nothing was saved"), file=sys.stderr)
        return 130


def train_run(args: argparse.Namespace, out: Path, config: dict, tokenizer, batches: tf.data.Dataset,
              valid: tf.data.Dataset, valid_text: str) -> int:
    """Build (or resume) the model, optimizer and checkpoint policy in `out` and run `fit`; returns the exit status."""
    from .models import build_model

    keras.utils.set_random_seed(args.seed)
    model = build_model(config)
    optimizer = make_optimizer(args.lr, args.warmup_steps, args.steps, args.weight_decay)
    iterator = iter(batches)
    policy = CheckpointPolicy(out, model, optimizer, tf.Variable(0, dtype=tf.int64, trainable=False), iterator,
                              max_to_keep=args.keep, checkpoint_every=args.checkpoint_every,
                              checkpoint_minutes=args.checkpoint_minutes)
    start = policy.restore()
    print(f"{args.model}: {config['vocab_size']} {args.tokenizer} tokens; "
          + (f"resumed at step {start} from {policy.manager.latest_checkpoint}" if start else f"new run in {out}"))
    if start >= args.steps:
        print(f"already trained for {start} steps (--steps {args.steps}): nothing to do")
        return 0
    sample = None
    if args.sample_tokens:
        sample = text_sampler(model, tokenizer, sample_prompt(valid_text), args.sample_tokens)
    try:
        with StopRequest() as stop:
            results = fit(model, optimizer, policy, iterator, args.steps, valid, clip_norm=args.clip_norm or None,
                          log_dir=out / "logs", log_every=args.log_every, eval_every=args.eval_every,
                          eval_batches=args.eval_batches or None, sample=sample, jit_compile=args.jit, stop=stop)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
        if not args.jit:
            raise
        first_line = error.message.strip().splitlines()[0] if error.message.strip() else type(error).__name__
        print(f"error: XLA could not compile the training step (--jit): {first_line}; run without --jit",
              file=sys.stderr)
        return 2
    if results["step"] < args.steps:
        print(f"interrupted at step {results['step']}; saved {policy.manager.latest_checkpoint}: run the same "
              "command to resume", file=sys.stderr)
        return 130
    print(f"step {args.steps}: train loss {results['loss']:.4f}, valid loss {results['valid_loss']:.4f} "
          f"(perplexity {results['valid_perplexity']:.2f}); best checkpoint in {out / 'best'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
