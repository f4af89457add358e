"""Probes for part 4 (transformer.py): attention on tensors, the multi-head layer and the full model."""

from __future__ import annotations

import numpy as np

from .common import assign_weights, error_name, seed_everything, to_numpy
from .registry import probe


@probe("transformer.attention")
def attention(sub, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """{"output": [..., Tq, dv], "weights": [..., Tq, Tk]} of scaled_dot_product_attention."""
    import tensorflow as tf

    transformer = sub.module("transformer")
    m = None if mask is None else tf.constant(mask, tf.bool)
    output, weights = transformer.scaled_dot_product_attention(
        tf.constant(q, tf.float32), tf.constant(k, tf.float32), tf.constant(v, tf.float32), m
    )
    return {"output": to_numpy(output), "weights": to_numpy(weights)}


@probe("transformer.mha_forward")
def mha_forward(sub, d_model: int, num_heads: int, weights: dict, x: np.ndarray) -> dict:
    """{"y": MultiHeadSelfAttention(d_model, num_heads)(x [B, T, d_model])} with the given weights (by name)."""
    import tensorflow as tf

    transformer = sub.module("transformer")
    layer = transformer.MultiHeadSelfAttention(d_model, num_heads)
    inputs = tf.constant(x, tf.float32)
    layer(inputs[:, :1])
    assign_weights(layer, weights, "MultiHeadSelfAttention")
    return {"y": to_numpy(layer(inputs))}


def _model(sub, config: dict, seed: int):
    import tensorflow as tf

    seed_everything(seed)
    transformer = sub.module("transformer")
    model = transformer.TransformerLanguageModel(**config)
    model(tf.zeros([1, 1], tf.int32))
    return model


@probe("transformer.model_forward")
def model_forward(sub, config: dict, seed: int, tokens: np.ndarray) -> dict:
    """{"logits": [B, T, V]} of a TransformerLanguageModel(**config) whose weights the probe draws from `seed`.

    Every weight gets N(0, 0.1^2) noise (around 1 for LayerNorm's gamma), whatever the submission's initialisation:
    at a small initial scale (GPT-2's 0.02, say) the first token moves the last logits by less than the tolerance
    of the causality check.
    """
    import tensorflow as tf

    model = _model(sub, config, seed)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        base = 1.0 if variable.path.endswith("gamma") else 0.0
        variable.assign(base + rng.normal(0.0, 0.1, tuple(variable.shape)).astype(np.float32))
    return {"logits": to_numpy(model(tf.constant(tokens, tf.int32)))}


def _sublayer(owner, name: str):
    """The sublayer attribute `name` of `owner`, or None; "block_<i>" is also `owner.blocks[i]` (a tuple of blocks)."""
    found = getattr(owner, name, None)
    blocks = getattr(owner, "blocks", None)
    if found is None and name.startswith("block_") and name[6:].isdigit() and isinstance(blocks, (list, tuple)):
        found = blocks[int(name[6:])] if int(name[6:]) < len(blocks) else None
    return found


def _assign_by_path(model, weights: dict, what: str) -> None:
    """Assign each weights["<sublayer>/.../<variable>"] (a path below the model, e.g. "block_0/norm1/gamma").

    Every component but the last is a sublayer attribute (token_embedding, block_0, attention, norm1, final_norm...,
    the names the given __init__ creates); the last is the variable's name, looked up as an attribute of that
    sublayer and, failing that, among its weights by name. Raises ValueError naming a missing sublayer or weight, or a
    wrong shape.
    """
    for path, value in weights.items():
        *layers, leaf = path.split("/")
        owner, where = model, what
        for name in layers:
            owner, where = _sublayer(owner, name), f"{where}.{name}"
            if owner is None:
                raise ValueError(f"{where} does not exist: keep the sublayer names that the given code creates.")
        variable = getattr(owner, leaf, None)
        if hasattr(variable, "assign") and hasattr(variable, "shape"):
            if tuple(variable.shape) != tuple(value.shape):
                raise ValueError(f"{where}.{leaf} has shape {list(variable.shape)}, expected {list(value.shape)}.")
            variable.assign(value)
        else:
            assign_weights(owner, {leaf: value}, where)


@probe("transformer.model_with_weights")
def model_with_weights(sub, config: dict, weights: dict, tokens: np.ndarray) -> dict:
    """{"logits": [B, T, V]} of a TransformerLanguageModel(**config) after assigning `weights` by path.

    weights: {"token_embedding/embeddings": [V, d], "position_embedding/embeddings" ("learned" only),
    "block_<i>/attention/<query|key|value|output>_<kernel|bias>", "block_<i>/<norm1|norm2>/<gamma|beta>",
    "block_<i>/<mlp_hidden|mlp_output>/<kernel|bias>", "final_norm/<gamma|beta>", "output_bias": [V]}.
    """
    import tensorflow as tf

    model = _model(sub, config, 0)
    _assign_by_path(model, weights, "TransformerLanguageModel")
    return {"logits": to_numpy(model(tf.constant(tokens, tf.int32)))}


@probe("transformer.tied_embedding")
def tied_embedding(sub, config: dict, seed: int, tokens: np.ndarray, token: int, delta: np.ndarray) -> dict:
    """Logits before and after adding `delta`, then 2 * `delta`, to row `token` of token_embedding.embeddings."""
    import tensorflow as tf

    model = _model(sub, config, seed)
    x = tf.constant(tokens, tf.int32)
    table = model.token_embedding.embeddings
    logits = [to_numpy(model(x))]
    for _ in range(2):
        rows = to_numpy(table).copy()
        rows[int(token)] += delta.astype(rows.dtype)
        table.assign(rows)
        logits.append(to_numpy(model(x)))
    return {"logits": np.stack(logits)}


@probe("transformer.kv_cache")
def kv_cache(sub, config: dict, seed: int, tokens: np.ndarray, prefix: int) -> dict:
    """Full logits [B, T, V] and the logits of step(tokens[:, :prefix]) then one step per further token."""
    import tensorflow as tf

    model = _model(sub, config, seed)
    model.jit_decode = False  # the logits are graded, not XLA: the plain graph needs no compilation and less memory
    x = tf.constant(tokens, tf.int32)
    full = to_numpy(model(x))
    logits, state = model.step(x[:, :prefix])
    parts = [to_numpy(logits)]
    for t in range(prefix, x.shape[1]):
        logits, state = model.step(x[:, t : t + 1], state)
        parts.append(to_numpy(logits))
    return {"full": full, "cached": np.concatenate(parts, axis=1)}


@probe("transformer.too_long")
def too_long(sub, config: dict, seed: int) -> dict:
    """Name of the exception raised when calling the model on context_length + 1 tokens (None if none)."""
    import tensorflow as tf

    model = _model(sub, config, seed)
    tokens = tf.zeros([1, int(config["context_length"]) + 1], tf.int32)
    return {"error": error_name(lambda: model(tokens))}


def _copy_trainable(source, target) -> None:
    """Assign the trainable variables of `source` to those of `target`, a model or layer of the same class."""
    for a, b in zip(source.trainable_weights, target.trainable_weights, strict=True):
        b.assign(a)


@probe("transformer.dropout")
def dropout(sub, d_model: int, num_heads: int, rate: float, weights: dict, x: np.ndarray, draws: int, config: dict,
            seed: int, tokens: np.ndarray) -> dict:
    """Dropout of the attention layer and of the model, against copies without dropout.

    MultiHeadSelfAttention(d_model, num_heads, dropout=rate) with the given weights on x [1, T, d]: its output with
    training=False, that of a dropout-0 layer with the same weights, and the mean and standard deviation over `draws`
    independent training=True outputs (x tiled to [draws, T, d] in one call: a new dropout mask per row). Then
    TransformerLanguageModel(**config, dropout=rate) and a dropout-0 copy with the same weights on tokens [B, T]: the
    logits with training=False, of the copy, and of two training=True calls.
    """
    import tensorflow as tf

    transformer = sub.module("transformer")
    inputs = tf.constant(x, tf.float32)
    layers = [transformer.MultiHeadSelfAttention(int(d_model), int(num_heads), dropout=r) for r in (float(rate), 0.0)]
    for layer in layers:
        layer(inputs[:, :1])
        assign_weights(layer, weights, "MultiHeadSelfAttention")
    trained = to_numpy(layers[0](tf.tile(inputs, [int(draws), 1, 1]), training=True)).astype(np.float64)
    models = []
    for r in (float(rate), 0.0):
        seed_everything(seed)
        model = transformer.TransformerLanguageModel(**config, dropout=r)
        model(tf.zeros([1, 1], tf.int32))
        models.append(model)
    _copy_trainable(models[0], models[1])
    ids = tf.constant(tokens, tf.int32)
    return {
        "mha_eval": to_numpy(layers[0](inputs, training=False)), "mha_zero": to_numpy(layers[1](inputs)),
        "mha_mean": trained.mean(axis=0), "mha_std": trained.std(axis=0, ddof=1),
        "model_eval": to_numpy(models[0](ids, training=False)), "model_zero": to_numpy(models[1](ids)),
        "model_train": np.stack([to_numpy(models[0](ids, training=True)) for _ in range(2)]),
    }


@probe("transformer.output_bias")
def output_bias(sub, config: dict, seed: int, tokens: np.ndarray, bias: np.ndarray) -> dict:
    """Logits [2, B, T, V] of a TransformerLanguageModel(**config) with output_bias set to 0, then to `bias`."""
    import tensorflow as tf

    model = _model(sub, config, seed)
    x = tf.constant(tokens, tf.int32)
    logits = []
    for value in (np.zeros_like(bias), bias):
        model.output_bias.assign(value.astype(np.float32))
        logits.append(to_numpy(model(x)))
    return {"logits": np.stack(logits)}


def _filtered(logits, temperature: float, top_k: int, top_p: float):
    """logits [B, V] / temperature with top-k, then top-p (the handout's rules) applied: dropped tokens -inf."""
    import tensorflow as tf

    x = logits / temperature
    kth = tf.math.top_k(x, k=top_k).values[:, -1:]
    x = tf.where(x >= kth, x, -np.inf)
    ordered = tf.sort(x, axis=-1, direction="DESCENDING")
    before = tf.cumsum(tf.nn.softmax(ordered, axis=-1), axis=-1, exclusive=True)
    threshold = tf.reduce_min(tf.where(before < top_p, ordered, np.inf), axis=-1, keepdims=True)
    return tf.where(x >= threshold, x, -np.inf)


@probe("transformer.generate")
def generate(sub, config: dict, seed: int, scale: float, prompt: np.ndarray, max_new_tokens: int,
             temperature: float, top_k: int, top_p: float, generate_seed: int) -> dict:
    """samplers.generate through a TransformerLanguageModel(**config) (weights N(0, scale^2), gamma around 1) past
    its context, and what each step should draw given the tokens before it. The decoding step runs as a plain graph
    (jit_decode False): the same cached_forward as XLA's, without the compilation's time and memory in the worker.

    The handout's rule fixes which tokens the cache holds at every step (the prompt's last C tokens, one more per
    step, a restart from the last C // 2 when full); step s should draw from the full recompute model(those tokens)
    at the last position, filtered by temperature, top-k and top-p, with stateless_categorical and seed
    [generate_seed, s] (`generate_and_recompute`). Returns {"ids": [B, T0 + N], "expected": [N, B], "logits":
    [N, B, V] (the recomputed next-token logits)}.
    """
    model = _model(sub, config, seed)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        base = 1.0 if variable.path.endswith("gamma") else 0.0
        variable.assign(base + rng.normal(0.0, float(scale), tuple(variable.shape)).astype(np.float32))
    return generate_and_recompute(sub, model, prompt, int(max_new_tokens), int(config["context_length"]),
                                  temperature, top_k, top_p, generate_seed)


def generate_and_recompute(sub, model, prompt: np.ndarray, n: int, limit: int, temperature: float, top_k: int,
                           top_p: float, generate_seed: int) -> dict:
    """samplers.generate(model, prompt, n) with model.step as a plain graph, and what each step should draw: the
    full recompute model(the tokens the cache holds) at the last position, filtered and drawn with seed
    [generate_seed, s]. `limit` is the model's context length. {"ids", "expected", "logits"} as the probes return."""
    import tensorflow as tf

    model.jit_decode = False
    ids = to_numpy(sub.module("samplers").generate(model, prompt, n, temperature=temperature, top_k=int(top_k),
                                                   top_p=float(top_p), seed=int(generate_seed)))
    if ids.shape != (prompt.shape[0], prompt.shape[1] + n):
        raise ValueError(f"generate returned ids of shape {list(ids.shape)}, expected "
                         f"{[prompt.shape[0], prompt.shape[1] + n]}")
    start = max(prompt.shape[1] - limit, 0)  # the cache holds ids[:, start:end]
    end = prompt.shape[1]
    expected, logits = [], []
    for s in range(n):
        last = model(tf.constant(ids[:, start:end], tf.int32))[:, -1]
        logits.append(to_numpy(last))
        filtered = _filtered(last, float(temperature), int(top_k), float(top_p))
        expected.append(to_numpy(tf.random.stateless_categorical(
            filtered, 1, seed=tf.constant([int(generate_seed), s], tf.int64), dtype=tf.int32)[:, 0]))
        if end - start >= limit:
            start = end + 1 - max(limit // 2, 1)
        end += 1
    return {"ids": ids, "expected": np.stack(expected), "logits": np.stack(logits)}
