"""Part 2 reference: RNNCell and LSTMCell against Keras's own cells, the language models, and the part-2 probes."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from assignment import lstm, rnn  # noqa: E402

KINDS = {
    # kind: (our cell, our model, Keras oracle cell, gates per unit, number of states)
    "rnn": (rnn.RNNCell, rnn.RNNLanguageModel, keras.layers.SimpleRNNCell, 1, 1),
    "lstm": (lstm.LSTMCell, lstm.LSTMLanguageModel, keras.layers.LSTMCell, 4, 2),
}
D, H = 5, 6


def random_weights(rng: np.random.Generator, kind: str, d: int, h: int) -> dict[str, np.ndarray]:
    """Weights far from the initial ones (non-zero bias, non-orthogonal U), so that every term matters."""
    g = KINDS[kind][3]
    return {
        "kernel": rng.normal(0.0, 0.5, (d, g * h)).astype(np.float32),
        "recurrent_kernel": rng.normal(0.0, 0.4, (h, g * h)).astype(np.float32),
        "bias": rng.normal(0.0, 0.3, (g * h,)).astype(np.float32),
    }


def assign(cell: keras.layers.Layer, weights: dict[str, np.ndarray]) -> None:
    for name, value in weights.items():
        getattr(cell, name).assign(value)


def keras_rnn(kind: str, weights: dict, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list]:
    """The oracle: keras.layers.RNN over Keras's own cell with the same weights; (outputs [B, T, D_h], final states)."""
    cell = KINDS[kind][2](weights["recurrent_kernel"].shape[0])
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    layer(x[:, :1], initial_state=states)
    assign(cell, weights)
    outputs, *final = layer(x, initial_state=states)
    return np.asarray(outputs), [np.asarray(s) for s in final]


def built_cell(kind: str, weights: dict) -> keras.layers.Layer:
    cell = KINDS[kind][0](weights["recurrent_kernel"].shape[0])
    cell.build((None, weights["kernel"].shape[0]))
    assign(cell, weights)
    return cell


# ---------------------------------------------------------------------------------------------------- cells
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch, steps", [(1, 1), (3, 4), (2, 40)])
def test_cell_matches_the_keras_cell_step_by_step_and_inside_rnn(kind, batch, steps):
    rng = np.random.default_rng([batch, steps, len(kind)])
    weights = random_weights(rng, kind, D, H)
    x = rng.normal(0.0, 1.0, (batch, steps, D)).astype(np.float32)
    states = [rng.normal(0.0, 0.5, (batch, H)).astype(np.float32) for _ in range(KINDS[kind][4])]
    expected, expected_final = keras_rnn(kind, weights, x, states)

    cell = built_cell(kind, weights)
    current = [tf.constant(s) for s in states]
    for t in range(steps):
        output, current = cell(tf.constant(x[:, t]), current)
        np.testing.assert_allclose(output.numpy(), expected[:, t], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(current[0].numpy(), output.numpy(), atol=0)  # the first state is the output h
    for got, want in zip(current, expected_final, strict=True):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=1e-5)

    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    outputs, *final = layer(x, initial_state=states)
    np.testing.assert_allclose(outputs.numpy(), expected, atol=1e-5, rtol=1e-5)
    assert len(final) == len(states)
    for got, want in zip(final, expected_final, strict=True):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=1e-5)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_lstm_step_matches_the_handout_equations_in_numpy():
    # A second oracle spelling the gate order out: columns [0:H] input, [H:2H] forget, [2H:3H] candidate, rest output.
    rng = np.random.default_rng(7)
    weights = random_weights(rng, "lstm", D, H)
    x, h, c = (rng.normal(0.0, 1.0, (4, n)).astype(np.float32) for n in (D, H, H))
    z = x @ weights["kernel"] + h @ weights["recurrent_kernel"] + weights["bias"]
    i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H : 2 * H]), np.tanh(z[:, 2 * H : 3 * H]), sigmoid(z[:, 3 * H :])
    c_next = f * c + i * g
    h_next = o * np.tanh(c_next)
    output, (h_out, c_out) = built_cell("lstm", weights)(x, [h, c])
    np.testing.assert_allclose(output.numpy(), h_next, atol=1e-5)
    np.testing.assert_allclose(h_out.numpy(), h_next, atol=1e-5)
    np.testing.assert_allclose(c_out.numpy(), c_next, atol=1e-5)


