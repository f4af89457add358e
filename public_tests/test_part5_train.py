"""Part 5, visible tests: the loss on uniform logits and one training step."""

import keras
import numpy as np


def test_loss_of_uniform_logits_is_log_v(train):
    loss = train.sequence_loss(np.zeros((2, 3), dtype=np.int32), np.zeros((2, 3, 5), dtype=np.float32))
    np.testing.assert_allclose(float(loss), np.log(5.0), rtol=1e-6)


def test_train_step_returns_loss_and_gradient_norm(train, lstm):
    model = lstm.LSTMLanguageModel(vocab_size=7, embed_dim=4, hidden_dim=4)
    tokens = np.arange(12, dtype=np.int32).reshape(2, 6) % 7
    model(tokens)
    result = train.train_step(model, keras.optimizers.SGD(0.1), tokens[:, :-1], tokens[:, 1:])
    assert set(result) >= {"loss", "grad_norm"}
    assert np.isfinite(float(result["loss"])) and float(result["grad_norm"]) > 0
