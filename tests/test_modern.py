"""Part 6 reference against oracles written elsewhere, with copied weights: RMSNorm against
keras.layers.RMSNormalization, the rotary embedding against KerasHub's RotaryEmbedding, grouped-query attention against
keras.layers.GroupQueryAttention (its head-repeat order) and, for H_kv = H, part 4's MultiHeadSelfAttention, the
block and the whole model against KerasHub's Llama decoder layer and backbone (with their key/value cache), AdamW
against keras.optimizers.AdamW step by step, the schedule against keras's CosineDecay with warmup. Where no oracle fits,
properties: RoPE keeps norms and q.k depends on the position difference only; cached decoding equals recomputation
(past the context too, through the given generation code); the cache is H / H_kv times smaller; bad arguments are
one-line ValueErrors naming the argument.

The KerasHub oracles (development only: requirements-dev.txt) are skipped when keras_hub is not installed.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from assignment.modern import (  # noqa: E402
    GroupedQueryAttention,
    ModernBlock,
    ModernLanguageModel,
    RMSNorm,
    SwiGLU,
    rotary_embedding,
    swiglu_hidden_dim,
)
from assignment.optim import AdamW, WarmupCosineSchedule  # noqa: E402
from assignment.samplers import generate  # noqa: E402
from assignment.transformer import MultiHeadSelfAttention  # noqa: E402

CONFIG = {"vocab_size": 19, "context_length": 10, "d_model": 16, "num_heads": 4, "num_kv_heads": 2, "num_layers": 2}
KV_HEADS = [1, 2, 4]  # H_kv = 1 (multi-query), H / 2, H (multi-head) for H = 4


def make_model(seed: int = 0, **overrides) -> ModernLanguageModel:
    keras.utils.set_random_seed(seed)
    model = ModernLanguageModel(**{**CONFIG, **overrides})
    model(tf.zeros([1, 1], tf.int32))
    return model


def randomize(layer: keras.layers.Layer, rng: np.random.Generator, scale: float = 0.3) -> None:
    """Give every weight random non-trivial values (norm scales around 1)."""
    for variable in layer.weights:
        base = 1.0 if variable.path.endswith("scale") else 0.0
        variable.assign(base + rng.normal(0.0, scale, variable.shape).astype(np.float32))


def attention_layer(num_kv_heads: int, rng: np.random.Generator, d_model: int = 16, num_heads: int = 4,
                    **kwargs) -> GroupedQueryAttention:
    layer = GroupedQueryAttention(d_model, num_heads, num_kv_heads, **kwargs)
    layer.build((None, None, d_model))
    randomize(layer, rng)
    return layer


def max_difference(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ---------------------------------------------------------------------------------------------------- RMSNorm
@pytest.mark.parametrize("shape, epsilon", [((2, 5, 16), 1e-6), ((3, 8), 1e-5), ((1, 2, 3, 4), 0.1)])
def test_rms_norm_equals_keras_rms_normalization(shape, epsilon):
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 2.0, shape).astype(np.float32)
    ours = RMSNorm(epsilon)
    ours.build(shape)
    ours.scale.assign(rng.normal(1.0, 0.3, shape[-1:]).astype(np.float32))
    oracle = keras.layers.RMSNormalization(axis=-1, epsilon=epsilon)
    oracle.build(shape)
    oracle.scale.assign(ours.scale)
    assert [w.path.rsplit("/", 1)[1] for w in ours.weights] == ["scale"] and ours.scale.shape == (shape[-1],)
    assert max_difference(ours(x), oracle(x)) < 1e-6


def test_rms_norm_scale_starts_at_one_and_the_statistics_are_float32():
    norm = RMSNorm(dtype="float16")
    out = norm(tf.constant(np.full((1, 4), 300.0, np.float16)))  # x^2 = 90000 overflows float16 (max 65504)
    np.testing.assert_array_equal(norm.scale.numpy(), np.ones(4))
    assert out.dtype == tf.float16
    np.testing.assert_allclose(out.numpy().astype(np.float32), np.ones((1, 4)), rtol=1e-3)


# ---------------------------------------------------------------------------------------------------- RoPE
@pytest.mark.parametrize("head_dim, theta", [(2, 10000.0), (8, 10000.0), (16, 500.0), (16, 1e6)])
def test_rotary_embedding_equals_keras_hub_rotary_embedding(head_dim, theta):
    keras_hub = pytest.importorskip("keras_hub")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5, head_dim)).astype(np.float32)  # [B, H, T, hd]
    positions = np.array([0, 1, 7, 63, 1000], np.int32)
    ours = rotary_embedding(x, positions, theta)
    oracle = keras_hub.layers.RotaryEmbedding(max_wavelength=theta)  # layout [B, T, H, hd]
    expected = np.transpose(oracle(np.transpose(x, [0, 2, 1, 3]), positions=positions), [0, 2, 1, 3])
    assert max_difference(ours, expected) < 1e-4  # float32 angles up to 1000 rad on both sides
    shifted = oracle(np.transpose(x, [0, 2, 1, 3]), start_index=4)  # positions 4 .. 8
    assert max_difference(rotary_embedding(x, np.arange(4, 9), theta), np.transpose(shifted, [0, 2, 1, 3])) < 1e-5


def test_rotary_embedding_pairs_the_two_halves():
    x = np.zeros((1, 1, 1, 8), np.float32)
    x[..., 1] = 1.0  # feature 1 pairs with feature 1 + 4 = 5
    out = rotary_embedding(x, np.array([3], np.int32), theta=10000.0).numpy()[0, 0, 0]
    angle = 3 * 10000.0 ** (-2 / 8)
    np.testing.assert_allclose(out, [0, math.cos(angle), 0, 0, 0, math.sin(angle), 0, 0], atol=1e-6)
    assert rotary_embedding(x, np.array([0], np.int32)).numpy().tolist() == x.tolist()  # position 0: identity


def test_rotary_embedding_keeps_norms_and_scores_depend_on_the_position_difference_only():
    rng = np.random.default_rng(2)
    q, k = (rng.normal(size=(1, 1, 1, 16)).astype(np.float32) for _ in range(2))
    many = rotary_embedding(np.repeat(q, 50, axis=2), np.arange(50) * 37)
    np.testing.assert_allclose(np.linalg.norm(many, axis=-1), np.linalg.norm(q), rtol=1e-5)
    halves = np.hypot(many[..., :8], many[..., 8:])  # every pair keeps its length, not just the vector
    np.testing.assert_allclose(halves, np.broadcast_to(np.hypot(q[..., :8], q[..., 8:]), halves.shape), rtol=1e-4)

    def score(m: int, n: int) -> float:
        return float(np.sum(rotary_embedding(q, [m]) * rotary_embedding(k, [n])))

    for m, n in ((5, 2), (2, 5), (9, 9)):
        for shift in (1, 13, 200):
            assert abs(score(m + shift, n + shift) - score(m, n)) < 1e-4
    assert abs(score(5, 2) - score(5, 3)) > 1e-3  # ... and does depend on it


def test_rotary_embedding_keeps_the_dtype_and_runs_in_tf_function():
    x = tf.random.stateless_normal([2, 2, 3, 4], seed=[1, 2], dtype=tf.float16)
    assert rotary_embedding(x, tf.range(3)).dtype == tf.float16
    traced = tf.function(rotary_embedding, input_signature=[tf.TensorSpec([None, None, None, 4]),
                                                            tf.TensorSpec([None], tf.int32)])
    x = tf.cast(x, tf.float32)
    np.testing.assert_allclose(traced(x, tf.range(3) + 2), rotary_embedding(x, tf.range(3) + 2), atol=1e-6)


# ---------------------------------------------------------------------------------------------------- SwiGLU
def test_swiglu_is_down_of_silu_gate_times_up_without_biases():
    rng = np.random.default_rng(3)
    mlp = SwiGLU(8, 24)
    mlp.build((None, 8))
    randomize(mlp, rng)
    assert [(w.path.split("/", 1)[1], tuple(w.shape)) for w in mlp.weights] == [
        ("gate/kernel", (8, 24)), ("up/kernel", (8, 24)), ("down/kernel", (24, 8))]
    x = rng.normal(size=(2, 3, 8)).astype(np.float32)
    gate, up, down = (w.numpy().astype(np.float64) for w in mlp.weights)
    z = x @ gate
    expected = (z / (1.0 + np.exp(-z)) * (x @ up)) @ down
    assert max_difference(mlp(x), expected) < 1e-5


@pytest.mark.parametrize("d_model, expected", [(16, 64), (128, 352), (4096, 10944), (96, 256)])
def test_swiglu_hidden_dim_is_llamas_rule(d_model, expected):
    assert swiglu_hidden_dim(d_model) == expected
    assert swiglu_hidden_dim(4096, 256) == 11008 and swiglu_hidden_dim(10, 1) == 26  # 11008: Llama 7B's F


# ---------------------------------------------------------------------------------------------------- attention
@pytest.mark.parametrize("num_kv_heads", KV_HEADS)
def test_attention_at_position_zero_equals_keras_grouped_query_attention(num_kv_heads):
    """With every position 0, RoPE is the identity: what is left is Keras's GQA (use_bias=False) with the same
    kernels, whose tf.repeat pairs query head j with key/value head j // (H / H_kv)."""
    rng = np.random.default_rng(4)
    layer = attention_layer(num_kv_heads, rng)
    x = rng.normal(size=(2, 7, 16)).astype(np.float32)
    oracle = keras.layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=num_kv_heads,
                                                use_bias=False)
    oracle(x, x)
    for name in ("query", "key", "value", "output"):
        getattr(oracle, f"_{name}_dense").kernel.assign(getattr(layer, f"{name}_kernel"))
    expected = oracle(x, x, use_causal_mask=True)
    ours = layer(x, positions=tf.zeros([7], tf.int32))
    assert max_difference(ours, expected) < 1e-5
    if 1 < num_kv_heads < 4:  # tiling the key/value heads (head j -> j % H_kv) would pair them differently
        tiled = GroupedQueryAttention(16, 4, 4)
        tiled.build((None, None, 16))
        for name in ("query", "output"):
            getattr(tiled, f"{name}_kernel").assign(getattr(layer, f"{name}_kernel"))
        for name in ("key", "value"):
            getattr(tiled, f"{name}_kernel").assign(np.tile(getattr(layer, f"{name}_kernel").numpy(), [1, 2, 1]))
        assert max_difference(tiled(x, positions=tf.zeros([7], tf.int32)), expected) > 1e-3