def test_cells_accept_states_as_a_tensor_a_list_or_a_tuple():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, D)).astype(np.float32)
    h, c = (rng.normal(size=(2, H)).astype(np.float32) for _ in range(2))
    cell = built_cell("rnn", random_weights(rng, "rnn", D, H))
    expected = cell(x, [h])[0].numpy()
    np.testing.assert_allclose(cell(x, h)[0].numpy(), expected, atol=0)
    np.testing.assert_allclose(cell(x, (h,))[0].numpy(), expected, atol=0)
    cell = built_cell("lstm", random_weights(rng, "lstm", D, H))
    np.testing.assert_allclose(cell(x, (h, c))[0].numpy(), cell(x, [h, c])[0].numpy(), atol=0)
    with pytest.raises(ValueError, match="states"):
        cell(x, [h])


@pytest.mark.parametrize("kind", KINDS)
def test_initial_weights_have_the_prescribed_names_shapes_and_initialisers(kind):
    cell_class, _, _, gates, n_states = KINDS[kind]
    keras.utils.set_random_seed(0)
    cell = cell_class(H)
    cell.build((None, D))
    values = {v.path.split("/")[-1]: v.numpy() for v in cell.weights}
    assert list(values) == ["kernel", "recurrent_kernel", "bias"]
    assert values["kernel"].shape == (D, gates * H)
    assert values["recurrent_kernel"].shape == (H, gates * H)
    assert values["bias"].shape == (gates * H,)
    # Glorot uniform draws from [-limit, limit] with limit = sqrt(6 / (fan_in + fan_out)).
    limit = np.sqrt(6.0 / (D + gates * H))
    assert np.all(np.abs(values["kernel"]) <= limit) and np.std(values["kernel"]) > 0.2 * limit
    # Orthogonal [H, gates*H]: its H rows are orthonormal.
    u = values["recurrent_kernel"]
    np.testing.assert_allclose(u @ u.T, np.eye(H), atol=1e-5)
    forget = np.zeros(gates * H)
    if kind == "lstm":
        forget[H : 2 * H] = 1.0  # gate order i, f, c, o: the second block of H is the forget gate
    np.testing.assert_array_equal(values["bias"], forget)
    assert cell.state_size in (H, [H, H]) and len(np.atleast_1d(cell.state_size)) == n_states
    assert cell.output_size == H


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("units", [0, -3, 2.5, True, "4", None])
def test_cells_refuse_bad_units(kind, units):
    with pytest.raises(ValueError, match="units"):
        KINDS[kind][0](units)


@pytest.mark.parametrize("kind", KINDS)
def test_cell_config_round_trip(kind):
    cell = KINDS[kind][0](7, name="my_cell")
    clone = type(cell).from_config(cell.get_config())
    assert clone.units == 7 and clone.name == "my_cell"


# ---------------------------------------------------------------------------------------------------- language models
V, E, HD = 13, 4, 6


