"""Part 4, visible tests: mask, attention and positional encoding on tiny inputs, model shapes."""

import numpy as np


def test_causal_mask_is_lower_triangular(transformer):
    np.testing.assert_array_equal(transformer.causal_mask(3), [[1, 0, 0], [1, 1, 0], [1, 1, 1]])


def test_attention_with_equal_scores_averages_the_visible_values(transformer):
    q = np.zeros((1, 3, 2), dtype=np.float32)
    k = np.ones((1, 3, 2), dtype=np.float32)
    v = np.array([[[3.0, 0.0], [0.0, 3.0], [3.0, 3.0]]], dtype=np.float32)
    output, weights = transformer.scaled_dot_product_attention(q, k, v, mask=transformer.causal_mask(3))
    np.testing.assert_allclose(weights[0], [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)
    np.testing.assert_allclose(output[0], [[3, 0], [1.5, 1.5], [2, 2]], atol=1e-5)


def test_positional_encoding_at_position_zero(transformer):
    pe = np.asarray(transformer.positional_encoding(5, 4))
    assert pe.shape == (5, 4) and pe.dtype == np.float32
    np.testing.assert_allclose(pe[0], [0, 1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(pe[1, :2], [np.sin(1.0), np.cos(1.0)], atol=1e-6)


def test_transformer_language_model_logits_shape(transformer):
    model = transformer.TransformerLanguageModel(vocab_size=13, context_length=8, d_model=8, num_heads=2, num_layers=1)
    logits = model(np.zeros((2, 6), dtype=np.int32))
    assert logits.shape == (2, 6, 13) and logits.dtype.name == "float32"
