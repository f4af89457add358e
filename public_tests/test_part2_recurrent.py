"""Part 2, visible tests: one RNN step against numpy, LSTM and language-model shapes."""

import numpy as np


def test_rnn_cell_step_matches_the_equation(rnn):
    cell = rnn.RNNCell(4)
    cell.build((None, 3))
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    h = np.full((2, 4), 0.5, dtype=np.float32)
    output, (state,) = cell(x, [h])
    W, U, b = (cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy())
    np.testing.assert_allclose(output.numpy(), np.tanh(x @ W + h @ U + b), atol=1e-5)
    np.testing.assert_allclose(state.numpy(), output.numpy(), atol=1e-6)


def test_lstm_cell_returns_h_and_c(lstm):
    cell = lstm.LSTMCell(5)
    cell.build((None, 3))
    assert tuple(cell.kernel.shape) == (3, 20) and tuple(cell.recurrent_kernel.shape) == (5, 20)
    zeros = np.zeros((2, 5), dtype=np.float32)
    output, (h, c) = cell(np.ones((2, 3), dtype=np.float32), [zeros, zeros])
    assert output.shape == (2, 5) and h.shape == (2, 5) and c.shape == (2, 5)


def test_rnn_language_model_logits_shape(rnn):
    model = rnn.RNNLanguageModel(vocab_size=11, embed_dim=6, hidden_dim=8)
    logits = model(np.zeros((2, 7), dtype=np.int32))
    assert logits.shape == (2, 7, 11) and logits.dtype.name == "float32"


def test_lstm_language_model_logits_shape(lstm):
    model = lstm.LSTMLanguageModel(vocab_size=11, embed_dim=6, hidden_dim=8)
    logits = model(np.zeros((2, 7), dtype=np.int32))
    assert logits.shape == (2, 7, 11) and logits.dtype.name == "float32"