def test_attention_with_as_many_kv_heads_as_heads_equals_part_4_multi_head_attention():
    rng = np.random.default_rng(5)
    layer = attention_layer(4, rng)
    mhsa = MultiHeadSelfAttention(16, 4)
    mhsa.build((None, None, 16))
    for name in ("query", "key", "value", "output"):
        getattr(mhsa, f"{name}_kernel").assign(getattr(layer, f"{name}_kernel"))  # the biases stay zero
    x = rng.normal(size=(2, 6, 16)).astype(np.float32)
    assert max_difference(layer(x, positions=tf.zeros([6], tf.int32)), mhsa(x)) < 1e-5
    # RoPE applied to q and k, by hand, makes part 4's attention that of the layer at positions 0 .. T - 1.
    q = rotary_embedding(tf.transpose(tf.einsum("btd,dhk->bthk", x, layer.query_kernel), [0, 2, 1, 3]), tf.range(6))
    k = rotary_embedding(tf.transpose(tf.einsum("btd,dhk->bthk", x, layer.key_kernel), [0, 2, 1, 3]), tf.range(6))
    v = tf.transpose(tf.einsum("btd,dhk->bthk", x, layer.value_kernel), [0, 2, 1, 3])
    from assignment.transformer import causal_mask, scaled_dot_product_attention

    attended, _ = scaled_dot_product_attention(q, k, v, causal_mask(6))
    expected = tf.einsum("bhtk,hkd->btd", attended, layer.output_kernel)
    assert max_difference(layer(x), expected) < 1e-5


