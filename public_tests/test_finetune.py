"""Part 8, visible tests: the LoRA adapter against numpy's W + (alpha / r) A B (a Dense kernel and an einsum kernel),
its start as the identity, its merge, freezing and LoRA's trainable variables on part 4's transformer (built, never
called, so these run before part 4 is done), the parameter counts, and bad arguments.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

CONFIG = {"vocab_size": 11, "context_length": 8, "d_model": 16, "num_heads": 2, "num_layers": 3}


def lora(finetune, rank: int, alpha: float, kernel: np.ndarray, input_axes: int = 1, seed: int = 0):
    """(a LoRA adapter built on `kernel`, the kernel as a variable, A and B drawn from N(0, 0.5^2) and assigned)."""
    rng = np.random.default_rng(seed)
    adapter = finetune.LoRA(rank, alpha, input_axes=input_axes)
    adapter.build(kernel.shape)
    d_in, d_out = math.prod(kernel.shape[:input_axes]), math.prod(kernel.shape[input_axes:])
    a, b = rng.normal(0, 0.5, (d_in, rank)).astype(np.float32), rng.normal(0, 0.5, (rank, d_out)).astype(np.float32)
    adapter.lora_a.assign(a)
    adapter.lora_b.assign(b)
    return adapter, tf.Variable(kernel), a, b


@pytest.mark.parametrize("shape, input_axes, rank, alpha", [((7, 5), 1, 3, 2.0), ((2, 4, 6), 2, 2, 5.0)])
def test_lora_adapts_the_kernel_to_w_plus_alpha_over_r_times_a_b(finetune, shape, input_axes, rank, alpha):
    kernel = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    adapter, variable, a, b = lora(finetune, rank, alpha, kernel, input_axes)
    expected = kernel + alpha / rank * (a.astype(np.float64) @ b).reshape(shape)
    np.testing.assert_allclose(adapter(variable), expected, rtol=1e-5, atol=1e-5)


def test_lora_starts_as_the_identity(finetune):
    kernel = np.random.default_rng(2).normal(size=(64, 40)).astype(np.float32)
    adapter = finetune.LoRA(8, 16.0)
    adapted = adapter(tf.Variable(kernel))
    assert sorted(w.path.split("/")[-1] for w in adapter.weights) == ["lora_a", "lora_b"]
    assert adapter.lora_a.shape == (64, 8) and adapter.lora_b.shape == (8, 40)
    assert not np.any(adapter.lora_b.numpy())  # B = 0 ...
    np.testing.assert_array_equal(adapted, kernel)  # ... so W' = W exactly: the pretrained model, unchanged
    assert abs(np.std(adapter.lora_a.numpy()) - 1 / 8) < 0.25 / 8  # A ~ N(0, 1 / d_in), d_in = 64


def test_merge_folds_the_update_into_the_kernel_and_changes_no_output(finetune):
    kernel = np.random.default_rng(3).normal(size=(3, 2, 5)).astype(np.float32)
    adapter, variable, a, b = lora(finetune, 2, 3.0, kernel, input_axes=2)
    before = adapter(variable).numpy()
    adapter.merge(variable)
    np.testing.assert_allclose(variable, kernel + 1.5 * (a.astype(np.float64) @ b).reshape(3, 2, 5), atol=1e-5)
    assert not np.any(adapter.lora_b.numpy())
    np.testing.assert_allclose(adapter(variable), before, rtol=0, atol=1e-6)


def model_with(transformer, adapters=None, rank: int = 2):
    """Part 4's transformer built (not called) and, with `adapters`, LoRA adapters built on its attention kernels."""
    model = transformer.TransformerLanguageModel(**CONFIG)
    added = [] if adapters is None else adapters.add_lora(model, rank, 4.0)
    model.build((1, 1))
    for adapter, kernel in ([] if adapters is None else adapters.adapted_kernels(model)):
        adapter(kernel)  # builds A and B (a call of the model would too)
    return model, added


def ids(variables) -> set[int]:
    return {id(v) for v in variables}


@pytest.mark.parametrize("num_blocks", [0, 1, 3])
def test_freeze_takes_the_embeddings_and_the_first_blocks_out_of_the_trainable_variables(finetune, transformer,
                                                                                         num_blocks):
    model, _ = model_with(transformer)
    finetune.freeze(model, num_blocks)
    frozen = ids(model.token_embedding.weights) | ids(model.position_embedding.weights)
    for block in model.blocks[:num_blocks]:
        frozen |= ids(block.weights)
    assert ids(model.trainable_variables) == ids(model.weights) - frozen
    expected = sum(math.prod(w.shape) for w in model.weights if id(w) not in frozen)
    assert finetune.trainable_parameters(model) == expected


def test_a_full_model_counts_every_weight(finetune, transformer):
    model, _ = model_with(transformer)
    d, v, c = CONFIG["d_model"], CONFIG["vocab_size"], CONFIG["context_length"]
    block = 4 * (d * d + d) + 4 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)  # attention, 2 norms, MLP
    assert finetune.trainable_parameters(model) == v * d + c * d + CONFIG["num_layers"] * block + 2 * d + v


def test_lora_trains_only_a_and_b(finetune, transformer, adapters):
    model, added = model_with(transformer, adapters, rank=2)
    finetune.train_only_adapters(model, added)
    assert len(added) == 4 * CONFIG["num_layers"]
    assert ids(model.trainable_variables) == {id(w) for adapter in added for w in (adapter.lora_a, adapter.lora_b)}
    d = CONFIG["d_model"]
    assert finetune.trainable_parameters(model) == CONFIG["num_layers"] * 4 * 2 * (d + d)  # r (d_in + d_out) each


@pytest.mark.parametrize("rank, alpha", [(0, 1.0), (-1, 1.0), (2, 0.0), (2, -3.0)])
def test_bad_rank_or_alpha(finetune, rank, alpha):
    finetune.LoRA(2, 1.0)(tf.Variable(np.ones((3, 3), np.float32)))  # a correct adapter works
    with pytest.raises(ValueError):
        finetune.LoRA(rank, alpha)


@pytest.mark.parametrize("shape, input_axes", [((2, 8), 1), ((8, 2), 1), ((2, 1, 8), 2)])
def test_a_rank_above_min_d_in_d_out(finetune, shape, input_axes):
    finetune.LoRA(2, 1.0, input_axes=input_axes)(tf.Variable(np.ones(shape, np.float32)))  # rank 2 fits
    with pytest.raises(ValueError):
        finetune.LoRA(3, 1.0, input_axes=input_axes).build(shape)


@pytest.mark.parametrize("num_blocks", [-1, 4])
def test_freezing_more_blocks_than_there_are(finetune, transformer, num_blocks):
    model, _ = model_with(transformer)
    finetune.freeze(model, 3)  # every block is fine
    with pytest.raises(ValueError):
        finetune.freeze(model, num_blocks)
