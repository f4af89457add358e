"""Part 4 reference: mask, attention and positions against the judge's numpy oracles, the attention layer and the block
against Keras's own layers with copied weights, the language model against a numpy/Keras composition, causality, tying,
the key/value cache against full recomputation, gradients, dropout and argument checks."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from assignment.transformer import (  # noqa: E402
    MultiHeadSelfAttention,
    TransformerBlock,
    TransformerLanguageModel,
    causal_mask,
    merge_heads,
    positional_encoding,
    scaled_dot_product_attention,
    split_heads,
    update_cache,
)
from autograder.judge.hidden import oracles  # noqa: E402

CONFIG = {"vocab_size": 19, "context_length": 10, "d_model": 16, "num_heads": 4, "num_layers": 2}


def make_model(seed: int = 0, **overrides) -> TransformerLanguageModel:
    keras.utils.set_random_seed(seed)
    model = TransformerLanguageModel(**{**CONFIG, **overrides})
    model(tf.zeros([1, 1], tf.int32))
    return model


def randomize(layer: keras.layers.Layer, rng: np.random.Generator, scale: float = 0.3) -> None:
    """Give every weight (also LayerNorm's gamma/beta and the zero-initialised biases) random non-trivial values."""
    for variable in layer.weights:
        base = 1.0 if variable.path.endswith("gamma") else 0.0
        variable.assign(base + rng.normal(0.0, scale, variable.shape).astype(np.float32))


# ---------------------------------------------------------------------------------------------------- oracles
def np_layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def keras_attention(layer: MultiHeadSelfAttention) -> keras.layers.MultiHeadAttention:
    """keras.layers.MultiHeadAttention holding the weights of `layer` (same einsum layouts)."""
    oracle = keras.layers.MultiHeadAttention(num_heads=layer.num_heads, key_dim=layer.head_dim)
    x = tf.zeros([1, 1, layer.d_model])
    oracle(x, x)
    for name in ("query", "key", "value", "output"):
        dense = getattr(oracle, f"_{name}_dense")
        dense.kernel.assign(getattr(layer, f"{name}_kernel"))
        dense.bias.assign(getattr(layer, f"{name}_bias"))
    return oracle


def block_oracle(block: TransformerBlock, x: np.ndarray) -> np.ndarray:
    """The handout's pre-LN block written with numpy LayerNorm, Keras's attention and numpy Dense + exact gelu."""
    from scipy.special import erf

    mha = keras_attention(block.attention)
    n1 = np_layer_norm(x, block.norm1.gamma.numpy(), block.norm1.beta.numpy()).astype(np.float32)
    x = x + np.asarray(mha(n1, n1, use_causal_mask=True))
    n2 = np_layer_norm(x, block.norm2.gamma.numpy(), block.norm2.beta.numpy())
    z = n2 @ block.mlp_hidden.kernel.numpy() + block.mlp_hidden.bias.numpy()
    hidden = 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))
    return x + hidden @ block.mlp_output.kernel.numpy() + block.mlp_output.bias.numpy()


# ---------------------------------------------------------------------------------------------------- mask, attention
@pytest.mark.parametrize("length", [0, 1, 2, 5, 9])
def test_causal_mask_is_lower_triangular_bool(length):
    mask = causal_mask(length).numpy()
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, np.tril(np.ones((length, length), dtype=bool)))


@pytest.mark.parametrize("length", [-1, 2.5, True])
def test_causal_mask_rejects_bad_lengths(length):
    with pytest.raises(ValueError, match="length"):
        causal_mask(length)


def test_attention_matches_the_formula_with_a_broadcast_causal_mask():
    rng = np.random.default_rng(1)
    q, k, v = (rng.normal(0, 1.5, s).astype(np.float32) for s in ((2, 3, 6, 4), (2, 3, 6, 4), (2, 3, 6, 5)))
    mask = np.tril(np.ones((6, 6), dtype=bool))
    output, weights = scaled_dot_product_attention(q, k, v, tf.constant(mask))
    expected_output, expected_weights = oracles.attention(q, k, v, mask)
    assert output.shape == (2, 3, 6, 5) and weights.shape == (2, 3, 6, 6)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
    np.testing.assert_allclose(output, expected_output, atol=1e-5)
    assert np.all(weights.numpy()[:, :, ~mask] == 0.0)
    np.testing.assert_allclose(weights.numpy().sum(-1), 1.0, atol=1e-6)


