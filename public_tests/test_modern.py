"""Part 6, visible tests: RMSNorm, RoPE (halves pairing), SwiGLU and grouped-query attention against numpy versions of
the handout's formulas on random weights, RoPE's worked example and properties (lengths kept, scores that depend on the
offset only), RMSNorm and RoPE on float16 inputs (float32 statistics and angles, float16 results), GQA with H_kv = H
against numpy multi-head attention, the whole modern decoder against a numpy forward pass, its key/value cache against
recomputation, AdamW against a numpy AdamW step by step, the warmup-cosine schedule at hand-checked steps, and bad
arguments.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

B, T, D_MODEL, HEADS, KV_HEADS, V, C = 2, 6, 16, 4, 2, 11, 8
HD = D_MODEL // HEADS
EPSILON = 1e-6


# ---------------------------------------------------------------------------------------------------- numpy versions
def rms_norm(x: np.ndarray, scale: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + epsilon) * scale


def rope(x: np.ndarray, positions, theta: float = 10000.0) -> np.ndarray:
    """x [..., T, hd] with the pair (i, i + hd/2) of row t turned by positions[t] * theta^(-2i/hd)."""
    x = np.asarray(x, np.float64)
    half = x.shape[-1] // 2
    angle = np.asarray(positions, np.float64)[:, None] * theta ** (-2.0 * np.arange(half) / x.shape[-1])  # [T, hd/2]
    first, second = x[..., :half], x[..., half:]
    return np.concatenate([first * np.cos(angle) - second * np.sin(angle),
                           second * np.cos(angle) + first * np.sin(angle)], axis=-1)


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def silu(z: np.ndarray) -> np.ndarray:
    return z / (1.0 + np.exp(-z))


def swiglu(x: np.ndarray, layer) -> np.ndarray:
    return (silu(x @ layer.gate.kernel.numpy()) * (x @ layer.up.kernel.numpy())) @ layer.down.kernel.numpy()


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """softmax(q k^T / sqrt(hd)) v, query t seeing keys 0 .. t: q, k, v [B, T, hd] -> [B, T, hd]."""
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    length = q.shape[-2]
    scores = np.where(np.tril(np.ones((length, length), bool)), scores, -np.inf)
    return softmax(scores) @ v


def gqa(layer, x: np.ndarray, positions=None, theta: float = 10000.0) -> np.ndarray:
    """The handout's grouped-query attention in numpy: query head j uses key/value head j // (H / H_kv)."""
    w = {name: getattr(layer, f"{name}_kernel").numpy() for name in ("query", "key", "value", "output")}
    heads, kv_heads = w["query"].shape[1], w["key"].shape[1]
    positions = np.arange(x.shape[1]) if positions is None else positions
    q = rope(np.einsum("btd,dhk->bhtk", x, w["query"]), positions, theta)  # [B, H, T, hd]
    k = rope(np.einsum("btd,dhk->bhtk", x, w["key"]), positions, theta)  # [B, H_kv, T, hd]
    v = np.einsum("btd,dhk->bhtk", x, w["value"])  # [B, H_kv, T, hd]
    group = heads // kv_heads
    attended = np.stack([causal_attention(q[:, j], k[:, j // group], v[:, j // group]) for j in range(heads)], axis=1)
    return np.einsum("bhtk,hkd->btd", attended, w["output"])


def multi_head_attention(layer, x: np.ndarray) -> np.ndarray:
    """Multi-head attention with RoPE, one head at a time (every head its own keys and values), in numpy."""
    w = {name: getattr(layer, f"{name}_kernel").numpy() for name in ("query", "key", "value", "output")}
    positions = np.arange(x.shape[1])
    y = 0.0
    for head in range(w["query"].shape[1]):
        q = rope(x @ w["query"][:, head], positions)  # [B, T, hd]
        k = rope(x @ w["key"][:, head], positions)
        y = y + causal_attention(q, k, x @ w["value"][:, head]) @ w["output"][head]
    return y


def model_logits(model, tokens: np.ndarray) -> np.ndarray:
    """The handout's modern decoder in numpy, with the model's weights."""
    h = model.token_embedding.embeddings.numpy()[tokens].astype(np.float64)
    for block in model.blocks:
        h = h + gqa(block.attention, rms_norm(h, block.attention_norm.scale.numpy()))
        h = h + swiglu(rms_norm(h, block.mlp_norm.scale.numpy()), block.mlp)
    return rms_norm(h, model.final_norm.scale.numpy()) @ model.output_layer.kernel.numpy()


def randomize(layer, seed: int, scale: float = 0.3) -> None:
    """Random weights: N(0, scale^2) for the kernels and embeddings, N(1, scale^2) for the norms' scales."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        values = rng.normal(0.0, scale, size=tuple(weight.shape))
        weight.assign((values + 1.0 if weight.path.endswith("scale") else values).astype(np.float32))


def random_x(seed: int, shape=(B, T, D_MODEL)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- RMSNorm
def test_rms_norm_matches_numpy(modern):
    layer = modern.RMSNorm()
    x = random_x(0, (2, 3, 8))
    x[1, 2] *= 1e-4  # a row whose mean square (about 1e-8) is below epsilon: where epsilon goes matters
    layer.build(x.shape)
    assert [tuple(w.shape) for w in layer.weights] == [(8,)] and layer.scale.path.endswith("scale")
    np.testing.assert_array_equal(layer.scale.numpy(), np.ones(8))
    randomize(layer, 1)
    y = layer(x)
    assert y.shape == x.shape and y.dtype.name == "float32"
    np.testing.assert_allclose(y, rms_norm(x, layer.scale.numpy()), rtol=1e-5, atol=1e-6)
    wide = modern.RMSNorm(epsilon=0.5)
    np.testing.assert_allclose(wide(x), rms_norm(x, np.ones(8), epsilon=0.5), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- RoPE
def test_rotary_embedding_worked_example(modern):
    x = np.array([[[[1.0, 2.0, 3.0, 4.0]]]], np.float32)  # [B, H, T, hd] = [1, 1, 1, 4]
    out = np.asarray(modern.rotary_embedding(x, tf.constant([1], tf.int32)))
    assert out.shape == (1, 1, 1, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [-1.9841, 1.9599, 2.4624, 4.0198], atol=1e-4)  # the handout's numbers
    np.testing.assert_allclose(np.asarray(modern.rotary_embedding(x, tf.constant([0], tf.int32))), x, atol=1e-7)


@pytest.mark.parametrize("theta", [10000.0, 100.0])
def test_rotary_embedding_matches_numpy(modern, theta):
    x = random_x(2, (2, 3, 5, 8))
    positions = np.array([3, 0, 7, 2, 11], np.int32)  # any absolute positions, one per row
    out = modern.rotary_embedding(x, tf.constant(positions), theta=theta)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, rope(x, positions, theta), atol=1e-5)


def test_rotary_embedding_keeps_lengths_and_scores_depend_on_the_offset_only(modern):
    x = random_x(3, (1, 2, 6, 8))
    positions = tf.constant([0, 1, 5, 9, 20, 100], tf.int32)
    out = np.asarray(modern.rotary_embedding(x, positions))
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    q, k = random_x(4, (1, 1, 1, 8)), random_x(5, (1, 1, 1, 8))

    def score(m: int, n: int) -> float:
        rotated_q = np.asarray(modern.rotary_embedding(q, tf.constant([m], tf.int32)))
        rotated_k = np.asarray(modern.rotary_embedding(k, tf.constant([n], tf.int32)))
        return float(np.sum(rotated_q * rotated_k))

    offset_3 = [score(3, 0), score(5, 2), score(12, 9), score(40, 37)]
    np.testing.assert_allclose(offset_3, offset_3[0], atol=1e-4)
    assert abs(score(4, 0) - offset_3[0]) > 1e-3  # another offset, another score


# ---------------------------------------------------------------------------------------------------- float16
def test_rms_norm_and_rotary_embedding_compute_in_float32_and_keep_float16(modern):
    """The handout's dtype contract: statistics and angles in float32, the result cast back to x's dtype."""
    x = (random_x(6, (2, 3, 16)) * 400.0).astype(np.float16)  # squares above 65504 overflow in float16
    y = modern.RMSNorm(dtype="mixed_float16")(tf.constant(x))  # float32 scale, float16 computation
    assert y.dtype.name == "float16"
    np.testing.assert_allclose(np.asarray(y, np.float32), rms_norm(x, np.ones(16)), rtol=2e-3, atol=2e-3)
    x = random_x(7, (1, 2, 6, 8)).astype(np.float16)
    positions = np.array([103, 150, 120, 187, 111, 199], np.int32)  # float16 angles here are off by up to 0.06 radians
    out = modern.rotary_embedding(tf.constant(x), tf.constant(positions))
    assert out.dtype.name == "float16"
    np.testing.assert_allclose(np.asarray(out, np.float32), rope(x, positions), rtol=4e-3, atol=2e-3)


# ---------------------------------------------------------------------------------------------------- SwiGLU
def test_swiglu_matches_numpy_on_random_weights(modern):
    assert modern.swiglu_hidden_dim(64) == 192  # int(8 * 64 / 3) = 170, rounded up to a multiple of 32
    layer = modern.SwiGLU(8, 12)
    x = random_x(6, (2, 3, 8))
    layer.build(x.shape)
    randomize(layer, 7)
    shapes = {w.path.split("/")[-2]: tuple(w.shape) for w in layer.weights}
    assert shapes == {"gate": (8, 12), "up": (8, 12), "down": (12, 8)}  # three kernels, no biases
    y = layer(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, swiglu(x.astype(np.float64), layer), atol=1e-5)


# ---------------------------------------------------------------------------------------------------- attention
def _attention(modern, kv_heads: int, seed: int, **kwargs):
    layer = modern.GroupedQueryAttention(D_MODEL, HEADS, kv_heads, **kwargs)
    x = random_x(seed)
    layer.build(x.shape)
    randomize(layer, seed + 1)
    return layer, x


@pytest.mark.parametrize("kv_heads", [KV_HEADS, 1])
def test_grouped_query_attention_matches_numpy_on_random_weights(modern, kv_heads):
    layer, x = _attention(modern, kv_heads, 8)
    shapes = {w.path.split("/")[-1]: tuple(w.shape) for w in layer.weights}
    assert shapes == {"query_kernel": (D_MODEL, HEADS, HD), "key_kernel": (D_MODEL, kv_heads, HD),
                      "value_kernel": (D_MODEL, kv_heads, HD), "output_kernel": (HEADS, HD, D_MODEL)}  # no biases
    y = layer(x)
    assert y.shape == (B, T, D_MODEL)
    np.testing.assert_allclose(y, gqa(layer, x), atol=1e-4)


def test_grouped_query_attention_at_given_positions(modern):
    layer, x = _attention(modern, KV_HEADS, 10, theta=100.0)
    positions = np.array([4, 5, 6, 7, 8, 9], np.int32)
    np.testing.assert_allclose(layer(x, positions=tf.constant(positions)), gqa(layer, x, positions, 100.0), atol=1e-4)
    zeros = np.zeros(T, np.int32)  # every angle 0: attention without positions
    np.testing.assert_allclose(layer(x, positions=tf.constant(zeros)), gqa(layer, x, zeros, 100.0), atol=1e-4)


def test_grouped_query_attention_with_as_many_kv_heads_is_multi_head_attention(modern):
    layer, x = _attention(modern, HEADS, 12)
    np.testing.assert_allclose(layer(x), multi_head_attention(layer, x), atol=1e-4)


def test_grouped_query_attention_cache_holds_the_rotated_keys_of_h_kv_heads(modern):
    layer, x = _attention(modern, KV_HEADS, 14)
    empty = tf.zeros([B, KV_HEADS, C, HD])
    y, cache = layer(x[:, :4], cache={"key": empty, "value": empty}, start=0)
    assert set(cache) == {"key", "value"}
    assert cache["key"].shape == cache["value"].shape == (B, KV_HEADS, C, HD)  # H / H_kv = 2 times smaller
    keys = rope(np.einsum("btd,dhk->bhtk", x[:, :4], layer.key_kernel.numpy()), np.arange(4))
    np.testing.assert_allclose(cache["key"][:, :, :4], keys, atol=1e-5)
    np.testing.assert_array_equal(cache["value"][:, :, 4:], 0.0)
    y2, cache = layer(x[:, 4:], cache=cache, start=4)
    np.testing.assert_allclose(np.concatenate([y, y2], axis=1), gqa(layer, x), atol=1e-4)


# ---------------------------------------------------------------------------------------------------- block, model
def test_modern_block_matches_numpy(modern):
    block = modern.ModernBlock(D_MODEL, HEADS, KV_HEADS, hidden_dim=24)
    x = random_x(16)
    block.build(x.shape)
    randomize(block, 17)
    h = x + gqa(block.attention, rms_norm(x, block.attention_norm.scale.numpy()))
    expected = h + swiglu(rms_norm(h, block.mlp_norm.scale.numpy()), block.mlp)
    np.testing.assert_allclose(block(x), expected, atol=1e-4)


def _model(modern, seed: int):
    model = modern.ModernLanguageModel(vocab_size=V, context_length=C, d_model=D_MODEL, num_heads=HEADS,
                                       num_kv_heads=KV_HEADS, num_layers=2, hidden_dim=24)
    tokens = np.random.default_rng(seed).integers(0, V, size=(B, T)).astype(np.int32)
    model(tokens)
    randomize(model, seed)
    return model, tokens


def test_modern_model_logits_match_a_numpy_forward_pass(modern):
    model, tokens = _model(modern, 18)
    logits = model(tokens)
    assert logits.shape == (B, T, V) and logits.dtype.name == "float32"
    np.testing.assert_allclose(logits, model_logits(model, tokens), atol=1e-4)
    kernels = {w.path for w in model.weights if "bias" in w.path}
    assert not kernels, f"the modern decoder has no biases: {sorted(kernels)}"
    assert model.output_layer.kernel.shape == (D_MODEL, V)  # untied: its own matrix
    with pytest.raises(ValueError):
        model(np.zeros((1, C + 1), np.int32))


def test_modern_model_step_equals_call_with_a_smaller_cache(modern):
    model, _ = _model(modern, 19)
    model.jit_decode = False  # the same graph without XLA's compile time
    tokens = np.random.default_rng(20).integers(0, V, size=(B, C)).astype(np.int32)
    full = np.asarray(model(tokens))
    pieces, state = [], None
    for start, stop in ((0, 3), (3, 4), (4, 5), (5, 8)):  # a prompt, two single tokens, then three at once
        logits, state = model.step(tokens[:, start:stop], state)
        assert state["position"] == stop
        assert [tuple(c["key"].shape) for c in state["caches"]] == [(B, KV_HEADS, C, HD)] * 2
        pieces.append(np.asarray(logits))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- AdamW
def schedule_lr(step: int, peak: float, warmup: int, total: int, final: float = 0.0) -> float:
    """The handout's warmup-cosine learning rate at optimizer step `step`."""
    if step < warmup:
        return peak * step / warmup
    if step <= total:
        return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    return final


def numpy_adamw(weights, gradients, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.01):
    """The handout's AdamW, one list of weights per update: learning_rate(iterations) gives each update's rate."""
    weights = [np.asarray(w, np.float64) for w in weights]
    m, v = [np.zeros_like(w) for w in weights], [np.zeros_like(w) for w in weights]
    history = []
    for iterations, grads in enumerate(gradients):
        t, lr = iterations + 1, learning_rate(iterations)
        for n, g in enumerate(grads):
            if weights[n].ndim >= 2:
                weights[n] = weights[n] - lr * weight_decay * weights[n]
            m[n] = m[n] + (g - m[n]) * (1 - beta_1)
            v[n] = v[n] + (g * g - v[n]) * (1 - beta_2)
            alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            weights[n] = weights[n] - alpha * m[n] / (np.sqrt(v[n]) + epsilon)
        history.append([w.copy() for w in weights])
    return history


SHAPES = [(3, 4), (4,), (2, 3, 2), (1,)]
"""Variables of the AdamW tests: a matrix, a vector (never decayed), a rank-3 kernel, a scalar-like vector."""


def _variables(seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(size=shape).astype(np.float32)) for shape in SHAPES]


def _gradients(seed: int, steps: int, scale: float = 1.0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[(scale * rng.normal(size=shape)).astype(np.float32) for shape in SHAPES] for _ in range(steps)]


def test_adamw_first_step_by_hand(optim):
    w = keras.Variable(np.ones((1, 1), np.float32))
    optimizer = optim.AdamW(learning_rate=0.1, weight_decay=0.1)
    optimizer.apply_gradients([(tf.constant([[0.5]]), w)])
    # decay: 1 - 0.1 * 0.1 * 1 = 0.99; m = 0.05, v = 0.00025, alpha = 0.1 sqrt(0.001) / 0.1; step = 0.1 (almost)
    np.testing.assert_allclose(w.numpy(), [[0.89]], atol=1e-5)


@pytest.mark.parametrize("settings", [
    {"learning_rate": 0.05, "weight_decay": 0.3},
    {"learning_rate": 0.05, "weight_decay": 0.0, "beta_1": 0.8, "beta_2": 0.99},
    {"learning_rate": 0.05, "weight_decay": 0.1, "epsilon": 1e-2},  # with gradients near epsilon: its place matters
], ids=["decay", "no-decay", "epsilon"])
def test_adamw_matches_numpy_step_by_step(optim, settings):
    variables = _variables(21)
    start = [v.numpy() for v in variables]
    gradients = _gradients(22, 5, scale=1e-2 if "epsilon" in settings else 1.0)
    optimizer = optim.AdamW(**settings)
    lr = settings["learning_rate"]
    others = {key: value for key, value in settings.items() if key != "learning_rate"}
    expected = numpy_adamw(start, gradients, lambda _: lr, **others)
    for step, grads in enumerate(gradients):
        optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables, strict=True))
        for variable, want in zip(variables, expected[step], strict=True):
            np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=f"after update {step}")