def test_attention_weights_have_the_prescribed_names_shapes_and_no_biases():
    layer = GroupedQueryAttention(24, 6, 2)
    layer.build((None, None, 24))
    assert [(w.path.rsplit("/", 1)[1], tuple(w.shape)) for w in layer.weights] == [
        ("query_kernel", (24, 6, 4)), ("key_kernel", (24, 2, 4)), ("value_kernel", (24, 2, 4)),
        ("output_kernel", (6, 4, 24))]


def test_attention_output_depends_on_relative_positions_only():
    rng = np.random.default_rng(7)
    layer = attention_layer(2, rng)
    x = rng.normal(size=(1, 5, 16)).astype(np.float32)
    base = layer(x)
    assert max_difference(layer(x, positions=tf.range(5) + 17), base) < 1e-4
    assert max_difference(layer(x, positions=tf.constant([0, 2, 4, 6, 8])), base) > 1e-3


@pytest.mark.parametrize("num_kv_heads", KV_HEADS)
def test_attention_with_a_cache_equals_recomputation_and_the_cache_holds_rotated_keys(num_kv_heads):
    rng = np.random.default_rng(8)
    layer = attention_layer(num_kv_heads, rng)
    x = rng.normal(size=(2, 8, 16)).astype(np.float32)
    full = layer(x).numpy()
    empty = tf.zeros([2, num_kv_heads, 8, 4])
    cache, outputs = {"key": empty, "value": empty}, []
    for start, stop in ((0, 3), (3, 4), (4, 8)):
        y, cache = layer(x[:, start:stop], cache=cache, start=start)
        outputs.append(y.numpy())
        assert cache["key"].shape == cache["value"].shape == (2, num_kv_heads, 8, 4)
    assert max_difference(np.concatenate(outputs, axis=1), full) < 1e-5
    keys = tf.transpose(tf.einsum("btd,dhk->bthk", x, layer.key_kernel), [0, 2, 1, 3])
    assert max_difference(cache["key"], rotary_embedding(keys, tf.range(8))) < 1e-5  # RoPE'd keys, plain values
    assert max_difference(cache["value"], tf.transpose(tf.einsum("btd,dhk->bthk", x, layer.value_kernel),
                                                       [0, 2, 1, 3])) < 1e-6