def test_attention_without_mask_and_with_more_keys_than_queries():
    rng = np.random.default_rng(2)
    q, k, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 7, 4)), rng.normal(size=(2, 7, 3))
    q, k, v = (a.astype(np.float32) for a in (q, k, v))
    output, weights = scaled_dot_product_attention(q, k, v)
    expected_output, expected_weights = oracles.attention(q, k, v, None)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
    np.testing.assert_allclose(output, expected_output, atol=1e-5)
    # An offset mask as used with a cache of 4 positions: query t sees keys 0 .. 4 + t.
    mask = np.arange(7)[None, :] <= np.arange(3)[:, None] + 4
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    np.testing.assert_allclose(output, oracles.attention(q, k, v, mask)[0], atol=1e-5)
    assert np.all(weights.numpy()[:, ~mask] == 0.0)


def test_attention_with_one_visible_key_copies_its_value():
    # Query 0 of a causal mask sees only key 0, so its weights are [1, 0, ...] and its output is v[0],
    # however large the other scores are.
    q = np.full((1, 3, 2), 50.0, np.float32)
    k = np.array([[[-1.0, -1.0], [5.0, 5.0], [9.0, 9.0]]], np.float32)
    v = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], np.float32)
    output, weights = scaled_dot_product_attention(q, k, v, causal_mask(3))
    np.testing.assert_array_equal(weights[0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(output[0, 0], [1.0, 2.0])


# ---------------------------------------------------------------------------------------------------- positions
@pytest.mark.parametrize("length, d_model", [(6, 4), (50, 16), (3, 7), (0, 4)])
def test_positional_encoding_matches_the_formula(length, d_model):
    pe = positional_encoding(length, d_model)
    assert pe.dtype == tf.float32 and pe.shape == (length, d_model)
    np.testing.assert_allclose(pe, oracles.positional_encoding(length, d_model), atol=1e-6)


@pytest.mark.parametrize("length, d_model", [(-1, 4), (4, 0), (4, 2.0)])
def test_positional_encoding_rejects_bad_arguments(length, d_model):
    with pytest.raises(ValueError, match="length|d_model"):
        positional_encoding(length, d_model)


# ---------------------------------------------------------------------------------------------------- attention layer
def test_heads_move_before_time_and_back():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # [B, T, H, hd]
    heads = split_heads(x)
    np.testing.assert_array_equal(heads, np.transpose(x, (0, 2, 1, 3)))
    np.testing.assert_array_equal(merge_heads(heads), x)


def test_attention_layer_weights_have_the_prescribed_names_and_shapes():
    layer = MultiHeadSelfAttention(12, 3)
    layer(tf.zeros([1, 2, 12]))
    shapes = {v.path.split("/")[-1]: tuple(v.shape) for v in layer.weights}
    assert shapes == {
        "query_kernel": (12, 3, 4), "key_kernel": (12, 3, 4), "value_kernel": (12, 3, 4),
        "query_bias": (3, 4), "key_bias": (3, 4), "value_bias": (3, 4),
        "output_kernel": (3, 4, 12), "output_bias": (12,),
    }


def test_attention_layer_equals_keras_multi_head_attention():
    rng = np.random.default_rng(3)
    layer = MultiHeadSelfAttention(16, 4)
    x = rng.normal(size=(2, 7, 16)).astype(np.float32)
    layer(x[:, :1])
    randomize(layer, rng)
    expected = keras_attention(layer)(x, x, use_causal_mask=True)
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)


def test_attention_layer_with_a_cache_equals_keras_on_the_whole_sequence():
    rng = np.random.default_rng(4)
    layer = MultiHeadSelfAttention(8, 2)
    x = rng.normal(size=(3, 6, 8)).astype(np.float32)
    layer(x[:, :1])
    randomize(layer, rng)
    expected = np.asarray(keras_attention(layer)(x, x, use_causal_mask=True))
    # The keys and values of all 6 positions, [B, H, T, hd], straight from the einsum kernels.
    keys = np.einsum("btd,dhk->bhtk", x, layer.key_kernel.numpy()) + layer.key_bias.numpy()[None, :, None, :]
    values = np.einsum("btd,dhk->bhtk", x, layer.value_kernel.numpy()) + layer.value_bias.numpy()[None, :, None, :]
    cache = {"key": tf.zeros([3, 2, 8, 4]), "value": tf.zeros([3, 2, 8, 4])}  # capacity C = 8, S = 0
    outputs = []
    for start, stop in ((0, 2), (2, 3), (3, 6)):
        y, cache = layer(x[:, start:stop], cache=cache, start=start)
        outputs.append(y)
        assert cache["key"].shape == cache["value"].shape == (3, 2, 8, 4)
        # Positions < stop hold their keys and values; the rest of the capacity is still zero.
        np.testing.assert_allclose(cache["key"][:, :, :stop], keys[:, :, :stop], atol=1e-5)
        np.testing.assert_allclose(cache["value"][:, :, :stop], values[:, :, :stop], atol=1e-5)
        assert not np.any(cache["key"][:, :, stop:]) and not np.any(cache["value"][:, :, stop:])
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), expected, atol=1e-5)


