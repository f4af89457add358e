"""Tests of part 5 (assignment/train.py: loss, train step, evaluation, schedule, checkpoint policy) and of the given
code that runs it: the training loop and its batches (loop.py), the progress line (console.py).

The oracles are independent of train.py: numpy log-softmax for the loss (the judge's `oracles.sequence_loss`), Keras's
own loss and a separate GradientTape for the train step, hand-computed SGD updates for clipping, hand-computed schedule
values, and for checkpoints the weights and counters of the objects that were saved. Every model is tiny and built
here, so only train.py is tested.
"""

from __future__ import annotations

import io
import math
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from assignment import console, loop, runs, train
from autograder.judge.hidden import oracles

V = 7


class TinyLM(keras.Model):
    """Embedding -> tanh -> Dense(V): logits [B, T, V]. Subclassed, so its variables exist only after a call."""

    def __init__(self, vocab_size: int = V, hidden: int = 6, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(vocab_size, hidden)
        self.output_layer = keras.layers.Dense(vocab_size)

    def call(self, tokens, training=False):
        return self.output_layer(tf.tanh(self.embedding(tokens)))


def one_hot_model(seed: int = 0) -> keras.Model:
    """one_hot -> Dense(8, tanh) -> Dense(V): every gradient is dense."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Dense(8, activation="tanh")(keras.ops.one_hot(tokens, V))
    return keras.Model(tokens, keras.layers.Dense(V)(hidden))


def tiny_lm(seed: int = 0) -> TinyLM:
    keras.utils.set_random_seed(seed)
    return TinyLM()


def batch(seed: int = 0, b: int = 4, t: int = 5) -> tuple[np.ndarray, np.ndarray]:
    ids = np.random.default_rng(seed).integers(0, V, (b, t + 1)).astype(np.int32)
    return ids[:, :-1], ids[:, 1:]


def weights(model: keras.Model) -> list[np.ndarray]:
    return [np.array(v) for v in model.weights]


# ---------------------------------------------------------------------------------------------------- loss
@pytest.mark.parametrize("shape", [(1, 1, 2), (2, 3, 5), (3, 8, 50)])
def test_sequence_loss_is_the_mean_negative_log_softmax_of_the_labels(shape):
    rng = np.random.default_rng(sum(shape))
    logits = rng.normal(0.0, 4.0, shape).astype(np.float32)
    labels = rng.integers(0, shape[-1], shape[:-1]).astype(np.int32)
    loss = train.sequence_loss(labels, logits)
    assert loss.shape == () and loss.dtype == tf.float32
    np.testing.assert_allclose(float(loss), oracles.sequence_loss(labels, logits), rtol=1e-6)


def test_sequence_loss_of_a_certain_prediction_is_zero_and_of_uniform_logits_is_log_v():
    labels = np.array([[0, 2, 1]], np.int32)
    certain = np.where(np.arange(3)[None, None, :] == labels[..., None], 100.0, -100.0).astype(np.float32)
    assert float(train.sequence_loss(labels, certain)) == pytest.approx(0.0, abs=1e-6)
    assert float(train.sequence_loss(labels, np.zeros((1, 3, 3), np.float32))) == pytest.approx(math.log(3), rel=1e-6)


def test_perplexity_is_exp_of_the_loss():
    # Uniform over V tokens: loss log V, perplexity V (as many choices as a fair V-sided die).
    assert float(train.perplexity(math.log(5.0))) == pytest.approx(5.0, rel=1e-6)
    assert float(train.perplexity(tf.constant(0.0))) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------- train step
def tape_loss_and_gradient_norm(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Keras's own loss and the global norm of the dense gradients, computed here."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x))
    grads = tape.gradient(loss, model.trainable_variables)
    return float(loss), float(tf.linalg.global_norm([tf.convert_to_tensor(g) for g in grads]))


@pytest.mark.parametrize("make_model", [one_hot_model, tiny_lm], ids=["dense-gradients", "embedding"])
def test_train_step_reports_the_loss_and_gradient_norm_before_the_update_and_lowers_the_loss(make_model):
    model, (x, y) = make_model(), batch()
    model(x)
    expected_loss, expected_norm = tape_loss_and_gradient_norm(model, x, y)
    before = weights(model)
    result = train.train_step(model, keras.optimizers.SGD(0.5), x, y)
    assert float(result["loss"]) == pytest.approx(expected_loss, rel=1e-6)
    # With an Embedding, rows repeated in the batch must be summed before taking the norm (dense gradient).
    assert float(result["grad_norm"]) == pytest.approx(expected_norm, rel=1e-5)
    after_loss, _ = tape_loss_and_gradient_norm(model, x, y)
    assert after_loss < expected_loss - 1e-4
    for name, old, new in zip([v.path for v in model.weights], before, weights(model), strict=True):
        assert not np.array_equal(old, new), f"{name} did not change"


def test_train_step_applies_the_sgd_update_minus_lr_times_gradient():
    model, (x, y) = one_hot_model(), batch(1)
    model(x)
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(x))
    grads = [np.array(g) for g in tape.gradient(loss, model.trainable_variables)]
    before = weights(model)
    train.train_step(model, keras.optimizers.SGD(0.1), x, y)
    for old, new, g in zip(before, weights(model), grads, strict=True):
        np.testing.assert_allclose(new, old - 0.1 * g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("clip_factor", [0.25, 4.0])
def test_clipping_scales_the_update_to_clip_norm_only_when_the_norm_is_larger(clip_factor):
    model, (x, y) = one_hot_model(2), batch(2)
    model(x)
    _, norm = tape_loss_and_gradient_norm(model, x, y)
    clip_norm, lr = clip_factor * norm, 0.1
    before = weights(model)
    result = train.train_step(model, keras.optimizers.SGD(lr), x, y, clip_norm=clip_norm)
    assert float(result["grad_norm"]) == pytest.approx(norm, rel=1e-5)  # reported before clipping
    update = math.sqrt(sum(np.sum((new - old) ** 2) for old, new in zip(before, weights(model), strict=True)))
    # SGD moves the weights by lr * (clipped gradient): its global norm is lr * min(norm, clip_norm).
    assert update == pytest.approx(lr * min(norm, clip_norm), rel=1e-4)


def test_train_step_refuses_a_non_positive_clip_norm():
    model, (x, y) = one_hot_model(), batch()
    with pytest.raises(ValueError, match="clip_norm"):
        train.train_step(model, keras.optimizers.SGD(0.1), x, y, clip_norm=0.0)


def test_compiled_train_step_matches_the_eager_one():
    (x, y), eager, compiled = batch(3), one_hot_model(5), one_hot_model(5)
    step = train.make_train_step(compiled, keras.optimizers.Adam(0.01), clip_norm=1.0)
    optimizer = keras.optimizers.Adam(0.01)
    for _ in range(3):
        a = train.train_step(eager, optimizer, x, y, clip_norm=1.0)
        b = step(tf.constant(x), tf.constant(y))
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)
    for u, v in zip(weights(eager), weights(compiled), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- evaluate
def test_evaluate_weights_every_token_once_including_a_partial_last_batch():
    model = one_hot_model(3)
    ids = np.random.default_rng(3).integers(0, V, (10, 5)).astype(np.int32)
    x, y = ids[:, :-1], ids[:, 1:]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # batches of 4, 4 and 2 windows
    logits = np.array(model(x))
    result = train.evaluate(model, dataset)
    expected = oracles.sequence_loss(y, logits)
    assert result["loss"] == pytest.approx(expected, rel=1e-6)
    assert result["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    batch_means = np.mean([oracles.sequence_loss(y[i : i + 4], logits[i : i + 4]) for i in (0, 4, 8)])
    assert abs(batch_means - expected) > 1e-4  # the case really tells the two weightings apart
    first = train.evaluate(model, dataset, max_batches=1)
    assert first["loss"] == pytest.approx(oracles.sequence_loss(y[:4], logits[:4]), rel=1e-6)


def test_evaluate_refuses_bad_max_batches():
    dataset = tf.data.Dataset.from_tensor_slices(batch()).batch(2)
    with pytest.raises(ValueError, match="max_batches"):
        train.evaluate(one_hot_model(), dataset, max_batches=0)


# ---------------------------------------------------------------------------------------------------- schedule
def test_warmup_then_cosine_decay_to_the_final_fraction():
    schedule = train.WarmupCosineSchedule(1.0, warmup_steps=4, total_steps=14, final_fraction=0.1)
    lr = [float(schedule(i)) for i in range(16)]  # optimizer iterations i -> update number i + 1
    np.testing.assert_allclose(lr[:4], [0.25, 0.5, 0.75, 1.0], rtol=1e-6)  # linear warmup
    # Half way through the 10 decay steps (update 9) the cosine factor is 0.5: 0.1 + 0.9 * 0.5.
    assert lr[8] == pytest.approx(0.55, rel=1e-6)
    assert lr[13] == pytest.approx(0.1, rel=1e-6) and lr[15] == pytest.approx(0.1, rel=1e-6)
    assert all(a >= b for a, b in zip(lr[3:], lr[4:], strict=False))


# ---------------------------------------------------------------------------------------------------- checkpoints
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def policy_for(directory, model=None, optimizer=None, iterator=None, **kwargs) -> train.CheckpointPolicy:
    model = model or tiny_lm()
    optimizer = optimizer or keras.optimizers.Adam(0.01)
    return train.CheckpointPolicy(directory, model, optimizer, tf.Variable(0, dtype=tf.int64), iterator, **kwargs)


def checkpoint_numbers(directory) -> list[int]:
    return sorted(int(p.name[len("ckpt-") : -len(".index")]) for p in directory.glob("ckpt-*.index"))


def test_saves_every_checkpoint_every_steps_and_keeps_the_last_max_to_keep(tmp_path):
    clock = FakeClock()
    policy = policy_for(tmp_path, max_to_keep=2, checkpoint_every=3, checkpoint_minutes=10.0, clock=clock)
    saved = [step for step in range(1, 13) if policy.maybe_save(step) is not None]
    assert saved == [3, 6, 9, 12]
    assert checkpoint_numbers(tmp_path) == [9, 12]
    assert policy.manager.latest_checkpoint.endswith("ckpt-12")


def test_saves_when_checkpoint_minutes_have_passed_since_the_last_save(tmp_path):
    clock = FakeClock()
    policy = policy_for(tmp_path, checkpoint_every=1000, checkpoint_minutes=2.0, clock=clock)
    saved = []
    for step in range(1, 11):
        clock.now += 50.0  # seconds per step: 120 s have passed at steps 3 (150 s), 6 and 9
        if policy.maybe_save(step):
            saved.append(step)
    assert saved == [3, 6, 9]
    assert checkpoint_numbers(tmp_path) == [3, 6, 9]


def test_best_checkpoint_only_on_a_strict_improvement_and_its_value_survives_a_restart(tmp_path):
    policy = policy_for(tmp_path)
    decisions = []
    for step, loss in enumerate([2.0, 2.5, 2.0, 1.5, float("nan"), 1.7], start=1):
        policy.step.assign(step)
        decisions.append(policy.save_best(loss))
    assert decisions == [True, False, False, True, False, False]
    assert checkpoint_numbers(tmp_path / "best") == [4]  # max_to_keep=1: only the best
    assert checkpoint_numbers(tmp_path) == []  # the regular checkpoints are separate
    again = policy_for(tmp_path)
    assert float(again.best_loss.numpy()) == 1.5
    assert not again.save_best(1.6) and again.save_best(1.4)


def test_restore_without_a_checkpoint_returns_step_zero(tmp_path):
    assert policy_for(tmp_path).restore() == 0


def test_restore_into_a_fresh_unbuilt_model_gives_the_same_weights_optimizer_state_and_step(tmp_path):
    model, optimizer, (x, y) = tiny_lm(1), keras.optimizers.Adam(0.01), batch(4)
    for _ in range(3):
        train.train_step(model, optimizer, x, y)
    policy = policy_for(tmp_path, model, optimizer)
    policy.step.assign(3)
    policy.save(3)

    fresh_model, fresh_optimizer = tiny_lm(2), keras.optimizers.Adam(0.01)  # other initial weights, not built
    assert not fresh_model.built
    restored = policy_for(tmp_path, fresh_model, fresh_optimizer)
    assert restored.restore() == 3 and int(restored.step.numpy()) == 3
    assert int(fresh_optimizer.iterations.numpy()) == 3
    for u, v in zip(weights(model), weights(fresh_model), strict=True):
        np.testing.assert_array_equal(u, v)
    assert len(optimizer.variables) == len(fresh_optimizer.variables) == 2 + 2 * len(model.trainable_variables)
    for saved, loaded in zip(optimizer.variables, fresh_optimizer.variables, strict=True):  # iterations, lr, m, v
        np.testing.assert_array_equal(np.array(saved), np.array(loaded), err_msg=saved.path)


class ListOfLayersLM(keras.Model):
    """Embedding -> Dense layers kept only in a Python list -> logits: tf.train.Checkpoint cannot see the list."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(V, 4)
        self.stack = [keras.layers.Dense(4), keras.layers.Dense(V)]

    def call(self, tokens, training=False):
        h = self.embedding(tokens)
        for layer in self.stack:
            h = layer(h)
        return h


def test_a_model_whose_variables_a_checkpoint_would_miss_is_refused_when_saving(tmp_path):
    model = ListOfLayersLM()
    model(np.zeros((1, 1), np.int32))
    with pytest.raises(ValueError, match="would miss 4 variables"):
        policy_for(tmp_path, model).save(1)
    model.dense_0, model.dense_1 = model.stack  # attributes make them visible to tf.train.Checkpoint
    runs.check_checkpointable(model)


class DropoutLM(TinyLM):
    """TinyLM with dropout on the hidden layer: its random generator's state is training state too."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(0.5)

    def call(self, tokens, training=False):
        return self.output_layer(self.dropout(tf.tanh(self.embedding(tokens)), training=training))


def run_training(directory, steps: int, ids: np.ndarray, model_class: type[keras.Model] = TinyLM) -> keras.Model:
    """Train a tiny model with the CLI's data pipeline and optimizer from `directory`'s latest checkpoint to `steps`."""
    keras.utils.set_random_seed(7)
    model = model_class()
    optimizer = train.make_optimizer(0.02, warmup_steps=2, total_steps=8)
    iterator = iter(loop.training_batches(ids, context_length=4, batch_size=3, seed=5))
    policy = policy_for(directory, model, optimizer, iterator, checkpoint_every=100)
    policy.restore()
    loop.fit(model, optimizer, policy, iterator, steps, clip_norm=1.0)
    return model


@pytest.mark.parametrize("model_class", [TinyLM, DropoutLM])
def test_interrupted_and_resumed_training_equals_uninterrupted_training(tmp_path, model_class):
    # 40 tokens -> 9 windows of 4 -> 3 batches per epoch: 8 steps cross epoch boundaries (new shuffles).
    ids = np.random.default_rng(0).integers(0, V, 40).astype(np.int32)
    straight = run_training(tmp_path / "straight", 8, ids, model_class)
    run_training(tmp_path / "resumed", 5, ids, model_class)  # ends with a checkpoint at step 5
    resumed = run_training(tmp_path / "resumed", 8, ids, model_class)
    for u, v in zip(weights(straight), weights(resumed), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
    assert checkpoint_numbers(tmp_path / "resumed") == [5, 8]
    if model_class is DropoutLM:  # the same masks after the restart: the generator's state was restored
        (state,), (expected,) = runs.random_state(resumed), runs.random_state(straight)
        np.testing.assert_array_equal(np.array(state), np.array(expected))


def test_training_batches_are_windows_in_a_new_order_every_epoch():
    ids = np.arange(37, dtype=np.int32)  # 9 windows of 4 (starts 0, 4, ..., 32); 3 batches of 3 per epoch
    batches = list(loop.training_batches(ids, context_length=4, batch_size=3, seed=1).take(6))
    starts = [[int(row[0]) for row in np.array(x)] for x, _ in batches]
    for x, y in batches:
        np.testing.assert_array_equal(np.array(x)[:, 0:1] + np.arange(4), np.array(x))
        np.testing.assert_array_equal(np.array(y), np.array(x) + 1)
    first, second = sum(starts[:3], []), sum(starts[3:], [])
    assert sorted(first) == sorted(second) == list(range(0, 36, 4))  # each epoch visits every window once
    assert first != second


# ---------------------------------------------------------------------------------------------------- TensorBoard
def read_events(directory) -> dict[str, list[tuple[int, object]]]:
    """Tag -> [(step, value)] of the summaries in the event files under `directory`."""
    found: dict[str, list[tuple[int, object]]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return found


def test_fit_logs_train_and_valid_scalars_and_a_text_sample_to_tensorboard(tmp_path):
    model, optimizer = tiny_lm(3), keras.optimizers.SGD(0.1)
    ids = np.random.default_rng(1).integers(0, V, 60).astype(np.int32)
    iterator = iter(loop.training_batches(ids, context_length=4, batch_size=2, seed=0))
    valid = tf.data.Dataset.from_tensor_slices(batch(9, b=5)).batch(2)
    policy = policy_for(tmp_path / "run", model, optimizer, iterator)
    results = loop.fit(model, optimizer, policy, iterator, 4, valid, log_dir=tmp_path / "logs", log_every=2,
                       eval_every=3, sample=lambda step: f"sample at {step}")
    logged = read_events(tmp_path / "logs" / "train")
    assert [step for step, _ in logged["loss"]] == [2, 4]
    assert float(logged["loss"][-1][1]) == pytest.approx(results["loss"], rel=1e-6)
    assert float(logged["perplexity"][-1][1]) == pytest.approx(math.exp(results["loss"]), rel=1e-5)
    assert float(logged["learning_rate"][0][1]) == pytest.approx(0.1)
    assert float(logged["grad_norm"][0][1]) > 0
    validated = read_events(tmp_path / "logs" / "valid")
    assert [step for step, _ in validated["loss"]] == [3, 4]  # every eval_every steps and at the end
    assert validated["loss"][-1][1] == pytest.approx(train.evaluate(model, valid)["loss"], rel=1e-6)
    assert [(step, text.item().decode()) for step, text in validated["sample"]] == [(3, "sample at 3"),
                                                                                   (4, "sample at 4")]
    assert checkpoint_numbers(tmp_path / "run") == [4] and checkpoint_numbers(tmp_path / "run" / "best")


# ---------------------------------------------------------------------------------------------------- stopping
def test_fit_stops_after_the_step_at_which_stop_turns_true_with_a_checkpoint_of_that_step(tmp_path):
    ids = np.random.default_rng(2).integers(0, V, 60).astype(np.int32)
    model, optimizer = tiny_lm(4), keras.optimizers.Adam(0.01)
    iterator = iter(loop.training_batches(ids, context_length=4, batch_size=2, seed=0))
    policy = policy_for(tmp_path, model, optimizer, iterator, checkpoint_every=4)
    asked = []

    def stop() -> bool:
        asked.append(int(policy.step.numpy()))
        return len(asked) == 5

    results = loop.fit(model, optimizer, policy, iterator, 9, stop=stop)
    assert asked == [1, 2, 3, 4, 5] and results["step"] == 5
    assert checkpoint_numbers(tmp_path) == [4, 5]
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt-5"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 5
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 5

    asked.clear()
    asked.extend([0] * 2)  # stop after the third step of the next call: step 8, a checkpoint step, saved once
    assert loop.fit(model, optimizer, policy, iterator, 9, stop=stop)["step"] == 8
    assert checkpoint_numbers(tmp_path) == [4, 5, 8] and int(policy.checkpoint.save_counter.numpy()) == 3
    assert loop.fit(model, optimizer, policy, iterator, 9, stop=lambda: True)["step"] == 9  # the end


# ---------------------------------------------------------------------------------------------------- progress
def test_eta_leaves_out_the_first_step_which_includes_tracing():
    # The first step of this process ended 15 s after the start (tracing); the next 10 took 0.1 s each.
    assert console.estimate_eta((1, 15.0), (11, 16.0), 1000) == pytest.approx(989 * 0.1)
    assert console.estimate_eta((501, 15.0), (511, 16.0), 1000) == pytest.approx(489 * 0.1)  # a resumed run
    assert console.estimate_eta((1, 15.0), (1, 15.0), 1000) is None  # no pace before a second step
    assert console.estimate_eta((1, 15.0), (1000, 114.9), 1000) == 0.0


class Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_off_a_terminal_is_plain_lines_every_few_steps_with_an_eta_from_the_steps_after_the_first():
    clock, stream = FakeClock(), Stream(tty=False)
    progress = console.Progress(1000, every=10, stream=stream, clock=clock)
    for step in range(1, 31):
        clock.now = 15.0 if step == 1 else clock.now + 0.1
        progress.update(step, [("loss", 2.5), ("lr", 1e-3)], force=step == 25)
    progress.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text and "\b" not in text
    lines = text.splitlines()
    assert [line.split()[1] for line in lines] == ["10/1000", "20/1000", "25/1000", "30/1000"]
    assert lines[0] == "step   10/1000  loss 2.5000  lr 1.00e-03  100 ms/step  ETA 1:39"  # 990 steps of 0.1 s
    assert lines[-1].endswith("100 ms/step  ETA 1:37")


def test_progress_on_a_terminal_rewrites_one_line_and_ends_it_at_the_last_step_or_on_close():
    clock, stream = FakeClock(), Stream(tty=True)
    progress = console.Progress(4, stream=stream, clock=clock, min_interval=0.0)
    for step, shown in ((1, [("loss", 1.0)]), (2, [("loss", 1.5), ("valid_loss", 2.0)]), (3, [("loss", 1.25)])):
        clock.now += 1.0
        progress.update(step, shown)
    assert stream.getvalue() == ("\rstep 1/4  loss 1.0000"
                                 "\rstep 2/4  loss 1.5000  valid_loss 2.0000  1000 ms/step  ETA 0:02"
                                 "\rstep 3/4  loss 1.2500  valid_loss 2.0000  1000 ms/step  ETA 0:01")  # kept
    progress.close()
    assert stream.getvalue().endswith("ETA 0:01\n")
    progress.close()  # nothing more to end
    clock.now += 1.0
    progress.update(4, [("loss", 0.5)])
    assert stream.getvalue().endswith("ETA 0:01\n\rstep 4/4  loss 0.5000  valid_loss 2.0000  1000 ms/step\n")
    assert "\x1b" not in stream.getvalue() and "\b" not in stream.getvalue()
    assert console.Progress(3, stream=Stream(tty=True)).interactive
    assert not console.Progress(3, stream=Stream(tty=False)).interactive


def test_progress_on_a_terminal_pads_a_shorter_line_over_the_longer_one_before_it():
    clock, stream = FakeClock(), Stream(tty=True)
    progress = console.Progress(3, stream=stream, clock=clock, min_interval=0.0)
    for step in (1, 2, 3):
        clock.now += 1.0
        progress.update(step, [("loss", 1.0)])
    second, last = "step 2/3  loss 1.0000  1000 ms/step  ETA 0:01", "step 3/3  loss 1.0000  1000 ms/step"
    assert stream.getvalue().endswith("\r" + second + "\r" + last + " " * (len(second) - len(last)) + "\n")


def test_progress_leaves_the_untimed_blocks_out_of_the_time_per_step_but_not_out_of_the_eta():
    clock, stream = FakeClock(), Stream(tty=False)
    progress = console.Progress(100, every=1, stream=stream, clock=clock)
    with progress.untimed():  # before the first step: not in the pace anyway
        clock.now += 50.0
    for step in (1, 2, 3):
        clock.now += 0.1
        if step == 3:
            with progress.untimed():  # an evaluation of 20 s after step 3
                clock.now += 20.0
        progress.update(step, [("loss", 1.0)])
    lines = stream.getvalue().splitlines()
    assert lines[1] == "step   2/100  loss 1.0000  100 ms/step  ETA 0:10"  # 98 steps of 0.1 s
    assert lines[2] == "step   3/100  loss 1.0000  100 ms/step  ETA 16:20"  # the evaluation's time is in the ETA


def test_fit_shows_the_time_per_training_step_without_the_evaluations(tmp_path):
    clock, stream = FakeClock(), Stream(tty=False)
    ids = np.random.default_rng(5).integers(0, V, 60).astype(np.int32)
    model, optimizer = tiny_lm(5), keras.optimizers.SGD(0.1)
    iterator = iter(loop.training_batches(ids, context_length=4, batch_size=2, seed=0))

    def batches():
        while True:
            clock.now += 0.1  # each training step takes 0.1 s of the fake clock
            yield next(iterator)

    def sample(step: int) -> str:
        clock.now += 30.0  # each evaluation takes 30 s (its sample, here)
        return f"sample at {step}"

    valid = tf.data.Dataset.from_tensor_slices(batch(9, b=5)).batch(2)
    policy = policy_for(tmp_path / "run", model, optimizer, iterator)
    progress = console.Progress(6, every=1, stream=stream, clock=clock)
    loop.fit(model, optimizer, policy, batches(), 6, valid, log_dir=tmp_path / "logs", eval_every=2, sample=sample,
             progress=progress)
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{step}/6" for step in range(1, 7)]
    assert "valid_loss" in lines[1] and "valid_loss" not in lines[2]  # evaluations after steps 2, 4 and 6
    assert [re.search(r"(\d+) ms/step", line).group(1) for line in lines[1:]] == ["100"] * 5