# ---------------------------------------------------------------------------------------------------- KerasHub's Llama
def llama_decoder(block: ModernBlock):
    """KerasHub's LlamaTransformerDecoder holding the weights of `block`."""
    from keras_hub.src.models.llama.llama_decoder import LlamaTransformerDecoder

    oracle = LlamaTransformerDecoder(
        intermediate_dim=block.hidden_dim, num_query_heads=block.num_heads, num_key_value_heads=block.num_kv_heads,
        rope_max_wavelength=block.theta, layer_norm_epsilon=block.epsilon)
    oracle.build((None, None, block.d_model))
    copy_block(block, oracle)
    return oracle


def copy_block(block: ModernBlock, oracle) -> None:
    attention = oracle._self_attention_layer
    pairs = [(oracle._self_attention_layernorm.scale, block.attention_norm.scale),
             (attention._query_dense.kernel, block.attention.query_kernel),
             (attention._key_dense.kernel, block.attention.key_kernel),
             (attention._value_dense.kernel, block.attention.value_kernel),
             (attention._output_dense.kernel, block.attention.output_kernel),
             (oracle._feedforward_layernorm.scale, block.mlp_norm.scale),
             (oracle._feedforward_gate_dense.kernel, block.mlp.gate.kernel),
             (oracle._feedforward_intermediate_dense.kernel, block.mlp.up.kernel),
             (oracle._feedforward_output_dense.kernel, block.mlp.down.kernel)]
    for theirs, ours in pairs:
        theirs.assign(ours)
    assert len(oracle.weights) == len(pairs) == len(block.weights)  # every weight of either side is mapped


@pytest.mark.parametrize("num_kv_heads", KV_HEADS)
def test_block_equals_keras_hub_llama_decoder_layer_with_and_without_a_cache(num_kv_heads):
    pytest.importorskip("keras_hub")
    rng = np.random.default_rng(9)
    block = ModernBlock(16, 4, num_kv_heads, theta=500.0)
    block.build((None, None, 16))
    randomize(block, rng)
    oracle = llama_decoder(block)
    x = rng.normal(size=(2, 9, 16)).astype(np.float32)
    assert max_difference(block(x), oracle(x)) < 1e-5
    # Cached: KerasHub's cache is [B, 2, C, H_kv, hd] (keys, values), ours {"key", "value": [B, H_kv, C, hd]}.
    ours_cache = {"key": tf.zeros([2, num_kv_heads, 9, 4]), "value": tf.zeros([2, num_kv_heads, 9, 4])}
    their_cache = tf.zeros([2, 2, 9, num_kv_heads, 4])
    for start, stop in ((0, 4), (4, 5), (5, 9)):
        ours, ours_cache = block(x[:, start:stop], cache=ours_cache, start=start)
        theirs, their_cache = oracle(x[:, start:stop], self_attention_cache=their_cache,
                                     self_attention_cache_update_index=start)
        assert max_difference(ours, theirs) < 1e-5
        assert max_difference(ours_cache["key"], tf.transpose(their_cache[:, 0], [0, 2, 1, 3])) < 1e-5
        assert max_difference(ours_cache["value"], tf.transpose(their_cache[:, 1], [0, 2, 1, 3])) < 1e-6


