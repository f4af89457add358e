"""Part 4, visible tests: mask, attention, positions and heads against numpy formulas, multi-head attention and the
whole pre-LN model against a numpy forward pass on random weights, causality, dropout, and the KV cache against
recomputation.
"""

import math

import numpy as np
import pytest
from scipy import stats

B, T, D_MODEL, HEADS, V, C = 2, 6, 8, 2, 13, 8
HD = D_MODEL // HEADS


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(dk)) v with masked scores at -1e9: (output, weights)."""
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -1e9)
    weights = softmax(scores)
    return weights @ v, weights


def causal(length: int) -> np.ndarray:
    return np.tril(np.ones((length, length), bool))


def randomize(layer, seed: int, scale: float = 0.3) -> None:
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(0.0, scale, size=tuple(weight.shape)).astype(np.float32))


def mha(layer, x: np.ndarray) -> np.ndarray:
    """Causal multi-head self-attention of x [B, T, d] with the layer's weights, in numpy."""
    w = {name: getattr(layer, name).numpy() for name in (
        "query_kernel", "query_bias", "key_kernel", "key_bias", "value_kernel", "value_bias", "output_kernel",
        "output_bias")}
    q, k, v = (np.einsum("btd,dhk->bhtk", x, w[f"{n}_kernel"]) + w[f"{n}_bias"][None, :, None, :]
               for n in ("query", "key", "value"))
    attended, _ = attention(q, k, v, causal(x.shape[1]))  # [B, H, T, hd]
    return np.einsum("bhtk,hkd->btd", attended, w["output_kernel"]) + w["output_bias"]


def layer_norm(x: np.ndarray, norm) -> np.ndarray:
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * norm.gamma.numpy() + norm.beta.numpy()


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / np.sqrt(2.0)))


def model_logits(model, tokens: np.ndarray) -> np.ndarray:
    """The handout's pre-LN transformer in numpy, with the model's weights (learned positions)."""
    E = model.token_embedding.embeddings.numpy()
    h = E[tokens] + model.position_embedding.embeddings.numpy()[: tokens.shape[1]]
    for block in model.blocks:
        h = h + mha(block.attention, layer_norm(h, block.norm1))
        hidden = gelu(layer_norm(h, block.norm2) @ block.mlp_hidden.kernel.numpy() + block.mlp_hidden.bias.numpy())
        h = h + hidden @ block.mlp_output.kernel.numpy() + block.mlp_output.bias.numpy()
    return layer_norm(h, model.final_norm) @ E.T + model.output_bias.numpy()


# ---------------------------------------------------------------------------------------------------- functions
@pytest.mark.parametrize("length", [1, 3, 6])
def test_causal_mask_is_lower_triangular(transformer, length):
    mask = np.asarray(transformer.causal_mask(length))
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, causal(length))


def test_attention_with_equal_scores_averages_the_visible_values(transformer):
    q = np.zeros((1, 3, 2), dtype=np.float32)
    k = np.ones((1, 3, 2), dtype=np.float32)
    v = np.array([[[3.0, 0.0], [0.0, 3.0], [3.0, 3.0]]], dtype=np.float32)
    output, weights = transformer.scaled_dot_product_attention(q, k, v, mask=transformer.causal_mask(3))
    np.testing.assert_allclose(weights[0], [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)
    np.testing.assert_allclose(output[0], [[3, 0], [1.5, 1.5], [2, 2]], atol=1e-5)


def test_attention_matches_the_formula_on_random_inputs(transformer):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    k = rng.normal(size=(2, 3, 6, 5)).astype(np.float32)
    v = rng.normal(size=(2, 3, 6, 7)).astype(np.float32)
    mask = rng.random((2, 3, 4, 6)) < 0.6
    mask[..., 0] = True  # every query sees at least one key
    for m in (None, mask):
        output, weights = transformer.scaled_dot_product_attention(q, k, v, m)
        expected_output, expected_weights = attention(q, k, v, m)
        assert output.shape == (2, 3, 4, 7) and weights.shape == (2, 3, 4, 6)
        np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
        np.testing.assert_allclose(output, expected_output, atol=1e-5)
        np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, atol=1e-5)  # rows sum to 1
    assert np.all(np.asarray(weights)[~mask] == 0.0)  # masked weights are 0


def test_positional_encoding_matches_the_formula(transformer):
    pe = np.asarray(transformer.positional_encoding(7, 8))
    assert pe.shape == (7, 8) and pe.dtype == np.float32
    position, i = np.arange(7)[:, None], np.arange(4)[None, :]
    angle = position / 10000.0 ** (2 * i / 8)
    np.testing.assert_allclose(pe[:, 0::2], np.sin(angle), atol=1e-5)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(angle), atol=1e-5)