def test_adamw_decays_matrices_only(optim):
    variables = _variables(23)
    start = [v.numpy() for v in variables]
    optimizer = optim.AdamW(learning_rate=0.1, weight_decay=0.5)
    for _ in range(3):  # zero gradients: the Adam step is 0, only the decay moves the weights
        optimizer.apply_gradients(zip([tf.zeros(shape) for shape in SHAPES], variables, strict=True))
    for variable, before in zip(variables, start, strict=True):
        factor = (1 - 0.1 * 0.5) ** 3 if before.ndim >= 2 else 1.0
        np.testing.assert_allclose(variable.numpy(), before * factor, rtol=1e-6)


def test_adamw_with_the_schedule_in_a_compiled_step(optim):
    variables = _variables(24)
    start = [v.numpy() for v in variables]
    gradients = _gradients(25, 6)
    schedule = optim.WarmupCosineSchedule(0.1, warmup_steps=2, total_steps=5, final_lr=0.01)
    assert float(schedule(0)) == 0.0  # eagerly first: an error shows here as itself, not inside a graph's trace
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=0.2)
    optimizer.build(variables)
    apply = tf.function(lambda grads: optimizer.apply_gradients(zip(grads, variables, strict=True)))  # graph mode
    expected = numpy_adamw(start, gradients, lambda s: schedule_lr(s, 0.1, 2, 5, 0.01), weight_decay=0.2)
    for step, grads in enumerate(gradients):
        apply([tf.constant(g) for g in grads])
        for variable, want in zip(variables, expected[step], strict=True):
            np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=f"after update {step}")


