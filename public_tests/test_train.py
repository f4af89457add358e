"""Part 5, visible tests: the loss against numpy, train_step against gradients taken here (grad_norm of the dense
gradient, SGD updates, global-norm clipping) and on a fresh model, compiled steps lowering the loss, evaluate, the
`training` flag each of them passes to the model, and the checkpoint policy with a fake clock (saves, restore, the best
checkpoint)."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

V, D, D_H = 7, 4, 5


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def numpy_loss(labels: np.ndarray, logits: np.ndarray) -> float:
    """-1/(BT) sum log softmax(logits)[label], the handout's loss."""
    return float(-np.take_along_axis(log_softmax(logits), labels[..., None], axis=-1).mean())


def tokens_with_repeats(seed: int = 0, batch: int = 4, length: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) [batch, length] over only 3 of the V ids, so that every id repeats many times."""
    ids = np.random.default_rng(seed).integers(0, 3, size=(batch, length + 1)).astype(np.int32)
    return ids[:, :-1], ids[:, 1:]


class TinyLanguageModel(keras.Model):
    """A small language model written here, so that these tests need none of yours: token embeddings [V, D], a tanh
    layer [D, D_H] and the output layer [D_H, V], built on the first call. It records the `training` argument of
    every call in `flags`."""

    def __init__(self):
        super().__init__()
        self.embedding = keras.layers.Embedding(V, D)
        self.hidden = keras.layers.Dense(D_H, activation="tanh")
        self.output_layer = keras.layers.Dense(V)
        self.flags: list = []

    def call(self, tokens, training=None):
        self.flags.append(training)
        return self.output_layer(self.hidden(self.embedding(tokens)))


def fresh_model(inputs: np.ndarray) -> TinyLanguageModel:
    keras.utils.set_random_seed(0)
    model = TinyLanguageModel()
    model(inputs)
    return model


def flag_recording_model(inputs: np.ndarray) -> TinyLanguageModel:
    """A built TinyLanguageModel whose record of `training` flags is empty."""
    model = fresh_model(inputs)
    model.flags.clear()
    return model


def handout_gradients(model, inputs, labels) -> list[np.ndarray]:
    """Dense gradients of the mean cross-entropy with respect to model.trainable_variables, taken here."""
    with tf.GradientTape() as tape:
        logits = model(inputs, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_variables)]


def global_norm(arrays: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in arrays)))


# ---------------------------------------------------------------------------------------------------- loss
def test_loss_of_uniform_logits_is_log_v(train):
    loss = train.sequence_loss(np.zeros((2, 3), dtype=np.int32), np.zeros((2, 3, 5), dtype=np.float32))
    np.testing.assert_allclose(float(loss), np.log(5.0), rtol=1e-6)


def test_loss_and_perplexity_match_numpy_on_random_logits(train):
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 3.0, size=(3, 4, 6)).astype(np.float32)
    labels = rng.integers(0, 6, size=(3, 4)).astype(np.int32)
    loss = train.sequence_loss(labels, logits)
    assert loss.shape == () and loss.dtype.name == "float32"
    np.testing.assert_allclose(float(loss), numpy_loss(labels, logits), rtol=1e-5)
    np.testing.assert_allclose(float(train.perplexity(loss)), np.exp(numpy_loss(labels, logits)), rtol=1e-5)
    np.testing.assert_allclose(float(train.perplexity(np.log(5.0))), 5.0, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------- train_step
def test_train_step_returns_loss_and_gradient_norm(train):
    inputs, labels = tokens_with_repeats()
    model = fresh_model(inputs)
    result = train.train_step(model, keras.optimizers.SGD(0.1), inputs, labels)
    assert set(result) >= {"loss", "grad_norm"}
    assert np.isfinite(float(result["loss"])) and float(result["grad_norm"]) > 0


def test_train_step_is_one_sgd_step_with_the_dense_gradient_norm(train):
    inputs, labels = tokens_with_repeats(2)
    model = fresh_model(inputs)
    before = [v.numpy() for v in model.trainable_variables]
    loss_before = numpy_loss(labels, np.asarray(model(inputs)))
    grads = handout_gradients(model, inputs, labels)
    result = train.train_step(model, keras.optimizers.SGD(0.5), inputs, labels)
    np.testing.assert_allclose(float(result["loss"]), loss_before, rtol=1e-5)  # the loss before the update
    # The embedding's gradient has repeated rows (token ids repeat): the norm is that of the dense gradient.
    np.testing.assert_allclose(float(result["grad_norm"]), global_norm(grads), rtol=1e-4)
    for old, grad, new in zip(before, grads, model.trainable_variables, strict=True):
        np.testing.assert_allclose(new.numpy(), old - 0.5 * grad, atol=1e-5)


def test_train_step_clips_by_the_global_norm_and_reports_the_norm_before(train):
    inputs, labels = tokens_with_repeats(3)
    model = fresh_model(inputs)
    before = [v.numpy() for v in model.trainable_variables]
    grads = handout_gradients(model, inputs, labels)
    norm = global_norm(grads)
    clip = norm / 4.0
    result = train.train_step(model, keras.optimizers.SGD(1.0), inputs, labels, clip_norm=clip)
    np.testing.assert_allclose(float(result["grad_norm"]), norm, rtol=1e-4)
    for old, grad, new in zip(before, grads, model.trainable_variables, strict=True):
        np.testing.assert_allclose(new.numpy(), old - grad * (clip / norm), atol=1e-5)  # every gradient scaled by 1/4
    # A clip_norm above the norm changes nothing.
    model = fresh_model(inputs)
    train.train_step(model, keras.optimizers.SGD(1.0), inputs, labels, clip_norm=10 * norm)
    for old, grad, new in zip(before, grads, model.trainable_variables, strict=True):
        np.testing.assert_allclose(new.numpy(), old - grad, atol=1e-5)


def test_train_step_builds_a_fresh_model(train):
    inputs, labels = tokens_with_repeats(7)
    keras.utils.set_random_seed(0)
    model = TinyLanguageModel()  # never called: no variables yet
    assert not model.trainable_variables
    first = train.train_step(model, keras.optimizers.SGD(0.5), inputs, labels)
    assert np.isfinite(float(first["loss"])) and float(first["grad_norm"]) > 0
    assert model.trainable_variables
    assert float(train.sequence_loss(labels, model(inputs))) < float(first["loss"])  # the first step was applied
    after = [v.numpy() for v in model.trainable_variables]
    train.train_step(model, keras.optimizers.SGD(0.5), inputs, labels)  # a second step updates every variable
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(after, model.trainable_variables, strict=True))


def test_train_step_calls_the_model_with_training_true(train):
    # training=True switches dropout on (the transformer's, when --dropout > 0); without it dropout never acts.
    inputs, labels = tokens_with_repeats(9)
    model = flag_recording_model(inputs)
    train.train_step(model, keras.optimizers.SGD(0.1), inputs, labels)
    assert model.flags, "train_step did not call the model"
    assert all(flag is True for flag in model.flags), f"train_step called the model with training={model.flags}"


def test_compiled_train_steps_lower_the_loss(train):
    inputs, labels = tokens_with_repeats(4)
    model = fresh_model(inputs)
    step = train.make_train_step(model, keras.optimizers.Adam(0.05), clip_norm=1.0)
    losses = [float(step(tf.constant(inputs), tf.constant(labels))["loss"]) for _ in range(15)]
    assert losses[-1] < losses[0] - 0.3, losses
    assert float(train.sequence_loss(labels, model(inputs))) < losses[0] - 0.3


# ---------------------------------------------------------------------------------------------------- evaluate
def test_evaluate_weights_every_token_once(train):
    inputs, labels = tokens_with_repeats(5, batch=5)
    model = fresh_model(inputs)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(2)  # batches of 2, 2 and 1 windows
    logits = np.asarray(model(inputs))
    result = train.evaluate(model, dataset)
    np.testing.assert_allclose(result["loss"], numpy_loss(labels, logits), rtol=1e-5)
    np.testing.assert_allclose(result["perplexity"], np.exp(numpy_loss(labels, logits)), rtol=1e-5)
    first = train.evaluate(model, dataset, max_batches=1)
    np.testing.assert_allclose(first["loss"], numpy_loss(labels[:2], logits[:2]), rtol=1e-5)
    with pytest.raises(ValueError):
        train.evaluate(model, dataset.take(0))


def test_evaluate_calls_the_model_with_training_false(train):
    # training=False switches dropout off: evaluation measures the model that generates text.
    inputs, labels = tokens_with_repeats(10, batch=5)
    model = flag_recording_model(inputs)
    train.evaluate(model, tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(2))
    assert model.flags, "evaluate did not call the model"
    assert all(flag is False for flag in model.flags), f"evaluate called the model with training={model.flags}"


# ---------------------------------------------------------------------------------------------------- checkpoints
class FakeClock:
    """A clock in seconds that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy(train, directory, clock=None, **kwargs):
    model = TinyLanguageModel()  # built on first use
    optimizer = keras.optimizers.Adam(0.01)
    step = tf.Variable(0, dtype=tf.int64)
    return train.CheckpointPolicy(directory, model, optimizer, step, clock=clock or FakeClock(), **kwargs)