def test_model_equals_keras_hub_llama_backbone_with_an_untied_output():
    pytest.importorskip("keras_hub")
    from keras_hub.src.models.llama.llama_backbone import LlamaBackbone

    model = make_model(seed=1, num_layers=3, theta=2000.0)
    randomize(model, np.random.default_rng(10))
    backbone = LlamaBackbone(vocabulary_size=19, num_layers=3, num_query_heads=4, hidden_dim=16,
                             intermediate_dim=model.hidden_dim, num_key_value_heads=2, rope_max_wavelength=2000.0,
                             layer_norm_epsilon=1e-6, tie_word_embeddings=False)
    backbone.token_embedding.embeddings.assign(model.token_embedding.embeddings)
    backbone.token_embedding.reverse_embeddings.assign(model.output_layer.kernel)  # [d, V]
    for block, layer in zip(model.blocks, backbone.transformer_layers, strict=True):
        copy_block(block, layer)
    backbone.layer_norm.scale.assign(model.final_norm.scale)
    assert len(backbone.weights) == len(model.weights)
    tokens = np.random.default_rng(11).integers(0, 19, (2, 10)).astype(np.int32)
    hidden = backbone({"token_ids": tokens, "padding_mask": np.ones_like(tokens)})
    expected = backbone.token_embedding(hidden, reverse=True)
    assert max_difference(model(tokens), expected) < 1e-4


# ---------------------------------------------------------------------------------------------------- the model
@pytest.mark.parametrize("num_kv_heads", KV_HEADS)
def test_cached_step_equals_recomputation(num_kv_heads):
    rng = np.random.default_rng(12)
    model = make_model(seed=2, num_kv_heads=num_kv_heads)
    randomize(model, rng, scale=0.2)
    tokens = rng.integers(0, CONFIG["vocab_size"], (3, CONFIG["context_length"])).astype(np.int32)
    full = model(tokens).numpy()
    state, chunks = model.initial_state(3), []
    for start, stop in ((0, 3), (3, 4), (4, 6), (6, 7), (7, 10)):
        logits, state = model.step(tokens[:, start:stop], state)
        chunks.append(logits.numpy())
        assert state["position"] == stop
    assert max_difference(np.concatenate(chunks, axis=1), full) < 1e-5
    logits, _ = model.step(tokens[:, :5])  # state=None starts from an empty cache
    assert max_difference(logits, full[:, :5]) < 1e-5


class Recomputing:
    """The model seen by `generate`, checking every cached step against `call` on all tokens since the last restart."""

    def __init__(self, model: ModernLanguageModel):
        self.model, self.context_length, self.steps, self.worst = model, model.context_length, 0, 0.0

    def step(self, tokens, state=None):
        inner, seen = (None, tokens) if state is None else (state[0], tf.concat([state[1], tokens], axis=1))
        logits, inner = self.model.step(tokens, inner)
        self.worst = max(self.worst, max_difference(logits, self.model(seen)[:, -tokens.shape[1]:]))
        self.steps += 1
        return logits, (inner, seen)


@pytest.mark.parametrize("num_kv_heads", [1, 4])
def test_generation_past_the_context_equals_recomputation(num_kv_heads):
    model = make_model(seed=3, num_kv_heads=num_kv_heads)
    randomize(model, np.random.default_rng(13), scale=0.2)
    checked = Recomputing(model)
    prompt = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
    ids = generate(checked, prompt, 25, temperature=0.9, seed=4)  # 28 tokens through a context of 10: restarts
    assert ids.shape == (2, 28) and checked.steps == 25 and checked.worst < 1e-5
    np.testing.assert_array_equal(generate(model, prompt, 25, temperature=0.9, seed=4), ids)


def test_the_cache_is_heads_over_kv_heads_times_smaller():
    sizes = {}
    for num_kv_heads in KV_HEADS:
        model = make_model(num_kv_heads=num_kv_heads)
        state = model.initial_state(3)
        _, state = model.step(np.zeros((3, 2), np.int32), state)
        assert len(state["caches"]) == CONFIG["num_layers"]
        for cache in state["caches"]:
            assert cache["key"].shape == cache["value"].shape == (3, num_kv_heads, CONFIG["context_length"], 4)
        sizes[num_kv_heads] = sum(int(tf.size(t)) for cache in state["caches"] for t in cache.values())
    assert sizes[4] == 2 * sizes[2] == 4 * sizes[1]


