"""Probes for part 6: the modern decoder's layers and model (modern.py) and the optimizer and schedule (optim.py)."""

from __future__ import annotations

import numpy as np

from .common import assign_weights, error_name, seed_everything, to_numpy, weight_name
from .registry import probe
from .transformer import _assign_by_path, generate_and_recompute


# ---------------------------------------------------------------------------------------------------- layers
@probe("modern.rms_norm")
def rms_norm(sub, x: np.ndarray, scale: np.ndarray | None = None, epsilon: float | None = None,
             dtype: str | None = None) -> dict:
    """{"y": RMSNorm(epsilon, dtype=dtype)(x), "initial": {weight name: value} once built (before any assignment)}.

    `scale`, when given, is assigned to the weight named scale before the output is computed; None (and `epsilon`,
    `dtype`) leave the constructor's defaults. x keeps its dtype (float16 with the mixed_float16 policy).
    """
    import tensorflow as tf

    kwargs = {key: value for key, value in (("epsilon", epsilon), ("dtype", dtype)) if value is not None}
    layer = sub.module("modern").RMSNorm(**kwargs)
    inputs = tf.constant(x)
    y = layer(inputs)
    initial = {weight_name(variable): to_numpy(variable) for variable in layer.weights}
    if scale is not None:
        assign_weights(layer, {"scale": scale}, "RMSNorm")
        y = layer(inputs)
    return {"y": to_numpy(y), "initial": initial}


@probe("modern.rotary")
def rotary(sub, x: np.ndarray, positions: np.ndarray, theta: float | None = None) -> dict:
    """{"y": rotary_embedding(x [B, H, T, hd] (its dtype), positions int32 [T], theta)} (theta None: the default)."""
    import tensorflow as tf

    kwargs = {} if theta is None else {"theta": float(theta)}
    y = sub.module("modern").rotary_embedding(tf.constant(x), tf.constant(positions, tf.int32), **kwargs)
    return {"y": to_numpy(y)}


@probe("modern.swiglu")
def swiglu(sub, d_model: int, hidden_dim: int, weights: dict, x: np.ndarray) -> dict:
    """{"y": SwiGLU(d_model, hidden_dim)(x [B, T, d_model])} with weights {"gate/kernel", "up/kernel",
    "down/kernel"} assigned to its sublayers."""
    import tensorflow as tf

    layer = sub.module("modern").SwiGLU(int(d_model), int(hidden_dim))
    inputs = tf.constant(x, tf.float32)
    layer(inputs[:, :1])
    _assign_by_path(layer, weights, "SwiGLU")
    return {"y": to_numpy(layer(inputs))}


def _attention(sub, d_model: int, num_heads: int, num_kv_heads: int, theta: float | None, weights: dict,
               x: np.ndarray):
    """(GroupedQueryAttention with the given kernels by name, x as a float32 tensor)."""
    import tensorflow as tf

    kwargs = {} if theta is None else {"theta": float(theta)}
    layer = sub.module("modern").GroupedQueryAttention(int(d_model), int(num_heads), int(num_kv_heads), **kwargs)
    inputs = tf.constant(x, tf.float32)
    layer(inputs[:, :1])
    assign_weights(layer, weights, "GroupedQueryAttention")
    return layer, inputs


def _cached(layer, inputs, prefix: int, shape: list[int]) -> tuple[np.ndarray, dict]:
    """Outputs [B, T, d] of `layer` run with a zero cache {"key", "value": zeros `shape`} on inputs[:, :prefix] at
    start 0, then on one position at a time at start t; and the last cache returned, as arrays."""
    import tensorflow as tf

    zeros = tf.zeros(shape, tf.float32)
    cache = {"key": zeros, "value": zeros}
    outputs = []
    for begin, end in [(0, int(prefix))] + [(t, t + 1) for t in range(int(prefix), inputs.shape[1])]:
        y, cache = layer(inputs[:, begin:end], cache=cache, start=begin)
        outputs.append(to_numpy(y))
    return np.concatenate(outputs, axis=1), {"key": to_numpy(cache["key"]), "value": to_numpy(cache["value"])}


@probe("modern.gqa")
def gqa(sub, d_model: int, num_heads: int, num_kv_heads: int, weights: dict, x: np.ndarray, positions: list,
        theta: float | None = None) -> dict:
    """{"y": [GroupedQueryAttention(d_model, num_heads, num_kv_heads, theta)(x [B, T, d], positions=p) for p in
    positions]} with the given kernels (query_kernel, key_kernel, value_kernel, output_kernel); a None in positions
    calls the layer without them (the default 0 .. T - 1)."""
    import tensorflow as tf

    layer, inputs = _attention(sub, d_model, num_heads, num_kv_heads, theta, weights, x)
    outputs = []
    for p in positions:
        kwargs = {} if p is None else {"positions": tf.constant(p, tf.int32)}
        outputs.append(to_numpy(layer(inputs, **kwargs)))
    return {"y": outputs}


