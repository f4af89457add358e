"""Part 8 reference against an oracle written elsewhere and against properties.

Oracle: Keras's own LoRA. `keras.layers.Dense(...).enable_lora(rank, lora_alpha)` adapts a [d_in, d_out] kernel (the
query, key and value kernels [d, H, hd] are that kernel flattened to [d, H hd]) and `keras.layers.EinsumDense` with
the output projection's equation adapts the output kernel [H, hd, d] (its `lora_kernel_a` [H, hd, r] is our A
[H hd, r]); with A and B copied into `lora_kernel_a` / `lora_kernel_b`, the outputs and the gradients of A and B match.
Properties: adapters start as the identity (the adapted model's logits equal the pretrained model's bit for bit), a
merge changes no output, a train step leaves frozen weights (AdamW's decay included) and, with LoRA, everything but A
and B bit-identical; parameter counts from the shapes; one-line ValueErrors for bad arguments.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from assignment import adapters, train  # noqa: E402
from assignment.finetune import LoRA, freeze, train_only_adapters, trainable_parameters  # noqa: E402
from assignment.modern import ModernLanguageModel  # noqa: E402
from assignment.transformer import TransformerLanguageModel  # noqa: E402

TRANSFORMER = {"vocab_size": 13, "context_length": 8, "d_model": 16, "num_heads": 2, "num_layers": 3}
MODERN = {"vocab_size": 13, "context_length": 8, "d_model": 16, "num_heads": 4, "num_kv_heads": 2, "num_layers": 3}
KINDS = {"transformer": (TransformerLanguageModel, TRANSFORMER), "modern": (ModernLanguageModel, MODERN)}
TOKENS = tf.constant([[1, 5, 2, 7, 3, 3], [0, 12, 4, 4, 9, 1]], tf.int32)


def make_model(kind: str, seed: int = 0, lora: tuple[int, float] | None = None) -> tuple[keras.Model, list[LoRA]]:
    keras.utils.set_random_seed(seed)
    cls, config = KINDS[kind]
    model = cls(**config)
    added = [] if lora is None else adapters.add_lora(model, *lora)
    model(tf.zeros([1, 1], tf.int32))
    return model, added


def base_weights(model: keras.Model, added: list[LoRA]) -> list[keras.Variable]:
    skipped = {id(w) for adapter in added for w in adapter.weights}
    return [w for w in model.weights if id(w) not in skipped]


def pretrained_and_adapted(kind: str, rank: int = 2, alpha: float = 3.0) -> tuple[keras.Model, keras.Model, list]:
    """A model with random weights and the same model (weights copied) with adapters."""
    pretrained, _ = make_model(kind, seed=1)
    adapted, added = make_model(kind, seed=2, lora=(rank, alpha))
    for target, source in zip(base_weights(adapted, added), pretrained.weights, strict=True):
        target.assign(source)
    return pretrained, adapted, added


def randomize_b(added: list[LoRA], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for adapter in added:
        adapter.lora_b.assign(rng.normal(0.0, 0.3, adapter.lora_b.shape).astype(np.float32))


@pytest.mark.parametrize("rank, alpha", [(1, 1.0), (3, 6.0), (5, 2.5)])
def test_lora_of_a_dense_kernel_matches_keras_enable_lora_outputs_and_gradients(rank, alpha):
    rng = np.random.default_rng(rank)
    d_in, d_out = 7, 5
    w = rng.normal(size=(d_in, d_out)).astype(np.float32)
    a = rng.normal(size=(d_in, rank)).astype(np.float32)
    b = rng.normal(size=(rank, d_out)).astype(np.float32)
    x = tf.constant(rng.normal(size=(4, d_in)).astype(np.float32))
    dense = keras.layers.Dense(d_out, use_bias=False)
    dense.build((None, d_in))
    dense.kernel.assign(w)
    dense.enable_lora(rank, lora_alpha=alpha)
    dense.lora_kernel_a.assign(a)
    dense.lora_kernel_b.assign(b)
    adapter, kernel = LoRA(rank, alpha), tf.Variable(w)
    adapter.build(w.shape)
    adapter.lora_a.assign(a)
    adapter.lora_b.assign(b)
    with tf.GradientTape(persistent=True) as tape:
        want = dense(x)
        got = tf.matmul(x, adapter(kernel))
        want_loss, got_loss = tf.reduce_sum(tf.sin(want)), tf.reduce_sum(tf.sin(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    want_grads = tape.gradient(want_loss, [dense.lora_kernel_a, dense.lora_kernel_b])
    got_grads = tape.gradient(got_loss, [adapter.lora_a, adapter.lora_b])
    for got_grad, want_grad in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-5)


def test_lora_of_the_attention_kernels_matches_keras_dense_and_einsum_dense():
    _, model, added = pretrained_and_adapted("transformer", rank=2, alpha=5.0)
    randomize_b(added)
    attention = model.blocks[0].attention
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 16)).astype(np.float32))
    query = attention.__dict__["query_kernel_lora"]
    dense = keras.layers.Dense(16, use_bias=False)  # the query kernel [d, H, hd] as a Dense kernel [d, H hd]
    dense.build((None, 16))
    dense.kernel.assign(tf.reshape(attention.__dict__["query_kernel"], [16, 16]))
    dense.enable_lora(2, lora_alpha=5.0)
    dense.lora_kernel_a.assign(query.lora_a)
    dense.lora_kernel_b.assign(query.lora_b)
    got = tf.einsum("btd,dhk->bthk", x, attention.query_kernel)
    np.testing.assert_allclose(got, tf.reshape(dense(x), [2, 3, 2, 8]), rtol=1e-5, atol=1e-6)

    output = attention.__dict__["output_kernel_lora"]
    einsum = keras.layers.EinsumDense("bthk,hkd->btd", output_shape=(None, 16), bias_axes=None)
    einsum.build((None, None, 2, 8))
    einsum.kernel.assign(attention.__dict__["output_kernel"])
    einsum.enable_lora(2, lora_alpha=5.0)
    einsum.lora_kernel_a.assign(tf.reshape(output.lora_a, [2, 8, 2]))  # A [H hd, r] as [H, hd, r]
    einsum.lora_kernel_b.assign(output.lora_b)
    heads = tf.reshape(x, [2, 3, 2, 8])
    got = tf.einsum("bthk,hkd->btd", heads, attention.output_kernel)
    np.testing.assert_allclose(got, einsum(heads), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_adapters_start_as_the_identity_and_a_merge_changes_no_output(kind):
    pretrained, adapted, added = pretrained_and_adapted(kind)
    assert len(added) == 4 * KINDS[kind][1]["num_layers"]
    for adapter in added:
        assert not np.any(adapter.lora_b.numpy()) and np.std(adapter.lora_a.numpy()) > 0
    np.testing.assert_array_equal(adapted(TOKENS), pretrained(TOKENS))  # W + (alpha/r) A 0 = W, bit for bit
    randomize_b(added)
    before = adapted(TOKENS).numpy()
    assert not np.allclose(before, pretrained(TOKENS), atol=1e-3)
    cached, _ = adapted.step(TOKENS)  # the cached path reads the adapted kernels too
    np.testing.assert_allclose(cached, before, rtol=1e-5, atol=1e-5)
    kernels = [kernel.numpy() for _, kernel in adapters.adapted_kernels(adapted)]
    for adapter, kernel in adapters.adapted_kernels(adapted):
        adapter.merge(kernel)
    np.testing.assert_allclose(adapted(TOKENS), before, rtol=0, atol=1e-6)
    for adapter, (_, kernel), old in zip(added, adapters.adapted_kernels(adapted), kernels, strict=True):
        assert not np.any(adapter.lora_b.numpy()) and not np.array_equal(kernel.numpy(), old)


def test_lora_a_is_drawn_with_the_stated_scale():
    values = []
    for seed in range(4):
        keras.utils.set_random_seed(seed)
        adapter = LoRA(8, 16.0)
        adapter.build((64, 32))
        assert adapter.lora_a.shape == (64, 8) and adapter.lora_b.shape == (8, 32)
        values.append(adapter.lora_a.numpy().ravel())
    std = np.std(np.concatenate(values))  # 2048 draws: the standard error of the std is about 1.6 %
    assert abs(std - 1 / math.sqrt(64)) < 0.1 / math.sqrt(64)


def one_step(model: keras.Model, weight_decay: float = 0.5) -> None:
    optimizer = keras.optimizers.AdamW(learning_rate=0.01, weight_decay=weight_decay)
    labels = tf.roll(TOKENS, -1, axis=1)
    for _ in range(2):
        train.train_step(model, optimizer, TOKENS, labels)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("num_blocks", [0, 1, 3])
def test_freezing_leaves_the_embedding_and_the_first_blocks_bit_identical_through_adamw_steps(kind, num_blocks):
    model, _ = make_model(kind)
    freeze(model, num_blocks)
    frozen = [model.token_embedding, *model.blocks[:num_blocks]]
    if getattr(model, "position_embedding", None) is not None:
        frozen.append(model.position_embedding)
    frozen_ids = {id(w) for layer in frozen for w in layer.weights}
    before = {id(w): w.numpy().copy() for w in model.weights}
    one_step(model)
    for weight in model.weights:
        same = np.array_equal(weight.numpy(), before[id(weight)])
        assert same == (id(weight) in frozen_ids), weight.path
    expected = sum(math.prod(w.shape) for w in model.weights if id(w) not in frozen_ids)
    assert trainable_parameters(model) == expected


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_lora_trains_only_a_and_b_and_counts_their_parameters(kind):
    _, model, added = pretrained_and_adapted(kind, rank=3)
    train_only_adapters(model, added)
    config = KINDS[kind][1]
    d, kv_width = config["d_model"], config["d_model"] // config["num_heads"] * config.get("num_kv_heads", 2)
    per_block = 3 * (d + d) + 3 * (d + kv_width) * 2 + 3 * (d + d)  # rank 3: query, key, value, output
    assert trainable_parameters(model) == config["num_layers"] * per_block
    adapter_ids = {id(w) for adapter in added for w in adapter.weights}
    before = {id(w): w.numpy().copy() for w in model.weights}
    one_step(model)
    for weight in model.weights:
        changed = not np.array_equal(weight.numpy(), before[id(weight)])
        # B moves from zero at the first step; A gets a gradient once B is not zero (the second step)
        assert changed == (id(weight) in adapter_ids), weight.path


def test_full_fine_tuning_counts_every_weight():
    model, _ = make_model("transformer")
    d, v, c, layers = 16, 13, 8, 3
    block = 4 * (d * d + d) + 2 * 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert trainable_parameters(model) == v * d + c * d + layers * block + 2 * d + v


@pytest.mark.parametrize("arguments, match", [
    ((0, 1.0), "rank"), ((-2, 1.0), "rank"), ((1.5, 1.0), "rank"), ((True, 1.0), "rank"),
    ((2, 0.0), "alpha"), ((2, -1.0), "alpha"), ((2, float("nan")), "alpha"),
])
def test_bad_adapter_arguments_are_one_line_errors(arguments, match):
    with pytest.raises(ValueError, match=match) as error:
        LoRA(*arguments)
    assert "\n" not in str(error.value)


def test_a_rank_above_min_d_in_d_out_is_refused_when_the_adapter_is_built():
    LoRA(5, 1.0).build((5, 7))
    for shape in [(4, 7), (7, 4), (2, 2, 9)]:
        with pytest.raises(ValueError, match="rank"):
            LoRA(5, 1.0, input_axes=1 if len(shape) == 2 else 2).build(shape)


@pytest.mark.parametrize("num_blocks", [-1, 4, 1.0, True])
def test_freezing_more_blocks_than_the_model_has_is_refused(num_blocks):
    model, _ = make_model("transformer")
    with pytest.raises(ValueError, match="num_blocks"):
        freeze(model, num_blocks)
    assert trainable_parameters(model) == model.count_params()