def test_should_save_every_n_steps_or_after_the_minutes(train, tmp_path):
    clock = FakeClock()
    policy = _policy(train, tmp_path, clock, checkpoint_every=5, checkpoint_minutes=2.0)
    assert [s for s in range(0, 16) if policy.should_save(s)] == [0, 5, 10, 15]
    clock.now += 119.5
    assert not policy.should_save(7)
    clock.now += 0.5  # two minutes since the policy started: the boundary counts
    assert policy.should_save(7)
    policy.save(7)  # a save resets the clock
    assert not policy.should_save(8)
    clock.now += 120.0
    assert policy.should_save(8)


def test_restore_resets_the_save_clock(train, tmp_path):
    first = _policy(train, tmp_path, checkpoint_every=4, checkpoint_minutes=2.0)
    train.train_step(first.model, first.optimizer, *tokens_with_repeats(8))  # builds the model and the optimizer
    first.step.assign(4)
    first.save(4)
    clock = FakeClock()
    policy = _policy(train, tmp_path, clock, checkpoint_every=4, checkpoint_minutes=2.0)
    clock.now += 100.0  # 100 s after the policy was made
    assert policy.restore() == 4
    clock.now += 60.0  # 160 s after the policy was made, 60 s after the restore
    assert not policy.should_save(5)
    clock.now += 60.0  # two minutes after the restore
    assert policy.should_save(5)