# ---------------------------------------------------------------------------------------------------- schedule
def test_warmup_cosine_schedule_at_hand_checked_steps(optim):
    schedule = optim.WarmupCosineSchedule(1.0, warmup_steps=4, total_steps=12, final_lr=0.1)
    expected = {0: 0.0, 2: 0.5, 4: 1.0, 6: 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 8: 0.55, 12: 0.1, 20: 0.1}
    for step, lr in expected.items():
        np.testing.assert_allclose(float(schedule(step)), lr, atol=1e-6, err_msg=f"step {step}")
        np.testing.assert_allclose(float(schedule(tf.constant(step, tf.int64))), lr, atol=1e-6, err_msg=f"step {step}")
    compiled = tf.function(schedule)
    np.testing.assert_allclose([float(compiled(tf.constant(s, tf.int64))) for s in expected], list(expected.values()),
                               atol=1e-6)
    no_warmup = optim.WarmupCosineSchedule(2.0, warmup_steps=0, total_steps=10)
    np.testing.assert_allclose([float(no_warmup(s)) for s in (0, 5, 10, 11)], [2.0, 1.0, 0.0, 0.0], atol=1e-6)
    for step in range(0, 14):
        assert math.isclose(float(schedule(step)), schedule_lr(step, 1.0, 4, 12, 0.1), abs_tol=1e-6), step