def test_split_and_merge_heads_transpose_and_round_trip(transformer):
    x = np.arange(2 * 5 * 3 * 4, dtype=np.float32).reshape(2, 5, 3, 4)  # [B, T, H, hd]
    split = np.asarray(transformer.split_heads(x))
    np.testing.assert_array_equal(split, np.transpose(x, (0, 2, 1, 3)))  # [B, H, T, hd]
    np.testing.assert_array_equal(np.asarray(transformer.merge_heads(split)), x)
    y = np.arange(2 * 3 * 5 * 4, dtype=np.float32).reshape(2, 3, 5, 4)  # [B, H, T, hd]
    np.testing.assert_array_equal(np.asarray(transformer.merge_heads(y)), np.transpose(y, (0, 2, 1, 3)))


# ---------------------------------------------------------------------------------------------------- layers, model
def test_multi_head_attention_matches_numpy_on_random_weights(transformer):
    layer = transformer.MultiHeadSelfAttention(D_MODEL, HEADS)
    x = np.random.default_rng(1).normal(size=(B, T, D_MODEL)).astype(np.float32)
    layer.build(x.shape)
    randomize(layer, 2)
    y = layer(x)
    assert y.shape == (B, T, D_MODEL)
    np.testing.assert_allclose(y, mha(layer, x), atol=1e-4)


def _model(transformer, seed: int, **kwargs):
    model = transformer.TransformerLanguageModel(vocab_size=V, context_length=C, d_model=D_MODEL, num_heads=HEADS,
                                                 num_layers=2, **kwargs)
    tokens = np.random.default_rng(seed).integers(0, V, size=(B, T)).astype(np.int32)
    model(tokens)
    randomize(model, seed)
    return model, tokens


def test_transformer_logits_match_a_numpy_pre_ln_transformer(transformer):
    model, tokens = _model(transformer, 3)
    logits = model(tokens)
    assert logits.shape == (B, T, V) and logits.dtype.name == "float32"
    np.testing.assert_allclose(logits, model_logits(model, tokens), atol=1e-4)


def test_transformer_is_causal(transformer):
    model, tokens = _model(transformer, 4)
    changed = tokens.copy()
    changed[:, 3:] = (changed[:, 3:] + 1) % V
    before, after = np.asarray(model(tokens)), np.asarray(model(changed))
    np.testing.assert_allclose(before[:, :3], after[:, :3], atol=1e-5)  # earlier positions never see later tokens
    assert not np.allclose(before[:, 3:], after[:, 3:], atol=1e-3)


def test_transformer_refuses_more_than_context_length_tokens(transformer):
    model, _ = _model(transformer, 5)
    assert model(np.zeros((1, C), np.int32)).shape == (1, C, V)
    with pytest.raises(ValueError):
        model(np.zeros((1, C + 1), np.int32))


def test_dropout_acts_in_training_only(transformer):
    model, tokens = _model(transformer, 8, dropout=0.5)
    inference = np.asarray(model(tokens))
    np.testing.assert_allclose(inference, model_logits(model, tokens), atol=1e-4)  # training=False: no dropout
    np.testing.assert_array_equal(np.asarray(model(tokens, training=False)), inference)
    assert not np.allclose(np.asarray(model(tokens, training=True)), inference, atol=1e-3)


DROPOUT_DRAWS = 2000
"""Copies of one input in the batch of the dropout test: each copy draws its own dropout masks."""
DROPOUT_ALPHA = 1e-4
"""False-failure probability of the dropout test for a correct layer (normal approximation of a mean of 2000)."""


def test_attention_dropout_keeps_the_expected_output(transformer):
    # Inverted dropout scales the kept units by 1 / (1 - rate), so that on average the training output is the
    # inference output; true for dropout on the attended values and on the attention weights alike. One output
    # feature per position: independent draws across positions, so the squared z-scores sum to a chi-square with T
    # degrees of freedom.
    layer = transformer.MultiHeadSelfAttention(D_MODEL, HEADS, dropout=0.5)
    x = np.random.default_rng(9).normal(size=(1, T, D_MODEL)).astype(np.float32)
    layer.build(x.shape)
    randomize(layer, 10)
    inference = np.asarray(layer(x))[0, :, 0]  # [T]
    np.testing.assert_allclose(inference, mha(layer, x)[0, :, 0], atol=1e-4)
    training = np.asarray(layer(np.repeat(x, DROPOUT_DRAWS, axis=0), training=True))[:, :, 0]  # [N, T]
    assert not np.allclose(training, inference, atol=1e-3), "dropout=0.5 dropped nothing with training=True"
    z = (training.mean(axis=0) - inference) / (training.std(axis=0, ddof=1) / np.sqrt(DROPOUT_DRAWS))
    assert stats.chi2.sf(np.sum(z**2), df=T) > DROPOUT_ALPHA, f"mean training output - inference output, in SEs: {z}"


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_kv_cache_step_equals_recomputation(transformer, positional):
    model, _ = _model(transformer, 6, positional=positional)
    tokens = np.random.default_rng(7).integers(0, V, size=(B, C)).astype(np.int32)
    full = np.asarray(model(tokens))
    pieces, state = [], None
    for start, stop in ((0, 3), (3, 4), (4, 5), (5, 8)):  # a prompt, two single tokens, then three at once
        logits, state = model.step(tokens[:, start:stop], state)
        assert state["position"] == stop
        pieces.append(np.asarray(logits))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-5)