def test_update_cache_writes_the_new_positions_and_keeps_the_rest():
    rng = np.random.default_rng(12)
    cache = rng.normal(size=(2, 3, 7, 4)).astype(np.float32)
    new = rng.normal(size=(2, 3, 2, 4)).astype(np.float32)
    updated = update_cache(tf.constant(cache), tf.constant(new), tf.constant(4)).numpy()
    expected = cache.copy()
    expected[:, :, 4:6] = new
    np.testing.assert_array_equal(updated, expected)  # exact: the one-hot products add zeros only


def test_attention_layer_is_causal():
    rng = np.random.default_rng(5)
    layer = MultiHeadSelfAttention(8, 2)
    x = rng.normal(size=(1, 6, 8)).astype(np.float32)
    later = x.copy()
    later[:, 3:] += rng.normal(size=(1, 3, 8)).astype(np.float32)
    first = x.copy()
    first[:, 0] += 1.0
    layer(x[:, :1])
    randomize(layer, rng)  # at its small initial scale the first position barely moves the last output
    base = layer(x).numpy()
    np.testing.assert_allclose(layer(later).numpy()[:, :3], base[:, :3], atol=1e-6)
    assert np.abs(layer(first).numpy()[:, -1] - base[:, -1]).max() > 1e-3


def test_attention_layer_rejects_bad_arguments():
    for args in ((10, 3), (0, 1), (8, 0), (8, 2, 1.0)):
        with pytest.raises(ValueError, match="d_model|num_heads|dropout"):
            MultiHeadSelfAttention(*args)
    layer = MultiHeadSelfAttention(8, 2)
    with pytest.raises(ValueError, match="d_model"):
        layer(tf.zeros([1, 2, 6]))
    with pytest.raises(ValueError, match="cache"):
        layer(tf.zeros([1, 2, 8]), cache={"key": tf.zeros([1, 2, 0, 4])})


# ---------------------------------------------------------------------------------------------------- block, model
def test_block_is_pre_layer_norm_attention_then_mlp_with_residuals():
    rng = np.random.default_rng(6)
    block = TransformerBlock(16, 4)
    x = rng.normal(size=(2, 5, 16)).astype(np.float32)
    block(x)
    randomize(block, rng)
    np.testing.assert_allclose(block(x), block_oracle(block, x), atol=1e-4)


def test_model_forward_equals_embedding_blocks_norm_and_tied_output():
    rng = np.random.default_rng(7)
    model = make_model(positional="sinusoidal")
    randomize(model, rng)
    tokens = rng.integers(0, CONFIG["vocab_size"], (2, 7)).astype(np.int32)
    table = model.token_embedding.embeddings.numpy()
    h = table[tokens] + oracles.positional_encoding(7, CONFIG["d_model"])
    for block in model.blocks:
        h = block_oracle(block, h.astype(np.float32))
    h = np_layer_norm(h, model.final_norm.gamma.numpy(), model.final_norm.beta.numpy())
    expected = h @ table.T + model.output_bias.numpy()
    np.testing.assert_allclose(model(tokens), expected, atol=1e-4, rtol=1e-4)


