"""Part 2, visible tests: the RNN and LSTM cells against their equations written in numpy on random weights, the
cells unrolled by keras.layers.RNN, the language models against a numpy forward pass, and step split equals call."""

import keras
import numpy as np
import pytest

B, D, D_H, V, T = 3, 5, 4, 11, 7  # D != D_h, so that swapping the kernels cannot go unnoticed


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def rnn_step(x, h, W, U, b):
    """h' = tanh(x W + h U + b), the handout's equation; x [B, D], h [B, D_h] -> [B, D_h]."""
    return np.tanh(x @ W + h @ U + b)


def lstm_step(x, h, c, W, U, b):
    """The handout's LSTM equations, blocks in the order i, f, g (candidate), o: returns (h' [B, D_h], c' [B, D_h])."""
    z_i, z_f, z_g, z_o = np.split(x @ W + h @ U + b, 4, axis=-1)
    c_next = sigmoid(z_f) * c + sigmoid(z_i) * np.tanh(z_g)
    return sigmoid(z_o) * np.tanh(c_next), c_next


def randomize(layer, seed: int) -> list[np.ndarray]:
    """Give every weight of `layer` random values (biases too); returns them in layer.weights order."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in layer.weights:
        value = rng.normal(0.0, 0.5, size=tuple(weight.shape)).astype(np.float32)
        weight.assign(value)
        values.append(value)
    return values


def cell_weights(cell) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy()


def test_rnn_cell_weights_have_the_handout_shapes(rnn):
    cell = rnn.RNNCell(D_H)
    cell.build((None, D))
    assert (tuple(cell.kernel.shape), tuple(cell.recurrent_kernel.shape), tuple(cell.bias.shape)) == (
        (D, D_H), (D_H, D_H), (D_H,))
    x = np.ones((B, D), np.float32)
    output, states = cell(x, [np.zeros((B, D_H), np.float32)])
    assert output.shape == (B, D_H) and len(states) == 1


def test_rnn_cell_step_matches_the_equation_on_random_weights(rnn):
    rng = np.random.default_rng(0)
    cell = rnn.RNNCell(D_H)
    cell.build((None, D))
    randomize(cell, 1)
    x = rng.normal(size=(B, D)).astype(np.float32)
    h = rng.normal(size=(B, D_H)).astype(np.float32)
    output, (state,) = cell(x, [h])
    expected = rnn_step(x, h, *cell_weights(cell))
    np.testing.assert_allclose(output.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(state.numpy(), expected, atol=1e-5)


def test_rnn_cell_unrolled_by_keras_rnn_matches_a_numpy_loop(rnn):
    rng = np.random.default_rng(2)
    layer = keras.layers.RNN(rnn.RNNCell(D_H), return_sequences=True, return_state=True)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    layer.build((None, T, D))
    randomize(layer.cell, 3)
    outputs, final = layer(x)
    h = np.zeros((B, D_H), np.float32)
    expected = []
    for t in range(T):
        h = rnn_step(x[:, t], h, *cell_weights(layer.cell))
        expected.append(h)
    np.testing.assert_allclose(outputs.numpy(), np.stack(expected, axis=1), atol=1e-5)
    np.testing.assert_allclose(final.numpy(), h, atol=1e-5)


def test_lstm_cell_weights_and_forget_bias(lstm):
    cell = lstm.LSTMCell(D_H)
    cell.build((None, D))
    assert (tuple(cell.kernel.shape), tuple(cell.recurrent_kernel.shape), tuple(cell.bias.shape)) == (
        (D, 4 * D_H), (D_H, 4 * D_H), (4 * D_H,))
    # Blocks i, f, g, o: the forget block of the bias starts at 1, the others at 0.
    np.testing.assert_array_equal(cell.bias.numpy(), np.repeat([0.0, 1.0, 0.0, 0.0], D_H))
    zeros = np.zeros((B, D_H), np.float32)
    output, states = cell(np.ones((B, D), np.float32), [zeros, zeros])
    assert output.shape == (B, D_H) and len(states) == 2


def test_lstm_cell_step_matches_the_equations_on_random_weights(lstm):
    rng = np.random.default_rng(4)
    cell = lstm.LSTMCell(D_H)
    cell.build((None, D))
    randomize(cell, 5)
    x = rng.normal(size=(B, D)).astype(np.float32)
    h, c = (rng.normal(size=(B, D_H)).astype(np.float32) for _ in range(2))
    output, (h_next, c_next) = cell(x, [h, c])
    expected_h, expected_c = lstm_step(x, h, c, *cell_weights(cell))
    np.testing.assert_allclose(output.numpy(), expected_h, atol=1e-5)
    np.testing.assert_allclose(h_next.numpy(), expected_h, atol=1e-5)  # states in the order [h, c]
    np.testing.assert_allclose(c_next.numpy(), expected_c, atol=1e-5)


def test_lstm_cell_unrolled_by_keras_rnn_matches_a_numpy_loop(lstm):
    rng = np.random.default_rng(6)
    layer = keras.layers.RNN(lstm.LSTMCell(D_H), return_sequences=True, return_state=True)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    layer.build((None, T, D))
    randomize(layer.cell, 7)
    outputs, final_h, final_c = layer(x)
    h = c = np.zeros((B, D_H), np.float32)
    expected = []
    for t in range(T):
        h, c = lstm_step(x[:, t], h, c, *cell_weights(layer.cell))
        expected.append(h)
    np.testing.assert_allclose(outputs.numpy(), np.stack(expected, axis=1), atol=1e-5)
    np.testing.assert_allclose(final_h.numpy(), h, atol=1e-5)
    np.testing.assert_allclose(final_c.numpy(), c, atol=1e-5)


MODELS = [("rnn", "RNNLanguageModel"), ("lstm", "LSTMLanguageModel")]


def _model(module, name: str, seed: int):
    model = getattr(module, name)(vocab_size=V, embed_dim=D, hidden_dim=D_H)
    tokens = np.random.default_rng(seed).integers(0, V, size=(B, T)).astype(np.int32)
    model(tokens)
    randomize(model, seed)
    return model, tokens


@pytest.mark.parametrize("module_name, class_name", MODELS)
def test_language_model_logits_match_a_numpy_forward_pass(request, module_name, class_name):
    model, tokens = _model(request.getfixturevalue(module_name), class_name, 8)
    logits = model(tokens)
    assert logits.shape == (B, T, V) and logits.dtype.name == "float32"
    embedded = model.embedding.embeddings.numpy()[tokens]  # [B, T, D]
    W, U, b = cell_weights(model.rnn.cell)
    h = c = np.zeros((B, D_H), np.float32)
    hidden = []
    for t in range(T):
        if module_name == "rnn":
            h = rnn_step(embedded[:, t], h, W, U, b)
        else:
            h, c = lstm_step(embedded[:, t], h, c, W, U, b)
        hidden.append(h)
    kernel, bias = (w.numpy() for w in model.output_layer.weights)
    expected = np.stack(hidden, axis=1) @ kernel + bias  # logits, not probabilities
    np.testing.assert_allclose(logits.numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("module_name, class_name", MODELS)
def test_language_model_step_split_equals_call(request, module_name, class_name):
    model, tokens = _model(request.getfixturevalue(module_name), class_name, 9)
    full = model(tokens).numpy()
    first, state = model.step(tokens[:, :3])
    second, state = model.step(tokens[:, 3:4], state)
    third, final = model.step(tokens[:, 4:], state)
    np.testing.assert_allclose(np.concatenate([first, second, third], axis=1), full, atol=1e-5)
    _, whole_state = model.step(tokens)
    assert len(final) == len(whole_state) == (1 if module_name == "rnn" else 2)
    for carried, whole in zip(final, whole_state, strict=True):
        np.testing.assert_allclose(np.asarray(carried), np.asarray(whole), atol=1e-5)