def test_model_layers_names_and_untied_output_without_biases_or_positions():
    model = make_model()
    names = [w.path.split("/", 1)[1] for w in model.weights]
    assert names[0] == "token_embedding/embeddings" and names[-2:] == ["final_norm/scale", "output_layer/kernel"]
    assert not any("bias" in name or "position" in name for name in names)
    assert len(names) == 1 + CONFIG["num_layers"] * 9 + 2
    assert model.output_layer.kernel.shape == (16, 19) and isinstance(model.final_norm, RMSNorm)
    assert [block.name for block in model.blocks] == ["block_0", "block_1"] and isinstance(model.blocks, tuple)
    assert model.blocks[0].hidden_dim == swiglu_hidden_dim(16) == 64


def test_model_is_causal_and_runs_in_tf_function_with_unknown_shapes():
    model = make_model()
    randomize(model, np.random.default_rng(14), scale=0.2)
    tokens = np.array([[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]], np.int32)
    changed = tokens.copy()
    changed[:, 4:] = 0
    assert max_difference(model(tokens)[:, :4], model(changed)[:, :4]) < 1e-6
    traced = tf.function(lambda t: model(t), input_signature=[tf.TensorSpec([None, None], tf.int32)])
    assert max_difference(traced(tokens), model(tokens)) < 1e-5


def test_gradients_reach_every_variable():
    model = make_model()
    tokens = np.random.default_rng(15).integers(0, 19, (2, 10)).astype(np.int32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            np.roll(tokens, -1, 1), model(tokens, training=True), from_logits=True))
    for variable, grad in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables), strict=True):
        assert grad is not None and float(tf.norm(tf.convert_to_tensor(grad))) > 0.0, variable.path


def test_a_checkpoint_restores_every_weight_and_the_config_rebuilds_the_model(tmp_path):
    from assignment.runs import check_checkpointable

    model = make_model(seed=3)
    randomize(model, np.random.default_rng(16))
    check_checkpointable(model)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    fresh = ModernLanguageModel.from_config(model.get_config())
    fresh(tf.zeros([1, 1], tf.int32))
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    tokens = np.array([[3, 1, 4, 1, 5]], np.int32)
    np.testing.assert_array_equal(fresh(tokens), model(tokens))
    config = model.get_config()
    assert {k: config[k] for k in CONFIG} == CONFIG and config["hidden_dim"] == 64 and config["theta"] == 10000.0


def test_the_model_kind_builds_it_from_a_run_config():
    from assignment.models import build_model

    model = build_model({"model": "modern", **CONFIG})
    assert isinstance(model, ModernLanguageModel) and model.num_kv_heads == 2


# ---------------------------------------------------------------------------------------------------- AdamW
def keras_adamw(variables, **kwargs) -> keras.optimizers.AdamW:
    oracle = keras.optimizers.AdamW(**kwargs)
    oracle.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) < 2])
    return oracle


@pytest.mark.parametrize("weight_decay", [0.1, 0.0])
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("schedule", [False, True])
def test_adamw_equals_keras_adamw_step_by_step(weight_decay, compiled, schedule):
    rng = np.random.default_rng(17)
    shapes = [(5, 3), (3,), (2, 3, 4), (6, 2)]
    start = [rng.normal(size=shape).astype(np.float32) for shape in shapes]
    ours, theirs = [keras.Variable(x) for x in start], [keras.Variable(x) for x in start]
    rate = WarmupCosineSchedule(0.05, 3, 8, final_lr=0.005) if schedule else 0.03
    settings = {"learning_rate": rate, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-6, "weight_decay": weight_decay}
    optimizer, oracle = AdamW(**settings), keras_adamw(theirs, **settings)

    def apply_ours(gradients):
        optimizer.apply_gradients(zip(gradients, ours, strict=True))

    def apply_theirs(gradients):  # dense: Keras squares the repeated rows of a tf.IndexedSlices one by one
        oracle.apply_gradients(zip(map(tf.convert_to_tensor, gradients), theirs, strict=True))

    if compiled:
        apply_ours, apply_theirs = tf.function(apply_ours), tf.function(apply_theirs)
    worst = 0.0
    for _ in range(10):
        gradients = [tf.constant(rng.normal(size=shape).astype(np.float32)) for shape in shapes[:3]]
        gradients.append(tf.IndexedSlices(tf.constant(rng.normal(size=(3, 2)).astype(np.float32)),  # an embedding's:
                                          tf.constant([1, 4, 4]), tf.constant([6, 2])))  # rows 1 and 4 (twice)
        apply_ours(gradients)
        apply_theirs(gradients)
        worst = max(worst, *(max_difference(a, b) for a, b in zip(ours, theirs, strict=True)))
    assert worst < 1e-6 and int(optimizer.iterations) == 10
    slots = {v.path.rsplit("/", 1)[-1] for v in optimizer.variables}
    assert any(name.endswith("_momentum") for name in slots) and any(name.endswith("_velocity") for name in slots)