def test_output_layer_is_tied_to_the_token_embedding():
    model = make_model()
    vocab, d_model = CONFIG["vocab_size"], CONFIG["d_model"]
    assert sorted(tuple(v.shape) for v in model.weights if vocab in v.shape) == [(vocab,), (vocab, d_model)]
    token = 4
    tokens = np.array([[0, 1, 2, 3, 5, 6]], np.int32)  # token 4 is absent, so its row only feeds its own logit
    delta = np.random.default_rng(8).normal(size=d_model).astype(np.float32)
    table = model.token_embedding.embeddings
    before = model(tokens).numpy()
    table.assign(table.numpy() + np.eye(vocab, dtype=np.float32)[:, [token]] * delta)
    after = model(tokens).numpy()
    np.testing.assert_allclose(np.delete(after, token, -1), np.delete(before, token, -1), atol=1e-6)
    # logits[..., token] = h . E[token] + b[token] with h unchanged, so the change is exactly h . delta.
    change = after[..., token] - before[..., token]
    assert np.abs(change).max() > 1e-3
    table.assign(table.numpy() + np.eye(vocab, dtype=np.float32)[:, [token]] * delta)
    np.testing.assert_allclose(model(tokens).numpy()[..., token] - before[..., token], 2 * change, atol=1e-4)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_model_is_causal(positional):
    rng = np.random.default_rng(9)
    model = make_model(positional=positional)
    randomize(model, rng, scale=0.1)  # at its small initial scale the first token barely moves the last logits
    tokens = rng.integers(0, CONFIG["vocab_size"], (1, 8)).astype(np.int32)
    later, first = tokens.copy(), tokens.copy()
    later[0, 5:] = (later[0, 5:] + 1) % CONFIG["vocab_size"]
    first[0, 0] = (first[0, 0] + 1) % CONFIG["vocab_size"]
    base = model(tokens).numpy()
    np.testing.assert_allclose(model(later).numpy()[:, :5], base[:, :5], atol=1e-5)
    assert np.abs(model(later).numpy()[:, 5] - base[:, 5]).max() > 1e-3
    assert np.abs(model(first).numpy()[:, -1] - base[:, -1]).max() > 1e-3


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_kv_cache_step_equals_full_recompute(positional):
    rng = np.random.default_rng(10)
    model = make_model(seed=1, positional=positional)
    randomize(model, rng, scale=0.1)
    tokens = rng.integers(0, CONFIG["vocab_size"], (3, CONFIG["context_length"])).astype(np.int32)
    full = model(tokens).numpy()
    state = model.initial_state(3)  # caches with S = 0
    chunks = []
    for start, stop in ((0, 3), (3, 4), (4, 6), (6, 7), (7, 10)):
        logits, state = model.step(tokens[:, start:stop], state)
        chunks.append(logits.numpy())
        assert state["position"] == stop
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), full, atol=1e-5)
    # state=None starts from an empty cache as well.
    logits, state = model.step(tokens[:, :4])
    np.testing.assert_allclose(logits, full[:, :4], atol=1e-5)
    logits, _ = model.step(tokens[:, 4:5], state)
    np.testing.assert_allclose(logits, full[:, 4:5], atol=1e-5)


def test_step_before_the_first_call_builds_the_model():
    keras.utils.set_random_seed(0)
    model = TransformerLanguageModel(**CONFIG)
    logits, state = model.step(np.array([[1, 2, 3]], np.int32))
    assert logits.shape == (1, 3, CONFIG["vocab_size"]) and state["position"] == 3
    np.testing.assert_allclose(logits, model(np.array([[1, 2, 3]], np.int32)), atol=1e-5)


class NumpyFunctionModel(TransformerLanguageModel):
    """A cached_forward with an operation XLA cannot compile (a numpy function): step must still work."""

    def cached_forward(self, tokens, caches, start):
        logits, caches = super().cached_forward(tokens, caches, start)
        return tf.numpy_function(lambda a: a, [logits], tf.float32, stateful=False), caches


def test_step_falls_back_to_a_plain_graph_when_xla_cannot_compile():
    keras.utils.set_random_seed(0)
    model = NumpyFunctionModel(**CONFIG)
    tokens = np.array([[1, 2, 3, 4]], np.int32)
    full = model(tokens).numpy()
    logits, state = model.step(tokens[:, :3])
    assert model.jit_decode
    with pytest.warns(RuntimeWarning, match="XLA cannot compile cached_forward .*PyFunc"):
        logits, _ = model.step(tokens[:, 3:], state)  # the first one-token step meets the XLA error and says so
    np.testing.assert_allclose(np.reshape(logits, full[:, 3:].shape), full[:, 3:], atol=1e-5)
    assert not model.jit_decode
    logits, _ = model.step(tokens[:, 3:], state)  # the second one goes straight to the plain graph
    np.testing.assert_allclose(np.reshape(logits, full[:, 3:].shape), full[:, 3:], atol=1e-5)