def test_save_best_only_on_a_strict_improvement(train, tmp_path):
    policy = _policy(train, tmp_path)
    assert policy.save_best(2.0) is True
    assert policy.save_best(2.5) is False
    assert policy.save_best(2.0) is False
    assert policy.save_best(1.5) is True
    assert float(policy.best_loss.numpy()) == 1.5


def test_best_checkpoint_is_numbered_by_the_step(train, tmp_path):
    policy = _policy(train, tmp_path)
    for step, loss in ((3, 2.0), (5, 2.5), (8, 1.0), (9, 1.2)):
        policy.step.assign(step)
        policy.save_best(loss)
    latest = tf.train.latest_checkpoint(str(tmp_path / "best"))
    assert latest is not None and re.search(r"-(\d+)$", latest).group(1) == "8", latest


def test_restore_resumes_model_optimizer_and_step(train, tmp_path):
    inputs, labels = tokens_with_repeats(6)
    policy = _policy(train, tmp_path)
    policy.model(inputs)
    for _ in range(3):
        train.train_step(policy.model, policy.optimizer, inputs, labels)
        policy.step.assign_add(1)
    policy.save(3)
    saved_weights = [v.numpy() for v in policy.model.weights]
    saved_optimizer = [v.numpy() for v in policy.optimizer.variables]

    fresh = _policy(train, tmp_path)  # a new model and optimizer, not built yet: restore builds them
    assert fresh.restore() == 3 and int(fresh.step.numpy()) == 3
    for saved, restored in zip(saved_weights, fresh.model.weights, strict=True):
        np.testing.assert_array_equal(restored.numpy(), saved)
    assert len(fresh.optimizer.variables) == len(saved_optimizer)
    for saved, restored in zip(saved_optimizer, fresh.optimizer.variables, strict=True):  # Adam's moments, iterations
        np.testing.assert_array_equal(restored.numpy(), saved)
    assert _policy(train, tmp_path / "empty").restore() == 0