# ---------------------------------------------------------------------------------------------------- bad arguments
def test_bad_arguments_raise_value_error(modern, optim):
    x = random_x(26, (1, 1, 2, 4))
    modern.rotary_embedding(x, tf.constant([0, 1], tf.int32))  # fine
    with pytest.raises(ValueError, match="hd"):
        modern.rotary_embedding(random_x(26, (1, 1, 2, 5)), tf.constant([0, 1], tf.int32))
    layer, _ = _attention(modern, KV_HEADS, 27)
    layer(random_x(28))  # fine
    for d_model, heads, kv_heads in ((16, 4, 3), (18, 4, 2), (12, 4, 2)):  # H_kv must divide H, H d_model; hd even
        with pytest.raises(ValueError):
            modern.GroupedQueryAttention(d_model, heads, kv_heads)
    schedule = optim.WarmupCosineSchedule(1.0, warmup_steps=2, total_steps=4)
    schedule(1)  # fine
    for args in ((0.0, 2, 4), (1.0, 5, 4), (1.0, -1, 4), (1.0, 2, 4, 2.0), (1.0, 2, 4, -0.1)):
        with pytest.raises(ValueError):
            optim.WarmupCosineSchedule(*args)
    for settings in ({"learning_rate": 0.0}, {"beta_1": 1.0}, {"beta_2": -0.1}, {"epsilon": 0.0},
                     {"weight_decay": -0.1}):
        with pytest.raises(ValueError):
            optim.AdamW(**settings)