@probe("modern.gqa_cache")
def gqa_cache(sub, d_model: int, num_heads: int, num_kv_heads: int, weights: dict, x: np.ndarray, prefix: int,
              capacity: int, theta: float | None = None) -> dict:
    """GroupedQueryAttention without a cache on x [B, T, d] ("full") and with one of `capacity` positions, zeros
    [B, H_kv, capacity, hd] at first: the prefix at start 0, then one position at a time ("cached"); the last cache
    returned ("key", "value"); and rotary_embedding of the projected keys [B, H_kv, T, hd] at 0 .. T - 1
    ("rotated")."""
    import tensorflow as tf

    layer, inputs = _attention(sub, d_model, num_heads, num_kv_heads, theta, weights, x)
    full = to_numpy(layer(inputs))
    shape = [inputs.shape[0], int(num_kv_heads), int(capacity), int(d_model) // int(num_heads)]
    cached, cache = _cached(layer, inputs, prefix, shape)
    keys = tf.einsum("btd,dhk->bhtk", inputs, tf.constant(weights["key_kernel"], tf.float32))
    kwargs = {} if theta is None else {"theta": float(theta)}
    rotated = sub.module("modern").rotary_embedding(keys, tf.range(inputs.shape[1]), **kwargs)
    return {"full": full, "cached": cached, **cache, "rotated": to_numpy(rotated)}


@probe("modern.block")
def block(sub, config: dict, weights: dict, x: np.ndarray, prefix: int, capacity: int) -> dict:
    """ModernBlock(**config) with weights assigned by path ("attention_norm/scale", "attention/query_kernel", ...,
    "mlp/gate/kernel", ...) on x [B, T, d]: the output without a cache ("full"), what its own sublayers give wired as
    a pre-norm block ("wired"), and the output with a zero cache of `capacity` positions, the prefix first and then
    one position at a time ("cached")."""
    import tensorflow as tf

    layer = sub.module("modern").ModernBlock(**config)
    inputs = tf.constant(x, tf.float32)
    layer(inputs[:, :1])
    _assign_by_path(layer, weights, "ModernBlock")
    full = to_numpy(layer(inputs))
    h = inputs + layer.attention(layer.attention_norm(inputs))
    wired = to_numpy(h + layer.mlp(layer.mlp_norm(h)))
    shape = [inputs.shape[0], int(config["num_kv_heads"]), int(capacity),
             int(config["d_model"]) // int(config["num_heads"])]
    cached, _ = _cached(layer, inputs, prefix, shape)
    return {"full": full, "wired": wired, "cached": cached}


@probe("modern.argument_errors")
def argument_errors(sub) -> dict:
    """{case: name of the exception raised (None: none)}: correct calls ("valid: ...") and bad head arguments."""
    import tensorflow as tf

    modern = sub.module("modern")

    def attend(d_model: int, num_heads: int, num_kv_heads: int):
        return modern.GroupedQueryAttention(d_model, num_heads, num_kv_heads)(tf.ones([1, 3, d_model]))

    def rotate(head_dim: int):
        return modern.rotary_embedding(tf.ones([1, 2, 3, head_dim]), tf.range(3))

    cases = {
        "valid: GroupedQueryAttention(d_model=16, num_heads=4, num_kv_heads=2) on x [1, 3, 16]":
            lambda: attend(16, 4, 2),
        "valid: rotary_embedding(x [1, 2, 3, 4], positions [3])": lambda: rotate(4),
        "GroupedQueryAttention(d_model=16, num_heads=4, num_kv_heads=3) (heads not divisible by kv heads)":
            lambda: attend(16, 4, 3),
        "GroupedQueryAttention(d_model=18, num_heads=4, num_kv_heads=2) (d_model not divisible by heads)":
            lambda: attend(18, 4, 2),
        "GroupedQueryAttention(d_model=12, num_heads=4, num_kv_heads=2) (odd head size 3)": lambda: attend(12, 4, 2),
        "rotary_embedding(x [1, 2, 3, 5], positions [3]) (odd head size 5)": lambda: rotate(5),
    }
    return {case: error_name(fn) for case, fn in cases.items()}


# ---------------------------------------------------------------------------------------------------- model
def _model(sub, config: dict, seed: int, scale: float | None = None):
    """ModernLanguageModel(**config), initialised from `seed` and called once; with `scale`, every weight is then
    redrawn as N(0, scale^2) (around 1 for the RMSNorm scales), whatever the submission's initialisation."""
    import tensorflow as tf

    seed_everything(seed)
    model = sub.module("modern").ModernLanguageModel(**config)
    model(tf.zeros([1, 1], tf.int32))
    if scale is not None:
        rng = np.random.default_rng(seed)
        for variable in model.weights:
            base = 1.0 if weight_name(variable) == "scale" else 0.0
            variable.assign(base + rng.normal(0.0, float(scale), tuple(variable.shape)).astype(np.float32))
    return model


@probe("modern.model_with_weights")
def model_with_weights(sub, config: dict, weights: dict, tokens: np.ndarray) -> dict:
    """{"logits": [B, T, V]} of ModernLanguageModel(**config) after assigning `weights` by path
    ("token_embedding/embeddings", "block_<i>/attention_norm/scale", ..., "final_norm/scale", "output_layer/kernel")."""
    import tensorflow as tf

    model = _model(sub, config, 0)
    _assign_by_path(model, weights, "ModernLanguageModel")
    return {"logits": to_numpy(model(tf.constant(tokens, tf.int32)))}


@probe("modern.model_state")
def model_state(sub, config: dict, seed: int, tokens: np.ndarray) -> dict:
    """initial_state(B) and the state and logits of step(tokens [B, T]) from it: {"initial", "after": {"caches": [one
    {"key", "value"} per block], "position"}, "logits"}."""
    import tensorflow as tf

    model = _model(sub, config, seed)
    model.jit_decode = False
    initial = model.initial_state(int(tokens.shape[0]))
    logits, state = model.step(tf.constant(tokens, tf.int32), initial)

    def plain(s: dict) -> dict:
        caches = [{key: to_numpy(value) for key, value in cache.items()} for cache in s["caches"]]
        return {"caches": caches, "position": int(s["position"])}

    return {"initial": plain(initial), "after": plain(state), "logits": to_numpy(logits)}


@probe("modern.kv_cache")
def kv_cache(sub, config: dict, seed: int, tokens: np.ndarray, prefix: int) -> dict:
    """Logits [B, T, V] of the whole tokens ("full") and of step(tokens[:, :prefix]) then one step per further token
    ("cached"), weights N(0, 0.3^2)."""
    import tensorflow as tf

    model = _model(sub, config, seed, scale=0.3)
    model.jit_decode = False  # the logits are graded, not XLA: the plain graph needs no compilation and less memory
    x = tf.constant(tokens, tf.int32)
    logits, state = model.step(x[:, :prefix])
    parts = [to_numpy(logits)]
    for t in range(int(prefix), x.shape[1]):
        logits, state = model.step(x[:, t : t + 1], state)
        parts.append(to_numpy(logits))
    return {"full": to_numpy(model(x)), "cached": np.concatenate(parts, axis=1)}


@probe("modern.untied_output")
def untied_output(sub, config: dict, seed: int, tokens: np.ndarray, token: int, delta: np.ndarray) -> dict:
    """Logits [3, B, T, V]: as drawn (weights N(0, 0.3^2)), after adding `delta` [d] to row `token` of
    token_embedding.embeddings, then after also adding `delta` to column `token` of output_layer.kernel."""
    import tensorflow as tf

    model = _model(sub, config, seed, scale=0.3)
    x = tf.constant(tokens, tf.int32)
    logits = [to_numpy(model(x))]
    for variable, index in ((model.token_embedding.embeddings, np.s_[int(token)]),
                            (model.output_layer.kernel, np.s_[:, int(token)])):
        value = to_numpy(variable).copy()
        value[index] += delta.astype(value.dtype)
        variable.assign(value)
        logits.append(to_numpy(model(x)))
    return {"logits": np.stack(logits)}


@probe("modern.model_weights")
def model_weights(sub, config: dict, seed: int, tokens: np.ndarray) -> dict:
    """{"paths": every trainable weight's path, "shapes": their shapes} of ModernLanguageModel(**config) after a call
    on tokens [B, T] (which must give logits [B, T, V])."""
    import tensorflow as tf

    model = _model(sub, config, seed)
    logits = model(tf.constant(tokens, tf.int32))
    if tuple(logits.shape) != (*tokens.shape, int(config["vocab_size"])):
        raise ValueError(f"the model returned logits of shape {list(logits.shape)}")
    weights = model.trainable_weights
    return {"paths": [str(getattr(v, "path", v.name)) for v in weights],
            "shapes": [[int(n) for n in v.shape] for v in weights]}


@probe("modern.too_long")
def too_long(sub, config: dict, seed: int) -> dict:
    """Name of the exception raised when calling the model on context_length + 1 tokens (None if none)."""
    import tensorflow as tf

    model = _model(sub, config, seed)
    return {"error": error_name(lambda: model(tf.zeros([1, int(config["context_length"]) + 1], tf.int32)))}


@probe("modern.generate")
def generate(sub, config: dict, seed: int, scale: float, prompt: np.ndarray, max_new_tokens: int,
             temperature: float, top_k: int, top_p: float, generate_seed: int) -> dict:
    """samplers.generate through ModernLanguageModel(**config) (weights N(0, scale^2), RMSNorm scales around 1) past
    its context, and what each step should draw given the tokens before it (as the probe transformer.generate does
    for part 4's model): {"ids": [B, T0 + N], "expected": [N, B], "logits": [N, B, V] (the recomputed next-token
    logits)}. The decoding step runs as a plain graph (jit_decode False)."""
    model = _model(sub, config, seed, scale=scale)
    return generate_and_recompute(sub, model, prompt, int(max_new_tokens), int(config["context_length"]),
                                  temperature, top_k, top_p, generate_seed)


# ---------------------------------------------------------------------------------------------------- optimizer
def _adamw_trajectory(optim, settings: dict, params: dict, grads: dict, compiled: bool) -> dict:
    """{name: values [S, ...] after each step} of optim.AdamW(**settings) on keras.Variables named and valued by
    `params`, step s applying grads[name][s]; `compiled` runs apply_gradients inside tf.function."""
    import keras
    import tensorflow as tf

    names = sorted(params)
    variables = [keras.Variable(np.asarray(params[name], np.float32), name=name) for name in names]
    optimizer = optim.AdamW(**settings)

    def apply(gradients):
        optimizer.apply_gradients(list(zip(gradients, variables, strict=True)))

    if compiled:
        optimizer.build(variables)
        apply = tf.function(apply)
    trajectory: dict[str, list] = {name: [] for name in names}
    for s in range(int(np.asarray(grads[names[0]]).shape[0])):
        apply([tf.constant(grads[name][s], tf.float32) for name in names])
        for name, variable in zip(names, variables, strict=True):
            trajectory[name].append(to_numpy(variable))
    return {name: np.stack(values) for name, values in trajectory.items()}


@probe("modern.adamw")
def adamw(sub, settings: dict, params: dict, grads: dict, modes: list) -> dict:
    """{mode: {name: [S, ...]}} for each mode in `modes`: "eager" (apply_gradients called eagerly) or "compiled"
    (inside tf.function); each mode starts from fresh variables and a fresh optim.AdamW(**settings)."""
    optim = sub.module("optim")
    return {mode: _adamw_trajectory(optim, settings, params, grads, mode == "compiled") for mode in modes}


@probe("modern.schedule")
def schedule(sub, config: dict, steps: list, modes: list) -> dict:
    """{mode: float64 [len(steps)]}: optim.WarmupCosineSchedule(**config) at each step, called with a Python int
    ("python") or, as an optimizer does, with an int64 variable inside tf.function ("graph")."""
    import tensorflow as tf

    lr = sub.module("optim").WarmupCosineSchedule(**config)
    out = {}
    if "python" in modes:
        out["python"] = np.array([float(to_numpy(lr(int(s)))) for s in steps])
    if "graph" in modes:
        step = tf.Variable(0, dtype=tf.int64)
        compiled = tf.function(lambda: lr(step))
        values = []
        for s in steps:
            step.assign(int(s))
            values.append(float(to_numpy(compiled())))
        out["graph"] = np.array(values)
    return out


@probe("modern.schedule_errors")
def schedule_errors(sub) -> dict:
    """{case: name of the exception raised (None: none)}: correct schedules called at a step ("valid: ...") and bad
    arguments."""
    schedule_class = sub.module("optim").WarmupCosineSchedule

    def at(step: int, *args, **kwargs) -> float:
        return float(to_numpy(schedule_class(*args, **kwargs)(step)))

    cases = {
        "valid: WarmupCosineSchedule(peak=1e-3, warmup_steps=2, total_steps=10) at step 3": lambda: at(3, 1e-3, 2, 10),
        "valid: WarmupCosineSchedule(peak=1e-3, warmup_steps=0, total_steps=10, final_lr=1e-4) at step 3":
            lambda: at(3, 1e-3, 0, 10, final_lr=1e-4),
        "WarmupCosineSchedule(peak=1e-3, warmup_steps=20, total_steps=10) (warmup longer than the run)":
            lambda: schedule_class(1e-3, 20, 10),
        "WarmupCosineSchedule(peak=0.0, warmup_steps=2, total_steps=10)": lambda: schedule_class(0.0, 2, 10),
        "WarmupCosineSchedule(peak=1e-3, warmup_steps=-1, total_steps=10)": lambda: schedule_class(1e-3, -1, 10),
        "WarmupCosineSchedule(peak=1e-3, warmup_steps=2, total_steps=10, final_lr=2e-3) (final_lr above peak)":
            lambda: schedule_class(1e-3, 2, 10, final_lr=2e-3),
    }
    return {case: error_name(fn) for case, fn in cases.items()}