def test_adamw_decays_matrices_only_and_before_the_adam_step():
    matrix, vector = keras.Variable(np.full((2, 2), 2.0, np.float32)), keras.Variable(np.full((2,), 2.0, np.float32))
    optimizer = AdamW(learning_rate=0.1, weight_decay=0.5)
    optimizer.apply_gradients([(tf.zeros([2, 2]), matrix), (tf.zeros([2]), vector)])  # zero gradients: decay only
    np.testing.assert_allclose(matrix.numpy(), 2.0 * (1 - 0.1 * 0.5))
    np.testing.assert_array_equal(vector.numpy(), 2.0)
    # First step with gradient g: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1; step = lr sign(g) (eps aside)
    weight = keras.Variable(np.array([[1.0, -1.0]], np.float32))
    AdamW(learning_rate=0.01, weight_decay=0.0).apply_gradients([(tf.constant([[3.0, -0.5]]), weight)])
    np.testing.assert_allclose(weight.numpy(), [[0.99, -0.99]], atol=1e-6)


def test_adamw_state_survives_a_checkpoint(tmp_path):
    rng = np.random.default_rng(18)
    variable = keras.Variable(rng.normal(size=(3, 2)).astype(np.float32))
    optimizer = AdamW(WarmupCosineSchedule(0.1, 1, 5), weight_decay=0.1)
    for _ in range(2):
        optimizer.apply_gradients([(tf.constant(rng.normal(size=(3, 2)), tf.float32), variable)])
    path = tf.train.Checkpoint(optimizer=optimizer, variable=variable).save(str(tmp_path / "ckpt"))
    copy = keras.Variable(np.zeros((3, 2), np.float32))
    restored = AdamW(WarmupCosineSchedule(0.1, 1, 5), weight_decay=0.1)
    restored.build([copy])
    tf.train.Checkpoint(optimizer=restored, variable=copy).restore(path).assert_existing_objects_matched()
    assert int(restored.iterations) == 2
    gradient = tf.constant(rng.normal(size=(3, 2)), tf.float32)
    optimizer.apply_gradients([(gradient, variable)])
    restored.apply_gradients([(gradient, copy)])
    np.testing.assert_array_equal(copy.numpy(), variable.numpy())
    config = optimizer.get_config()
    assert (config["weight_decay"], config["beta_1"], config["beta_2"], config["epsilon"]) == (0.1, 0.9, 0.999, 1e-7)
    assert AdamW.from_config({**config, "learning_rate": 0.01}).weight_decay_rate == 0.1


# ---------------------------------------------------------------------------------------------------- schedule
@pytest.mark.parametrize("warmup, total, final", [(10, 50, 2e-4), (0, 20, 0.0), (3, 4, 1e-3), (1, 2, 0.002)])
def test_schedule_equals_keras_cosine_decay_with_warmup(warmup, total, final):
    peak = 2e-3
    ours = WarmupCosineSchedule(peak, warmup, total, final_lr=final)
    oracle = keras.optimizers.schedules.CosineDecay(0.0 if warmup else peak, total - warmup, alpha=final / peak,
                                                    warmup_target=peak if warmup else None, warmup_steps=warmup)
    steps = sorted({0, 1, warmup // 2, max(warmup - 1, 0), warmup, warmup + 1, (warmup + total) // 2, total - 1, total,
                    total + 1, 10 * total})
    worst = max(abs(float(ours(s)) - float(oracle(s))) for s in steps)
    assert worst < 1e-9
    assert float(ours(warmup)) == pytest.approx(peak) and float(ours(total)) == pytest.approx(final)
    assert float(ours(10 * total)) == pytest.approx(final)