def language_model(kind: str, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = KINDS[kind][1](V, E, HD)
    model(np.zeros((1, 1), np.int32))
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_language_model_is_embedding_then_keras_rnn_then_dense(kind):
    rng = np.random.default_rng(11)
    model = language_model(kind)
    assert isinstance(model.embedding, keras.layers.Embedding) and isinstance(model.output_layer, keras.layers.Dense)
    assert isinstance(model.rnn, keras.layers.RNN) and isinstance(model.rnn.cell, KINDS[kind][0])
    assert (model.vocab_size, model.embed_dim, model.hidden_dim) == (V, E, HD)
    cell_weights = random_weights(rng, kind, E, HD)
    assign(model.rnn.cell, cell_weights)
    embeddings = rng.normal(0.0, 0.5, (V, E)).astype(np.float32)
    w_out = rng.normal(0.0, 0.5, (HD, V)).astype(np.float32)
    b_out = rng.normal(0.0, 0.1, (V,)).astype(np.float32)
    model.embedding.embeddings.assign(embeddings)
    model.output_layer.kernel.assign(w_out)
    model.output_layer.bias.assign(b_out)

    tokens = rng.integers(0, V, (3, 8)).astype(np.int32)
    zeros = [np.zeros((3, HD), np.float32)] * KINDS[kind][4]
    hidden, _ = keras_rnn(kind, cell_weights, embeddings[tokens], zeros)
    logits = model(tokens)
    assert logits.shape == (3, 8, V) and logits.dtype == tf.float32
    np.testing.assert_allclose(logits.numpy(), hidden @ w_out + b_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_step_carries_the_state(kind):
    model = language_model(kind, seed=1)
    tokens = tf.constant(np.random.default_rng(5).integers(0, V, (2, 12)), tf.int32)
    full = model(tokens).numpy()

    first, state = model.step(tokens[:, :5])
    assert isinstance(state, list) and len(state) == KINDS[kind][4]
    assert all(tuple(s.shape) == (2, HD) for s in state)
    second, _ = model.step(tokens[:, 5:], state)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, atol=1e-5)

    # One token at a time, as generation does.
    state, columns = None, []
    for t in range(tokens.shape[1]):
        logits, state = model.step(tokens[:, t : t + 1], state)
        columns.append(logits.numpy())
    np.testing.assert_allclose(np.concatenate(columns, axis=1), full, atol=1e-5)

    # The LSTM's final h equals its last output; the state really is the end state, not the zero state.
    assert not np.allclose(model.step(tokens[:, 5:], state)[0], model.step(tokens[:, 5:])[0])


@pytest.mark.parametrize("kind", KINDS)
def test_step_works_inside_tf_function(kind):
    model = language_model(kind, seed=2)
    tokens = tf.constant(np.random.default_rng(6).integers(0, V, (2, 7)), tf.int32)
    eager, eager_state = model.step(tokens[:, :3])
    compiled = tf.function(model.step)
    graph, graph_state = compiled(tokens[:, :3])
    np.testing.assert_allclose(graph.numpy(), eager.numpy(), atol=1e-6)
    second = compiled(tokens[:, 3:], graph_state)[0]
    np.testing.assert_allclose(second.numpy(), model.step(tokens[:, 3:], eager_state)[0].numpy(), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_every_trainable_variable(kind):
    model = language_model(kind, seed=3)
    rng = np.random.default_rng(8)
    tokens, labels = (tf.constant(rng.integers(0, V, (2, 9)), tf.int32) for _ in range(2))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, model(tokens, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    gates = KINDS[kind][3]
    shapes = sorted(tuple(v.shape) for v in model.trainable_variables)
    assert shapes == sorted([(V, E), (E, gates * HD), (HD, gates * HD), (gates * HD,), (HD, V), (V,)])
    for variable, grad in zip(model.trainable_variables, grads, strict=True):
        assert grad is not None, variable.path
        assert float(tf.norm(tf.convert_to_tensor(grad))) > 0, variable.path


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("argument", ["vocab_size", "embed_dim", "hidden_dim"])
@pytest.mark.parametrize("value", [0, -1, 3.0, None])
def test_language_model_refuses_bad_sizes(kind, argument, value):
    sizes = {"vocab_size": V, "embed_dim": E, "hidden_dim": HD, argument: value}
    with pytest.raises(ValueError, match=argument):
        KINDS[kind][1](**sizes)


@pytest.mark.parametrize("kind", KINDS)
def test_language_model_refuses_bad_tokens_and_states(kind):
    model = language_model(kind, seed=4)
    for tokens in (np.zeros((5,), np.int32), np.zeros((2, 3, 1), np.int32), np.zeros((2, 3), np.float32)):
        with pytest.raises(ValueError, match="tokens"):
            model.step(tokens)
    tokens = np.zeros((2, 3), np.int32)
    _, state = model.step(tokens)
    with pytest.raises(ValueError, match="state"):
        model.step(tokens, state + state)
    with pytest.raises(ValueError, match="state"):
        model.step(tokens, [tf.zeros((2, HD + 1))] * len(state))


@pytest.mark.parametrize("kind", KINDS)
def test_language_model_config_round_trip(kind):
    model = KINDS[kind][1](V, E, HD, name="lm")
    config = model.get_config()
    assert {k: config[k] for k in ("vocab_size", "embed_dim", "hidden_dim")} == {
        "vocab_size": V, "embed_dim": E, "hidden_dim": HD}
    clone = type(model).from_config(config)
    assert (clone.vocab_size, clone.embed_dim, clone.hidden_dim, clone.name) == (V, E, HD, "lm")
    assert clone(np.zeros((1, 2), np.int32)).shape == (1, 2, V)


# ---------------------------------------------------------------------------------------------------- probes
@pytest.fixture(scope="module")
def probes():
    pytest.importorskip("autograder.worker.probes.registry")
    inprocess = pytest.importorskip("autograder.recording.inprocess")
    from autograder.worker.probes import recurrent as probes

    return probes, inprocess.REFERENCE


@pytest.mark.parametrize("kind", KINDS)
def test_probes_run_on_the_reference(probes, kind):
    module, reference = probes
    rng = np.random.default_rng(13)
    weights = random_weights(rng, kind, D, H)
    x = rng.normal(0.0, 1.0, (2, 6, D)).astype(np.float32)
    states = [rng.normal(0.0, 0.5, (2, H)).astype(np.float32) for _ in range(KINDS[kind][4])]
    expected, expected_final = keras_rnn(kind, weights, x, states)
    reply = module.cell_forward(reference, kind=kind, units=H, x=x, states=states, weights=weights)
    for mode in ("step", "layer"):
        np.testing.assert_allclose(reply[f"{mode}_outputs"], expected, atol=1e-5, rtol=1e-5)
        for got, want in zip(reply[f"{mode}_states"], expected_final, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)

    initial = module.cell_initial_weights(reference, kind=kind, input_dim=3, units=5, seed=0)
    assert sorted(initial) == ["bias", "call_output", "kernel", "recurrent_kernel"]
    assert initial["call_output"].shape == (2, 5)

    tokens = rng.integers(0, V, (2, 9)).astype(np.int32)
    lm = {"embeddings": rng.normal(0.0, 0.5, (V, E)).astype(np.float32),
          "output_kernel": rng.normal(0.0, 0.5, (HD, V)).astype(np.float32),
          "output_bias": rng.normal(0.0, 0.1, (V,)).astype(np.float32), **random_weights(rng, kind, E, HD)}
    cell_weights = {k: lm[k] for k in ("kernel", "recurrent_kernel", "bias")}
    zeros = [np.zeros((2, HD), np.float32)] * KINDS[kind][4]
    hidden, _ = keras_rnn(kind, cell_weights, lm["embeddings"][tokens], zeros)
    reply = module.lm_forward(reference, kind=kind, vocab_size=V, embed_dim=E, hidden_dim=HD, tokens=tokens,
                              weights=lm, split=4)
    oracle = hidden @ lm["output_kernel"] + lm["output_bias"]
    np.testing.assert_allclose(reply["logits"], oracle, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(reply["step_logits"], oracle, atol=1e-5, rtol=1e-5)

    reply = module.lm_gradients(reference, kind=kind, vocab_size=V, embed_dim=E, hidden_dim=HD, tokens=tokens,
                                labels=rng.integers(0, V, (2, 9)).astype(np.int32), seed=0)
    assert len(reply["names"]) == 6 and np.all(np.isfinite(reply["norms"])) and np.all(reply["norms"] > 0)