class RecordingModel(TransformerLanguageModel):
    """Records whether each run of cached_forward executes eagerly."""

    def cached_forward(self, tokens, caches, start):
        self.eager_runs.append(tf.executing_eagerly())
        return super().cached_forward(tokens, caches, start)


def test_step_runs_eagerly_once_functions_run_eagerly_for_debugging():
    keras.utils.set_random_seed(0)
    model = RecordingModel(**CONFIG)
    model.eager_runs = []
    tf.config.run_functions_eagerly(True)
    try:
        _, state = model.step(np.array([[1, 2]], np.int32))
        for _ in range(2):
            _, state = model.step(np.array([[3]], np.int32), state)
    finally:
        tf.config.run_functions_eagerly(False)
    assert model.eager_runs == [True, True, True]
    model.eager_runs.clear()
    for _ in range(2):
        _, state = model.step(np.array([[3]], np.int32), state)
    assert model.eager_runs == [False]  # traced once, then the compiled step


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_a_checkpoint_of_the_model_restores_every_weight_into_a_fresh_one(tmp_path, dropout):
    from assignment.runs import check_checkpointable

    model = make_model(seed=3, dropout=dropout)
    randomize(model, np.random.default_rng(13))
    check_checkpointable(model)  # every block's weights are reachable: the blocks are a tuple, not a list
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    fresh = make_model(seed=4, dropout=dropout)
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    assert [v.path.split("/", 1)[1] for v in fresh.weights] == [v.path.split("/", 1)[1] for v in model.weights]
    for saved, restored in zip(model.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy(), err_msg=saved.path)
    tokens = np.array([[3, 1, 4, 1, 5]], np.int32)
    np.testing.assert_array_equal(fresh(tokens), model(tokens))


def test_learned_positions_are_the_default_of_the_model_and_of_the_train_command():
    import inspect

    from assignment import trainer

    default = inspect.signature(TransformerLanguageModel).parameters["positional"].default
    assert default == trainer.build_parser().get_default("positional") == "learned"
    assert make_model().position_embedding is not None


def test_more_than_context_length_positions_raise_value_error():
    model = make_model()
    n = CONFIG["context_length"]
    with pytest.raises(ValueError, match="context_length"):
        model(np.zeros((1, n + 1), np.int32))
    _, state = model.step(np.zeros((1, n - 1), np.int32))
    _, full = model.step(np.zeros((1, 1), np.int32), state)  # exactly context_length positions is fine
    with pytest.raises(ValueError, match="context_length"):
        model.step(np.zeros((1, 1), np.int32), full)
    with pytest.raises(ValueError, match="context_length"):
        model.step(np.zeros((1, 2), np.int32), state)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_gradients_reach_every_variable(positional):
    model = make_model(positional=positional)
    n, vocab = CONFIG["context_length"], CONFIG["vocab_size"]
    tokens = np.random.default_rng(11).integers(0, vocab, (2, n)).astype(np.int32)
    with tf.GradientTape() as tape:
        logits = model(tokens, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(np.roll(tokens, -1, 1), logits, True))
    grads = tape.gradient(loss, model.trainable_variables)
    names = [v.path for v in model.trainable_variables]
    assert len(names) == 2 + CONFIG["num_layers"] * 16 + 2 + (positional == "learned")
    for name, grad in zip(names, grads, strict=True):
        assert grad is not None, name
        assert float(tf.norm(tf.convert_to_tensor(grad))) > 0.0, name


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_model_runs_inside_tf_function_with_unknown_shapes(positional):
    model = make_model(positional=positional)
    tokens = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]], np.int32)
    traced = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, None], tf.int32)])
    np.testing.assert_allclose(traced(tokens), model(tokens), atol=1e-5)