def test_schedule_by_hand_on_tensors_and_inside_tf_function():
    schedule = WarmupCosineSchedule(1.0, 4, 12, final_lr=0.2)
    expected = {0: 0.0, 1: 0.25, 3: 0.75, 4: 1.0, 8: 0.2 + 0.8 * 0.5, 12: 0.2, 13: 0.2, 1000: 0.2,
                6: 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4))}
    traced = tf.function(lambda step: schedule(step))
    for step, value in expected.items():
        assert float(schedule(step)) == pytest.approx(value, abs=1e-6)
        assert float(schedule(tf.constant(step, tf.int64))) == pytest.approx(value, abs=1e-6)
        assert float(traced(tf.constant(step, tf.int64))) == pytest.approx(value, abs=1e-6)
    everything = WarmupCosineSchedule(1.0, 5, 5)  # warmup to the last step, then final_lr
    assert [round(float(everything(s)), 6) for s in range(7)] == [0.0, 0.2, 0.4, 0.6, 0.8, 0.0, 0.0]
    assert WarmupCosineSchedule.from_config(schedule.get_config()).get_config() == schedule.get_config()


# ---------------------------------------------------------------------------------------------------- bad arguments
def one_line_value_error(make, *words: str) -> None:
    with pytest.raises(ValueError) as raised:
        make()
    message = str(raised.value)
    assert "\n" not in message and all(word in message for word in words), message


@pytest.mark.parametrize("make, words", [
    (lambda: GroupedQueryAttention(16, 4, 3), ("num_heads", "num_kv_heads")),
    (lambda: GroupedQueryAttention(12, 4, 2), ("head size", "d_model", "num_heads", "even")),
    (lambda: GroupedQueryAttention(16, 5, 1), ("d_model", "num_heads")),
    (lambda: GroupedQueryAttention(16, 4, 0), ("num_kv_heads",)),
    (lambda: GroupedQueryAttention(16, 4, 2, theta=0.0), ("theta",)),
    (lambda: ModernLanguageModel(**{**CONFIG, "num_kv_heads": 3}), ("num_heads", "num_kv_heads")),
    (lambda: ModernLanguageModel(**{**CONFIG, "d_model": 12}), ("head size",)),
    (lambda: ModernLanguageModel(**{**CONFIG, "vocab_size": 0}), ("vocab_size",)),
    (lambda: ModernLanguageModel(**{**CONFIG, "hidden_dim": -1}), ("hidden_dim",)),
    (lambda: RMSNorm(0.0), ("epsilon",)),
    (lambda: rotary_embedding(tf.zeros([1, 1, 2, 5]), tf.range(2)), ("hd", "even")),
    (lambda: SwiGLU(8, 0), ("hidden_dim",)),
    (lambda: AdamW(learning_rate=0.0), ("learning_rate",)),
    (lambda: AdamW(learning_rate=-1e-3), ("learning_rate",)),
    (lambda: AdamW(beta_1=1.0), ("beta_1",)),
    (lambda: AdamW(beta_2=-0.1), ("beta_2",)),
    (lambda: AdamW(epsilon=0.0), ("epsilon",)),
    (lambda: AdamW(weight_decay=-0.01), ("weight_decay",)),
    (lambda: WarmupCosineSchedule(1e-3, 11, 10), ("warmup_steps", "total_steps", "warmup longer than the run")),
    (lambda: WarmupCosineSchedule(0.0, 1, 10), ("peak",)),
    (lambda: WarmupCosineSchedule(1e-3, -1, 10), ("warmup_steps",)),
    (lambda: WarmupCosineSchedule(1e-3, 0, 0), ("total_steps",)),
    (lambda: WarmupCosineSchedule(1e-3, 1, 10, final_lr=2e-3), ("final_lr",)),
])
def test_bad_arguments_are_one_line_value_errors_naming_them(make, words):
    one_line_value_error(make, *words)


def test_positions_past_the_cache_or_the_context_are_refused():
    layer = attention_layer(2, np.random.default_rng(19))
    cache = {"key": tf.zeros([1, 2, 4, 4]), "value": tf.zeros([1, 2, 4, 4])}
    # Through layer.call: Keras's Layer.__call__ adds lines of its own to any error of call().
    one_line_value_error(lambda: layer.call(tf.zeros([1, 2, 16]), cache=cache, start=3), "start")
    one_line_value_error(lambda: layer.call(tf.zeros([1, 2, 16]), cache=cache, start=-1), "start")
    one_line_value_error(lambda: layer.call(tf.zeros([1, 3, 16]), positions=tf.range(2)), "positions")
    model = make_model()
    one_line_value_error(lambda: model.call(np.zeros((1, 11), np.int32)), "context_length")
    _, state = model.step(np.zeros((1, 9), np.int32))
    one_line_value_error(lambda: model.step(np.zeros((1, 2), np.int32), state), "context_length")