def test_dropout_is_only_active_in_training():
    model = make_model(dropout=0.5)
    tokens = np.array([[3, 1, 4, 1, 5, 9, 2, 6]], np.int32)
    inference = model(tokens).numpy()
    np.testing.assert_array_equal(model(tokens, training=False), inference)
    np.testing.assert_allclose(model.step(tokens)[0], inference, atol=1e-5)
    # Same weights without dropout: inference must be identical, training must differ.
    keras.utils.set_random_seed(0)
    plain = TransformerLanguageModel(**CONFIG)
    plain(tf.zeros([1, 1], tf.int32))
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(plain(tokens), inference, atol=1e-6)
    assert np.abs(model(tokens, training=True).numpy() - inference).max() > 1e-3
    np.testing.assert_allclose(plain(tokens, training=True), inference, atol=1e-6)


@pytest.mark.parametrize("overrides, argument", [
    ({"d_model": 10, "num_heads": 4}, "d_model"),
    ({"positional": "rotary"}, "positional"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"context_length": -3}, "context_length"),
    ({"num_layers": 0}, "num_layers"),
    ({"num_heads": 2.0}, "num_heads"),
    ({"dropout": 1.5}, "dropout"),
])
def test_model_rejects_bad_arguments(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        TransformerLanguageModel(**{**CONFIG, **overrides})


def test_model_rejects_tokens_that_are_not_a_batch_of_sequences():
    with pytest.raises(ValueError, match="tokens"):
        make_model()(np.zeros((4,), np.int32))


def test_config_round_trip_and_attributes():
    model = make_model(positional="learned", dropout=0.1)
    assert model.context_length == CONFIG["context_length"]
    assert isinstance(model.token_embedding, keras.layers.Embedding)
    config = model.get_config()
    assert {k: config[k] for k in CONFIG} == CONFIG and config["positional"] == "learned" and config["dropout"] == 0.1
    clone = TransformerLanguageModel.from_config(config)
    clone(tf.zeros([1, 1], tf.int32))
    assert [tuple(v.shape) for v in clone.weights] == [tuple(v.shape) for v in model.weights]


# ---------------------------------------------------------------------------------------------------- probes
def test_autograder_probes_run_on_the_reference():
    pytest.importorskip("autograder.worker.probes.registry")
    from autograder.worker.probes import transformer as probes
    from autograder.worker.probes.call import call

    class Reference:
        def module(self, name):
            import importlib

            return importlib.import_module(f"assignment.{name}")

    sub, rng = Reference(), np.random.default_rng(12)
    masks = [call(sub, module="transformer", function="causal_mask", args=[n])["value"] for n in (1, 3)]
    assert [m.tolist() for m in masks] == [[[True]], np.tril(np.ones((3, 3), bool)).tolist()]
    q, k, v = (rng.normal(size=(2, 4, 3)).astype(np.float32) for _ in range(3))
    mask = np.tril(np.ones((4, 4), bool))
    reply = probes.attention(sub, q=q, k=k, v=v, mask=mask)
    np.testing.assert_allclose(reply["output"], oracles.attention(q, k, v, mask)[0], atol=1e-5)
    np.testing.assert_allclose(call(sub, module="transformer", function="positional_encoding", args=[5, 6])["value"],
                               oracles.positional_encoding(5, 6), atol=1e-6)
    layer = MultiHeadSelfAttention(8, 2)
    layer(tf.zeros([1, 1, 8]))
    randomize(layer, rng)
    weights = {v.path.split("/")[-1]: v.numpy() for v in layer.weights}
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    y = probes.mha_forward(sub, d_model=8, num_heads=2, weights=weights, x=x)["y"]
    np.testing.assert_allclose(y, keras_attention(layer)(x, x, use_causal_mask=True), atol=1e-5)
    config = dict(CONFIG, positional="learned")
    tokens = rng.integers(0, config["vocab_size"], (2, 8)).astype(np.int32)
    reply = probes.kv_cache(sub, config=config, seed=0, tokens=tokens, prefix=3)
    np.testing.assert_allclose(reply["cached"], reply["full"], atol=1e-5)
    assert probes.too_long(sub, config=CONFIG, seed=0) == {"error": "ValueError"}
    logits = probes.tied_embedding(sub, config=CONFIG, seed=0, tokens=np.array([[1, 2]], np.int32), token=0,
                                   delta=np.ones(CONFIG["d_model"], np.float32))["logits"]
    np.testing.assert_allclose(logits[2, ..., 1:], logits[0, ..., 1:], atol=1e-5)
