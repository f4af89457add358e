"""Hidden tests of part 6: the modern decoder (modern.py, section `modern`) and its optimizer (optim.py, section
`optimizer`).

Expected values come from the numpy oracles in `oracles.py` (RMSNorm, the rotary embedding, SwiGLU, the whole decoder,
AdamW, the warmup-cosine schedule) and, for grouped-query attention with RoPE the identity (every position 0), from
keras.layers.GroupQueryAttention with the kernels copied. While the fixtures are recorded, the AdamW and schedule
oracles are also checked against keras.optimizers.AdamW (vectors excluded from decay) and
keras.optimizers.schedules.CosineDecay (warmup from 0 to the peak), which define the same rules.

Each test grades one thing, so that a bug costs the tests of what it breaks (see "Points rationale" in the README):
the whole-model oracle is the one test that every component of the decoder reaches. Elsewhere a component is checked
against the submission's own other components: RoPE inside the attention by its relative-position property (outputs
at positions p + c equal those at p: queries and keys rotated, values not), the key cache against the submission's
rotary_embedding, the block against its own sublayers wired as a pre-norm block, float16 results against the same
code on the values in float32, weight decay against the decay-free steps of the same AdamW (with the gradients given,
decoupled decay changes only p_t = (1 - lr wd) p_{t-1} - step_t), tf.function against eager. A tiled instead of
repeated grouping of the key/value heads, a RoPE pairing adjacent features or another theta exponent, a wrong Adam
step: each loses its own tests and, for the decoder's layers, the model oracle, not every test that runs them.
"""

from __future__ import annotations

import numpy as np

from autograder.judge.hidden import oracles
from autograder.judge.hidden.common import as_array, close, expect_dict, expect_error, expect_errors
from autograder.judge.hidden.transformer import (
    GENERATE_MISMATCHES,
    GENERATE_NEW_TOKENS,
    WeightDraws,
    _borderline,
)
from autograder.judge.registry import TestFailure, hidden_test

PART = "modern"
OPTIMIZER = "optimizer"

D_MODEL, HEADS, HEAD_DIM = 16, 4, 4
KV_HEADS = (1, 2, 4)
"""Key/value heads of the Keras oracle test: multi-query, grouped (two query heads per key/value head) and
multi-head attention."""
GQA_THETA = 100.0
"""theta of the RoPE attention tests: at small positions every pair of a head of 4 features turns noticeably."""
RMS_CASES = {"assigned": ((2, 5, 8), 0.7, None), "epsilon": ((3, 4, 12), 0.3, 0.25), "fresh": ((2, 3, 6), 0.5, None)}
"""RMSNorm inputs by case: (shape, mean of the N(mean, 1) entries (not 0, so that subtracting the mean shows),
epsilon (None: the default)); "fresh" keeps the built scale (ones), the others get a hidden scale."""
HALF_SCALE = 400.0
"""float16 inputs of the mixed-precision test are N(0, HALF_SCALE^2): their squares overflow float16 (above 65504),
so only statistics computed in float32 give finite outputs."""
ROTARY_CASES = {"default": ((2, 3, 5, 8), None, "range"), "explicit": ((1, 2, 6, 16), 500.0, "shuffled"),
                "small": ((2, 1, 4, 4), 10000.0, "shuffled")}
"""rotary_embedding inputs by case: (x shape [B, H, T, hd], theta (None: the default), positions: 0 .. T - 1 or
distinct positions below ROTARY_MAX_POSITION in random order)."""
ROTARY_MAX_POSITION = 200
"""Positions stay below this: float32 angles position * frequency then err by less than 2e-5 radians."""
SWIGLU_D, SWIGLU_F = 8, 12
BLOCK_CONFIG = {"d_model": D_MODEL, "num_heads": HEADS, "num_kv_heads": 2, "hidden_dim": 24}
MODEL_CONFIG = {"vocab_size": 19, "context_length": 12, "d_model": D_MODEL, "num_heads": HEADS, "num_kv_heads": 2,
                "num_layers": 2}
ORACLE_CONFIG = dict(MODEL_CONFIG, num_kv_heads=1)
"""The model of the oracle test: one key/value head, so that which query heads share it cannot matter there (a tiled
instead of repeated grouping costs only the H/2 case of the Keras attention test); the default SwiGLU width."""
GENERATE_CONFIG = dict(MODEL_CONFIG, context_length=8)


def swiglu_hidden_dim(d_model: int, multiple_of: int = 32) -> int:
    """Llama's SwiGLU width (the handout's given rule): int(8 d_model / 3) rounded up to a multiple of multiple_of."""
    return -(-int(8 * d_model / 3) // multiple_of) * multiple_of


# ---------------------------------------------------------------------------------------------------- hidden inputs
def _weights(ctx, draws: WeightDraws, key: str = "weights") -> dict[str, np.ndarray]:
    """Hidden float32 weights, each stored under "<key>/<name>"."""
    return {name: ctx.hidden(f"{key}/{name}", lambda mean=mean, std=std, shape=shape: (
        mean + ctx.rng.normal(0.0, std, shape)).astype(np.float32)) for name, (mean, std, shape) in draws.items()}


def _gqa_draws(d_model: int, heads: int, kv_heads: int, prefix: str = "") -> WeightDraws:
    """The bias-free kernels of grouped-query attention: query [d, H, hd], key and value [d, H_kv, hd], output
    [H, hd, d]."""
    hd = d_model // heads
    return {f"{prefix}query_kernel": (0.0, 0.3, (d_model, heads, hd)),
            f"{prefix}key_kernel": (0.0, 0.3, (d_model, kv_heads, hd)),
            f"{prefix}value_kernel": (0.0, 0.3, (d_model, kv_heads, hd)),
            f"{prefix}output_kernel": (0.0, 0.3, (heads, hd, d_model))}


def _block_draws(config: dict, prefix: str = "") -> WeightDraws:
    """The weights of a ModernBlock, by path below it."""
    d, f = config["d_model"], config.get("hidden_dim") or swiglu_hidden_dim(config["d_model"])
    return {f"{prefix}attention_norm/scale": (1.0, 0.2, (d,)),
            **_gqa_draws(d, config["num_heads"], config["num_kv_heads"], f"{prefix}attention/"),
            f"{prefix}mlp_norm/scale": (1.0, 0.2, (d,)),
            f"{prefix}mlp/gate/kernel": (0.0, 0.3, (d, f)), f"{prefix}mlp/up/kernel": (0.0, 0.3, (d, f)),
            f"{prefix}mlp/down/kernel": (0.0, 0.25, (f, d))}


def _model_draws(config: dict) -> WeightDraws:
    """The weights of a ModernLanguageModel, by path below it."""
    v, d = config["vocab_size"], config["d_model"]
    draws: WeightDraws = {"token_embedding/embeddings": (0.0, 0.5, (v, d))}
    for i in range(config["num_layers"]):
        draws.update(_block_draws(config, f"block_{i}/"))
    draws.update({"final_norm/scale": (1.0, 0.2, (d,)), "output_layer/kernel": (0.0, 0.3, (d, v))})
    return draws


def _parameter_count(config: dict) -> int:
    """Weights of a bias-free ModernLanguageModel(**config): embedding, per block two scales, the four attention
    kernels and the three SwiGLU kernels, the final scale and the untied output kernel."""
    v, d, h, kv = config["vocab_size"], config["d_model"], config["num_heads"], config["num_kv_heads"]
    hd, f = d // h, config.get("hidden_dim") or swiglu_hidden_dim(d)
    block = 2 * d + 2 * d * h * hd + 2 * d * kv * hd + 3 * d * f
    return v * d + config["num_layers"] * block + d + d * v


def _keras_gqa(weights: dict[str, np.ndarray], x: np.ndarray, num_kv_heads: int) -> np.ndarray:
    """keras.layers.GroupQueryAttention(use_bias=False) called with use_causal_mask=True, kernels copied."""
    import keras

    heads, head_dim = weights["query_kernel"].shape[1:]
    layer = keras.layers.GroupQueryAttention(head_dim=head_dim, num_query_heads=heads,
                                             num_key_value_heads=num_kv_heads, use_bias=False)
    layer(x, x, use_causal_mask=True)
    for name in ("query", "key", "value", "output"):
        getattr(layer, f"_{name}_dense").kernel.assign(weights[f"{name}_kernel"])
    return np.asarray(layer(x, x, use_causal_mask=True))


def _per_case(cases, check) -> float | None:
    """Run `check(case)` for every case: full credit when all pass, the fraction that passed otherwise; TestFailure
    with the first message when none does."""
    failures = []
    for case in cases:
        try:
            check(case)
        except TestFailure as exc:
            failures.append(str(exc))
    if len(failures) == len(cases):
        raise TestFailure(failures[0])
    return None if not failures else (len(cases) - len(failures)) / len(cases)


# ---------------------------------------------------------------------------------------------------- RMSNorm
@hidden_test("RMSNorm: x / sqrt(mean(x^2 over the last axis) + epsilon) * scale, with its weight scale [d] built as "
             "ones", PART, 1.5)
def test_rms_norm(ctx) -> None:
    for case, (shape, mean, epsilon) in RMS_CASES.items():
        x = ctx.hidden(f"{case}/x", lambda shape=shape, mean=mean: ctx.rng.normal(mean, 1.0, shape).astype(np.float32))
        scale = None if case == "fresh" else ctx.hidden(
            f"{case}/scale", lambda shape=shape: ctx.rng.normal(1.0, 0.3, shape[-1]).astype(np.float32))
        what = f"RMSNorm({'' if epsilon is None else f'epsilon={epsilon:g}'})(x {list(shape)})"
        reply = expect_dict(ctx.call("modern.rms_norm", x=x, scale=scale, epsilon=epsilon), ("y", "initial"), what)
        initial = reply["initial"]
        if not isinstance(initial, dict) or list(initial) != ["scale"]:
            names = sorted(initial) if isinstance(initial, dict) else []
            raise TestFailure(f"{what}: the layer must have exactly one weight, named scale (found {names}).")
        built = as_array(initial["scale"], f"{what}: the weight scale once built", "f", (shape[-1],))
        if not np.array_equal(built, np.ones(shape[-1])):
            raise TestFailure(f"{what}: the weight scale must start as ones.")
        y = as_array(reply["y"], what, "f", shape)
        if y.dtype != np.float32:
            raise TestFailure(f"{what}: float32 inputs must give float32 outputs, got {y.dtype}.")
        expected = ctx.expected(f"{case}/y", lambda x=x, scale=scale, epsilon=epsilon: oracles.rms_norm(
            x, np.ones(x.shape[-1]) if scale is None else scale, 1e-6 if epsilon is None else epsilon))
        close(y, expected, f"{what} vs x / sqrt(mean of x^2 over the last axis + epsilon) * scale (no mean "
              "subtracted; epsilon inside the square root; default epsilon 1e-6)", 1e-5, 1e-5)


@hidden_test("RMSNorm and rotary_embedding on float16 inputs: statistics and angles in float32, float16 outputs",
             PART, 0.5)
def test_half_precision(ctx) -> None:
    x = ctx.hidden("norm/x", lambda: ctx.rng.normal(0.0, HALF_SCALE, (2, 3, 16)).astype(np.float16))
    scale = ctx.hidden("norm/scale", lambda: ctx.rng.normal(1.0, 0.2, 16).astype(np.float32))
    what = "RMSNorm(dtype='mixed_float16') on float16 x whose squares overflow float16"
    half = expect_dict(ctx.call("modern.rms_norm", x=x, scale=scale, dtype="mixed_float16"), ("y",), what)
    single = expect_dict(ctx.call("modern.rms_norm", x=x.astype(np.float32), scale=scale), ("y",), what)
    y = as_array(half["y"], what, "f", x.shape, finite=False)
    if y.dtype != np.float16:
        raise TestFailure(f"{what}: the output must keep the input's dtype float16, got {y.dtype}.")
    close(y, as_array(single["y"], f"{what}, on the same values in float32", "f", x.shape),
          f"{what} vs the same layer on the values in float32: compute mean(x^2) in float32 (cast x to float32, "
          "normalise, cast back)", 2e-3, 2e-3)

    rotated = ctx.hidden("rotary/x", lambda: ctx.rng.normal(0.0, 1.0, (1, 2, 6, 8)).astype(np.float16))
    positions = ctx.hidden("rotary/positions", lambda: ctx.rng.choice(
        np.arange(100, ROTARY_MAX_POSITION), 6, replace=False).astype(np.int32))
    what = "rotary_embedding(float16 x [1, 2, 6, 8], positions above 100)"
    half = expect_dict(ctx.call("modern.rotary", x=rotated, positions=positions), ("y",), what)
    single = expect_dict(ctx.call("modern.rotary", x=rotated.astype(np.float32), positions=positions), ("y",), what)
    y = as_array(half["y"], what, "f", rotated.shape)
    if y.dtype != np.float16:
        raise TestFailure(f"{what}: the output must keep the input's dtype float16, got {y.dtype}.")
    close(y, as_array(single["y"], f"{what}, on the same values in float32", "f", rotated.shape),
          f"{what} vs the same function on the values in float32: compute the angles and the rotation in float32 "
          "(float16 angles at these positions are off by hundredths of a radian), then cast back", 4e-3, 2e-3)


# ---------------------------------------------------------------------------------------------------- RoPE, SwiGLU
def _rotary_positions(rng: np.random.Generator, length: int, kind: str) -> np.ndarray:
    if kind == "range":
        return np.arange(length, dtype=np.int32)
    return rng.choice(ROTARY_MAX_POSITION, length, replace=False).astype(np.int32)


@hidden_test("rotary_embedding turns each pair (i, i + hd/2) by positions[t] * theta^(-2i/hd): norms kept, the "
             "given positions used", PART, 2.0)
def test_rotary_embedding(ctx) -> None:
    for case, (shape, theta, kind) in ROTARY_CASES.items():
        x = ctx.hidden(f"{case}/x", lambda shape=shape: ctx.rng.normal(0.0, 1.0, shape).astype(np.float32))
        positions = ctx.hidden(f"{case}/positions", lambda shape=shape, kind=kind: _rotary_positions(
            ctx.rng, shape[2], kind))
        what = (f"rotary_embedding(x {list(shape)}, " + ("positions 0 .. T - 1" if kind == "range" else
                "positions in no particular order") + ("" if theta is None else f", theta={theta:g}") + ")")
        reply = expect_dict(ctx.call("modern.rotary", x=x, positions=positions, theta=theta), ("y",), what)
        y = as_array(reply["y"], what, "f", shape)
        if y.dtype != np.float32:
            raise TestFailure(f"{what}: float32 inputs must give float32 outputs, got {y.dtype}.")
        norms = np.linalg.norm(y.astype(np.float64), axis=-1)
        if np.abs(norms - np.linalg.norm(x.astype(np.float64), axis=-1)).max() > 1e-4:
            raise TestFailure(f"{what}: a rotation keeps the norm of every vector of hd features; these changed.")
        expected = ctx.expected(f"{case}/y", lambda x=x, positions=positions, theta=theta: oracles.rotary(
            x, positions, 10000.0 if theta is None else theta))
        close(y, expected, f"{what} vs turning each pair of features (i, i + hd/2), i < hd/2, by the angle "
              "positions[t] * theta^(-2i/hd) (row t at its own given position)", 1e-4, 1e-4)


@hidden_test("SwiGLU: down(silu(gate(x)) * up(x)) with the given gate, up and down kernels", PART, 1.0)
def test_swiglu(ctx) -> None:
    weights = _weights(ctx, {"gate/kernel": (0.0, 0.4, (SWIGLU_D, SWIGLU_F)),
                             "up/kernel": (0.0, 0.4, (SWIGLU_D, SWIGLU_F)),
                             "down/kernel": (0.0, 0.3, (SWIGLU_F, SWIGLU_D))})
    x = ctx.hidden("x", lambda: ctx.rng.normal(0.0, 1.0, (2, 5, SWIGLU_D)).astype(np.float32))
    what = f"SwiGLU(d_model={SWIGLU_D}, hidden_dim={SWIGLU_F})(x {list(x.shape)}) with copied kernels"
    reply = expect_dict(ctx.call("modern.swiglu", d_model=SWIGLU_D, hidden_dim=SWIGLU_F, weights=weights, x=x),
                        ("y",), what)
    expected = ctx.expected("y", lambda: oracles.swiglu(x, weights["gate/kernel"], weights["up/kernel"],
                                                        weights["down/kernel"]))
    close(as_array(reply["y"], what, "f", x.shape), expected,
          f"{what} vs down(silu(gate(x)) * up(x)) (silu on the gate branch only, no biases)", 1e-5, 1e-4)


# ---------------------------------------------------------------------------------------------------- attention
@hidden_test("GroupedQueryAttention with RoPE the identity equals keras.layers.GroupQueryAttention with copied kernels "
             "(1, H/2 and H key/value heads)", PART, 2.5)
def test_gqa_oracle(ctx) -> float | None:
    x = ctx.hidden("x", lambda: ctx.rng.normal(0.0, 1.0, (2, 7, D_MODEL)).astype(np.float32))

    def check(kv_heads: int) -> None:
        weights = _weights(ctx, _gqa_draws(D_MODEL, HEADS, kv_heads), f"weights/kv{kv_heads}")
        what = (f"GroupedQueryAttention(d_model={D_MODEL}, num_heads={HEADS}, num_kv_heads={kv_heads})"
                f"(x {list(x.shape)}, positions all 0)")
        reply = expect_dict(ctx.call("modern.gqa", d_model=D_MODEL, num_heads=HEADS, num_kv_heads=kv_heads,
                                     weights=weights, x=x, positions=[np.zeros(x.shape[1], np.int32)]), ("y",), what)
        expected = ctx.expected(f"y/kv{kv_heads}", lambda: _keras_gqa(weights, x, kv_heads))
        close(_outputs(reply, 1, x.shape, what)[0], expected,
              f"{what} vs keras.layers.GroupQueryAttention with the same kernels (query head j uses key/value head "
              "j // (H / H_kv): tf.repeat each key/value head, do not tile; causal; scores scaled by 1/sqrt(hd))",
              1e-5, 1e-4)

    return _per_case(KV_HEADS, check)


def _outputs(reply: dict, count: int, shape: tuple[int, ...], what: str) -> list[np.ndarray]:
    """The `count` outputs of shape `shape` of a modern.gqa reply."""
    if not isinstance(reply["y"], list) or len(reply["y"]) != count:
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    return [as_array(y, what, "f", shape) for y in reply["y"]]


@hidden_test("GroupedQueryAttention rotates queries and keys (never values): outputs depend on position differences "
             "only, on the given positions, 0 .. T - 1 by default", PART, 2.0)
def test_gqa_rope(ctx) -> None:
    kv_heads = 2
    weights = _weights(ctx, _gqa_draws(D_MODEL, HEADS, kv_heads))
    x = ctx.hidden("x", lambda: ctx.rng.normal(0.0, 1.0, (2, 6, D_MODEL)).astype(np.float32))
    length = x.shape[1]
    given = ctx.hidden("positions", lambda: ctx.rng.choice(50, length, replace=False).astype(np.int32))
    shift = ctx.hidden("shift", lambda: int(ctx.rng.integers(20, ROTARY_MAX_POSITION - 50)))
    cases = [given, given + shift, np.arange(length, dtype=np.int32), None, np.zeros(length, np.int32)]
    what = (f"GroupedQueryAttention(d_model={D_MODEL}, num_heads={HEADS}, num_kv_heads={kv_heads}, "
            f"theta={GQA_THETA:g})(x {list(x.shape)}, positions)")
    reply = expect_dict(ctx.call("modern.gqa", d_model=D_MODEL, num_heads=HEADS, num_kv_heads=kv_heads,
                                 weights=weights, x=x, positions=cases, theta=GQA_THETA), ("y",), what)
    at_given, shifted, at_range, default, at_zero = _outputs(reply, len(cases), x.shape, what)
    close(shifted, at_given, f"{what}: the outputs at the given positions plus a constant vs at the given positions "
          "(rotating q and k, and not v, makes every score depend on position differences only)", 1e-4, 1e-4)
    close(default, at_range, f"{what}: the outputs without positions vs at positions 0 .. T - 1", 1e-5, 1e-5)
    if min(np.abs(at_given - at_range).max(), np.abs(at_given - at_zero).max()) < 1e-3:
        raise TestFailure(f"{what}: the outputs at the given positions equal those at 0 .. T - 1 or at all 0; rotate "
                          "q and k at the positions given (start + range(T) only when positions is None).")


@hidden_test("GroupedQueryAttention with a cache: H_kv heads [B, H_kv, C, hd], keys rotated at their absolute "
             "positions, outputs equal to no cache", PART, 2.0)
def test_gqa_cache(ctx) -> None:
    kv_heads, capacity = 2, 12
    weights = _weights(ctx, _gqa_draws(D_MODEL, HEADS, kv_heads))
    x = ctx.hidden("x", lambda: ctx.rng.normal(0.0, 1.0, (2, 9, D_MODEL)).astype(np.float32))
    prefix = ctx.hidden("prefix", lambda: int(ctx.rng.integers(2, 6)))
    what = (f"GroupedQueryAttention(d_model={D_MODEL}, num_heads={HEADS}, num_kv_heads={kv_heads}, "
            f"theta={GQA_THETA:g}) with a cache of {capacity} positions (a prefix, then one position at a time)")
    reply = expect_dict(ctx.call("modern.gqa_cache", d_model=D_MODEL, num_heads=HEADS, num_kv_heads=kv_heads,
                                 weights=weights, x=x, prefix=prefix, capacity=capacity, theta=GQA_THETA),
                        ("full", "cached", "key", "value", "rotated"), what)
    shape = (x.shape[0], kv_heads, capacity, HEAD_DIM)
    key = as_array(reply["key"], f"{what}: the key cache returned", "f", shape)
    value = as_array(reply["value"], f"{what}: the value cache returned", "f", shape)
    full = as_array(reply["full"], f"{what}: the output without a cache", "f", x.shape)
    close(as_array(reply["cached"], f"{what}: the outputs with the cache", "f", x.shape), full,
          f"{what}: outputs with the cache vs without (new positions at start, start + 1, ..., rotated there)",
          1e-5, 1e-4)
    length = x.shape[1]
    rotated = as_array(reply["rotated"], "rotary_embedding of the projected keys at 0 .. T - 1", "f",
                       (x.shape[0], kv_heads, length, HEAD_DIM))
    close(key[:, :, :length], rotated, f"{what}: the key cache at the positions written vs rotary_embedding of the "
          "projected keys (each position's key rotated at its absolute position)", 1e-5, 1e-4)
    expected_value = ctx.expected("value", lambda: np.einsum("btd,dhk->bhtk", x.astype(np.float64),
                                                             weights["value_kernel"].astype(np.float64)))
    close(value[:, :, :length], expected_value, f"{what}: the value cache at the positions written (the projected "
          "values, never rotated)", 1e-5, 1e-4)
    if np.abs(key[:, :, length:]).max(initial=0.0) > 0 or np.abs(value[:, :, length:]).max(initial=0.0) > 0:
        raise TestFailure(f"{what}: the cache positions never written must stay zero.")


@hidden_test("GroupedQueryAttention and rotary_embedding reject bad head arguments with ValueError", PART, 0.25)
def test_argument_checks(ctx) -> None:
    expect_errors(ctx.call("modern.argument_errors"), "GroupedQueryAttention and rotary_embedding")


# ---------------------------------------------------------------------------------------------------- block, model
@hidden_test("ModernBlock: h = x + attention(attention_norm(x)), out = h + mlp(mlp_norm(h)); the same with a cache",
             PART, 1.5)
def test_block(ctx) -> None:
    config, capacity = BLOCK_CONFIG, 8
    weights = _weights(ctx, _block_draws(config))
    x = ctx.hidden("x", lambda: ctx.rng.normal(0.0, 1.0, (2, 6, config["d_model"])).astype(np.float32))
    prefix = ctx.hidden("prefix", lambda: int(ctx.rng.integers(2, 5)))
    what = "ModernBlock({}) with copied weights".format(", ".join(f"{k}={v}" for k, v in config.items()))
    reply = expect_dict(ctx.call("modern.block", config=config, weights=weights, x=x, prefix=prefix,
                                 capacity=capacity), ("full", "wired", "cached"), what)
    full = as_array(reply["full"], what, "f", x.shape)
    close(full, as_array(reply["wired"], f"{what}: its sublayers called in turn", "f", x.shape),
          f"{what} vs its own sublayers wired as a pre-norm block (h = x + attention(attention_norm(x)), "
          "out = h + mlp(mlp_norm(h)))", 1e-5, 1e-5)
    close(as_array(reply["cached"], f"{what} with a cache", "f", x.shape), full,
          f"{what}: outputs with a cache of {capacity} positions (a prefix, then one position at a time) vs without",
          1e-5, 1e-4)


@hidden_test("ModernLanguageModel equals the modern decoder oracle with copied weights (RMSNorm, RoPE, grouped "
             "attention, SwiGLU, untied output)", PART, 2.5)
def test_model_oracle(ctx) -> None:
    config = ORACLE_CONFIG
    weights = _weights(ctx, _model_draws(config))
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, config["vocab_size"], (2, 10)).astype(np.int32))
    what = "ModernLanguageModel({}) with copied weights".format(", ".join(f"{k}={v}" for k, v in config.items()))
    reply = expect_dict(ctx.call("modern.model_with_weights", config=config, weights=weights, tokens=tokens),
                        ("logits",), what)
    logits = as_array(reply["logits"], f"logits of {what}", "f", tokens.shape + (config["vocab_size"],))
    expected = ctx.expected("logits", lambda: oracles.modern_language_model(weights, tokens, config["num_layers"]))
    close(logits, expected, f"{what} vs the oracle (h = token_embedding(tokens), no positional embedding; each block "
          "pre-norm with RoPE at 0 .. T - 1; logits = output_layer(final_norm(h)), no bias)", 1e-4, 1e-4)


def _check_state(state, what: str, shape: tuple[int, ...], position: int) -> None:
    """A decoding state: {"caches": one {"key", "value"} float32 `shape` per block, "position": `position`}."""
    if not isinstance(state, dict) or not isinstance(state.get("caches"), list):
        raise TestFailure(f"{what}: the state must be a dict with a list 'caches' and 'position'.")
    if len(state["caches"]) != MODEL_CONFIG["num_layers"]:
        raise TestFailure(f"{what}: the state must hold one cache per block ({MODEL_CONFIG['num_layers']}).")
    for cache in state["caches"]:
        expect_dict(cache, ("key", "value"), f"{what}: each cache must be a dict with 'key' and 'value'")
        for name in ("key", "value"):
            array = as_array(cache[name], f"{what}: a cache's {name} (B, H_kv, C, hd)", "f", shape)
            if array.dtype != np.float32:
                raise TestFailure(f"{what}: the caches must be float32, got {array.dtype}.")
    if state.get("position") != position:
        raise TestFailure(f"{what}: the state's position must count the positions seen ({position}).")


@hidden_test("ModernLanguageModel.initial_state holds zero float32 caches [B, H_kv, C, hd] per block; step returns "
             "float32 logits and caches of that shape", PART, 0.5)
def test_model_state(ctx) -> None:
    config = MODEL_CONFIG
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, config["vocab_size"], (3, 4)).astype(np.int32))
    what = "ModernLanguageModel({})".format(", ".join(f"{k}={v}" for k, v in config.items()))
    reply = expect_dict(ctx.call("modern.model_state", config=config, seed=ctx.seed, tokens=tokens),
                        ("initial", "after", "logits"), what)
    shape = (tokens.shape[0], config["num_kv_heads"], config["context_length"], config["d_model"] // HEADS)
    _check_state(reply["initial"], f"{what}.initial_state({tokens.shape[0]})", shape, 0)
    if any(np.any(cache[name] != 0) for cache in reply["initial"]["caches"] for name in ("key", "value")):
        raise TestFailure(f"{what}.initial_state: the caches must start as zeros.")
    logits = as_array(reply["logits"], f"{what}.step(tokens {list(tokens.shape)})", "f",
                      tokens.shape + (config["vocab_size"],))
    if logits.dtype != np.float32:
        raise TestFailure(f"{what}.step: the logits must be float32, got {logits.dtype}.")
    _check_state(reply["after"], f"{what}.step(tokens {list(tokens.shape)}): the new state", shape, tokens.shape[1])


@hidden_test("ModernLanguageModel.step with the KV cache gives the logits of a full recompute", PART, 2.5)
def test_model_kv_cache(ctx) -> None:
    config = MODEL_CONFIG
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, config["vocab_size"], (2, 10)).astype(np.int32))
    prefix = ctx.hidden("prefix", lambda: int(ctx.rng.integers(2, 7)))
    what = "ModernLanguageModel.step (a prompt, then one token at a time)"
    reply = expect_dict(ctx.call("modern.kv_cache", config=config, seed=ctx.seed, tokens=tokens, prefix=prefix),
                        ("full", "cached"), what)
    shape = tokens.shape + (config["vocab_size"],)
    close(as_array(reply["cached"], f"{what}: the logits", "f", shape),
          as_array(reply["full"], "the logits of the model called on all the tokens", "f", shape),
          f"{what}: logits with the KV cache vs a full recompute (each new token at its absolute position)", 1e-4, 1e-4)


def _generate_case(rng: np.random.Generator) -> dict:
    """A prompt [2, 5] and sampling settings, as part 4's generation test draws them."""
    return {"prompt": rng.integers(0, GENERATE_CONFIG["vocab_size"], (2, 5)).tolist(),
            "temperature": float(rng.uniform(0.8, 1.2)), "top_k": int(rng.integers(4, 8)),
            "top_p": float(rng.uniform(0.6, 0.85)), "generate_seed": int(rng.integers(0, 2**31 - 1))}


@hidden_test("generate through ModernLanguageModel past its context with top_k and top_p draws what a full "
             "recompute draws", PART, 2.0, timeout=90.0)
def test_generate_past_context(ctx) -> None:
    case = ctx.hidden("case", lambda: _generate_case(ctx.rng))
    prompt = np.asarray(case["prompt"], dtype=np.int32)
    n, c, vocab = GENERATE_NEW_TOKENS, GENERATE_CONFIG["context_length"], GENERATE_CONFIG["vocab_size"]
    what = (f"samplers.generate(ModernLanguageModel(context_length={c}), prompt {list(prompt.shape)}, "
            f"max_new_tokens={n}, temperature, top_k, top_p, seed)")
    settings = {key: case[key] for key in ("temperature", "top_k", "top_p", "generate_seed")}
    reply = expect_dict(ctx.call("modern.generate", config=GENERATE_CONFIG, seed=ctx.seed, scale=0.3, prompt=prompt,
                                 max_new_tokens=n, **settings), ("ids", "expected", "logits"), what)
    ids = as_array(reply["ids"], what, "iu", (prompt.shape[0], prompt.shape[1] + n))
    if not np.array_equal(ids[:, : prompt.shape[1]], prompt):
        raise TestFailure(f"{what}: the output must start with the prompt.")
    expected = as_array(reply["expected"], "the full recompute's draws", "iu", (n, prompt.shape[0]))
    logits = as_array(reply["logits"], "the full recompute's logits", "f", (n, prompt.shape[0], vocab))
    compared = np.array([[not _borderline(logits[s, b], case["temperature"], case["top_k"], case["top_p"])
                          for b in range(prompt.shape[0])] for s in range(n)])
    mismatches = int(np.sum((ids[:, prompt.shape[1]:].T != expected) & compared))
    if mismatches > GENERATE_MISMATCHES:
        raise TestFailure(f"{what}: {mismatches} of {int(compared.sum())} new tokens differ from the draws of the "
                          "full recompute of the tokens the cache should hold (a restart from the last "
                          "context_length // 2 tokens when it is full); check step() and the rotary positions of "
                          "the cached tokens up to context_length positions.")


@hidden_test("ModernLanguageModel's output layer is untied: logits = output_layer(final_norm(h)), not h E^T", PART,
             0.5)
def test_untied_output(ctx) -> None:
    config, vocab = MODEL_CONFIG, MODEL_CONFIG["vocab_size"]
    token = ctx.hidden("token", lambda: int(ctx.rng.integers(0, vocab)))
    tokens = ctx.hidden("tokens", lambda: ((token + ctx.rng.integers(1, vocab, (2, 6))) % vocab).astype(np.int32))
    delta = ctx.hidden("delta", lambda: ctx.rng.normal(0.0, 1.0, config["d_model"]).astype(np.float32))
    what = "ModernLanguageModel with a changed row of token_embedding.embeddings, then column of output_layer.kernel"
    reply = expect_dict(ctx.call("modern.untied_output", config=config, seed=ctx.seed, tokens=tokens, token=token,
                                 delta=delta), ("logits",), what)
    logits = as_array(reply["logits"], what, "f", (3,) + tokens.shape + (vocab,)).astype(np.float64)
    if np.abs(logits[1] - logits[0]).max() > 1e-5:
        raise TestFailure(f"{what}: changing the embedding of a token absent from the input changed the logits; "
                          "the output layer must be its own Dense(V) (untied), not the embedding matrix.")
    others = np.delete(logits[2] - logits[1], token, axis=-1)
    if np.abs(others).max() > 1e-5 or np.abs(logits[2, ..., token] - logits[1, ..., token]).max() < 1e-3:
        raise TestFailure(f"{what}: changing one column of output_layer.kernel must change that token's logit and "
                          "no other (logits = output_layer(final_norm(h)), no bias).")


@hidden_test("ModernLanguageModel has no biases anywhere: its weights are the embedding, the RMSNorm scales and "
             "bias-free kernels", PART, 0.5)
def test_no_biases(ctx) -> None:
    config = MODEL_CONFIG
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, config["vocab_size"], (1, 5)).astype(np.int32))
    what = "ModernLanguageModel({})".format(", ".join(f"{k}={v}" for k, v in config.items()))
    reply = expect_dict(ctx.call("modern.model_weights", config=config, seed=ctx.seed, tokens=tokens),
                        ("paths", "shapes"), what)
    paths, shapes = reply["paths"], reply["shapes"]
    if not isinstance(paths, list) or not isinstance(shapes, list) or len(paths) != len(shapes):
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    biases = [str(p) for p in paths if "bias" in str(p).split("/")[-1]]
    if biases:
        raise TestFailure(f"{what}: the modern decoder has no biases, found {biases[:3]}.")
    count = sum(int(np.prod(s)) for s in shapes)
    if count != _parameter_count(config):
        raise TestFailure(f"{what}: {count} trainable weights, expected {_parameter_count(config)} (the embedding, "
                          "per block two RMSNorm scales, four attention kernels with H_kv key/value heads and three "
                          "SwiGLU kernels, the final scale and the untied output kernel; nothing else).")


@hidden_test("ModernLanguageModel rejects more than context_length tokens with ValueError", PART, 0.25)
def test_too_long(ctx) -> None:
    reply = expect_dict(ctx.call("modern.too_long", config=MODEL_CONFIG, seed=ctx.seed), ("error",), "")
    expect_error(reply["error"], "ValueError", "ModernLanguageModel on context_length + 1 tokens")


# ---------------------------------------------------------------------------------------------------- optimizer
ADAM_SETTINGS = {"learning_rate": 0.02, "beta_1": 0.85, "beta_2": 0.97, "epsilon": 1e-6}
"""Not Keras's defaults, so that an update that ignores an argument shows."""
DECAY = 0.3
ADAM_STEPS = 5
PARAMS = {"kernel": (0.0, 1.0, (4, 3)), "embeddings": (0.0, 1.0, (5, 2)), "scale": (1.0, 0.1, (3,)),
          "bias": (0.0, 0.1, (3,))}
"""The variables of the AdamW tests: (mean of their values, standard deviation of their values and gradients,
shape); matrices decay, vectors (an RMSNorm scale, a bias) never do."""


def _params(ctx) -> tuple[dict, dict]:
    """Hidden initial values {name: array} and gradients {name: [ADAM_STEPS, ...]} of the PARAMS variables."""
    params = {name: ctx.hidden(f"params/{name}", lambda mean=mean, std=std, shape=shape: ctx.rng.normal(
        mean, std, shape).astype(np.float32)) for name, (mean, std, shape) in PARAMS.items()}
    grads = {name: ctx.hidden(f"grads/{name}", lambda std=std, shape=shape: ctx.rng.normal(
        0.0, std, (ADAM_STEPS, *shape)).astype(np.float32)) for name, (_, std, shape) in PARAMS.items()}
    return params, grads


def _keras_adamw(params: dict, grads: dict, settings: dict) -> dict[str, np.ndarray]:
    """{name: [S, ...]} of keras.optimizers.AdamW(**settings) with the rank-1 variables excluded from decay."""
    import keras
    import tensorflow as tf

    names = sorted(params)
    variables = [keras.Variable(params[name], name=name) for name in names]
    optimizer = keras.optimizers.AdamW(**settings)
    optimizer.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) < 2])
    steps: dict[str, list] = {name: [] for name in names}
    for s in range(grads[names[0]].shape[0]):
        optimizer.apply_gradients([(tf.constant(grads[name][s]), v) for name, v in zip(names, variables, strict=True)])
        for name, variable in zip(names, variables, strict=True):
            steps[name].append(np.asarray(variable))
    return {name: np.stack(values) for name, values in steps.items()}


def _expected_adamw(ctx, key: str, params: dict, grads: dict, settings: dict) -> dict[str, np.ndarray]:
    """The numpy oracle's trajectory {name: [S, ...]}, checked against Keras's AdamW when recorded."""
    computed: dict[str, np.ndarray] = {}

    def oracle(name: str) -> np.ndarray:
        if not computed:
            computed.update(oracles.adamw(params, grads, **settings))
            keras_steps = _keras_adamw(params, grads, settings)
            if any(np.abs(keras_steps[n] - computed[n]).max() > 1e-5 for n in params):
                raise RuntimeError("the AdamW oracle disagrees with keras.optimizers.AdamW")
        return computed[name]

    return {name: ctx.expected(f"{key}/{name}", lambda name=name: oracle(name)) for name in params}


def _check_trajectory(reply, expected: dict, what: str, rule: str) -> None:
    trajectory = expect_dict(reply, tuple(expected), what)
    for name, steps in expected.items():
        actual = as_array(trajectory[name], f"{what}: {name}", "f", steps.shape)
        for s in range(steps.shape[0]):
            close(actual[s], steps[s], f"{what}: {name} {list(steps.shape[1:])} after step {s + 1} ({rule})",
                  1e-5, 1e-5)


def _adamw_reply(ctx, settings: dict, params: dict, grads: dict, modes: list[str], what: str) -> dict:
    return expect_dict(ctx.call("modern.adamw", settings=settings, params=params, grads=grads, modes=modes),
                       tuple(modes), what)


@hidden_test("AdamW without weight decay takes Keras's Adam steps (moments, bias correction, epsilon)", OPTIMIZER, 2.5)
def test_adam_steps(ctx) -> None:
    params, grads = _params(ctx)
    settings = dict(ADAM_SETTINGS, weight_decay=0.0)
    what = "optim.AdamW(weight_decay=0) on a kernel, an embedding, a scale and a bias"
    reply = _adamw_reply(ctx, settings, params, grads, ["eager"], what)
    _check_trajectory(reply["eager"], _expected_adamw(ctx, "steps", params, grads, settings), what,
                      "t = iterations + 1; m <- m + (g - m)(1 - b1); v <- v + (g^2 - v)(1 - b2); "
                      "p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + epsilon)")


@hidden_test("AdamW's first step moves each entry by about the learning rate whatever the gradient's scale (bias "
             "correction)", OPTIMIZER, 1.0)
def test_first_step(ctx) -> None:
    params = {"small": ctx.hidden("small", lambda: ctx.rng.normal(0.0, 1.0, (3, 4)).astype(np.float32)),
              "large": ctx.hidden("large", lambda: ctx.rng.normal(0.0, 1.0, (4,)).astype(np.float32))}
    grads = {"small": ctx.hidden("small_grad", lambda: (1e-4 * ctx.rng.normal(0.0, 1.0, (1, 3, 4))).astype(
                 np.float32)),
             "large": ctx.hidden("large_grad", lambda: (1e2 * ctx.rng.normal(0.0, 1.0, (1, 4))).astype(np.float32))}
    settings = dict(ADAM_SETTINGS, weight_decay=0.0)
    what = "optim.AdamW(weight_decay=0), one step with gradients of scale 1e-4 and 1e2"
    reply = _adamw_reply(ctx, settings, params, grads, ["eager"], what)
    _check_trajectory(reply["eager"], _expected_adamw(ctx, "step", params, grads, settings), what,
                      "the first step is lr g / (|g| + epsilon / sqrt(1 - b2)): the moments' bias corrected, "
                      "epsilon added to sqrt(v) outside the square root")


def _decayed(params: dict, plain: dict, rate: float) -> dict[str, np.ndarray]:
    """The trajectory {name: [S, ...]} that decoupled decay by `rate` = lr * weight_decay makes of the steps of the
    trajectory `plain` without decay: with the gradients given, the Adam steps do not depend on the values, so
    p_t = (1 - rate) p_{t-1} - (q_{t-1} - q_t) for matrices and p_t = p_{t-1} - (q_{t-1} - q_t) for vectors, q being
    the values without decay (q_0 = p_0)."""
    out = {}
    for name, start in params.items():
        q = np.concatenate([start[None].astype(np.float64), np.asarray(plain[name], np.float64)])
        p, steps = q[0], []
        for t in range(1, q.shape[0]):
            p = (1.0 - rate if start.ndim >= 2 else 1.0) * p - (q[t - 1] - q[t])
            steps.append(p)
        out[name] = np.stack(steps)
    return out


@hidden_test("AdamW decays matrices (never vectors) by lr * weight_decay * p before each Adam step, as Keras's AdamW",
             OPTIMIZER, 2.0)
def test_weight_decay(ctx) -> None:
    params, grads = _params(ctx)
    what = f"optim.AdamW(weight_decay={DECAY:g}) on a kernel, an embedding, a scale and a bias"
    plain = _adamw_reply(ctx, dict(ADAM_SETTINGS, weight_decay=0.0), params, grads, ["eager"], what)["eager"]
    plain = expect_dict(plain, tuple(params), what)
    for name, value in params.items():
        as_array(plain[name], f"{what}: {name} without decay", "f", (ADAM_STEPS, *value.shape))
    reply = _adamw_reply(ctx, dict(ADAM_SETTINGS, weight_decay=DECAY), params, grads, ["eager"], what)
    _check_trajectory(reply["eager"], _decayed(params, plain, ADAM_SETTINGS["learning_rate"] * DECAY), what,
                      "the steps it takes with weight_decay=0, after a decoupled decay p <- p - lr * weight_decay * p "
                      "of the variables of rank >= 2 only, applied before the Adam step and never added to the "
                      "gradient")


@hidden_test("AdamW under tf.function takes the steps it takes eagerly", OPTIMIZER, 1.5)
def test_compiled(ctx) -> None:
    params, grads = _params(ctx)
    settings = dict(ADAM_SETTINGS, weight_decay=DECAY)
    what = f"optim.AdamW(weight_decay={DECAY:g}).apply_gradients inside tf.function"
    reply = _adamw_reply(ctx, settings, params, grads, ["eager", "compiled"], what)
    eager = expect_dict(reply["eager"], tuple(params), what)
    for name, value in params.items():
        steps = as_array(eager[name], f"{what}: {name} eagerly", "f", (ADAM_STEPS, *value.shape))
        if np.abs(steps[-1] - value).max() < 1e-6:
            raise TestFailure(f"{what}: eagerly, {name} never moved; update_step must update the variables.")
    expected = {name: np.asarray(eager[name]) for name in params}
    _check_trajectory(reply["compiled"], expected, what, "the same steps as eagerly: use tensor operations on "
                      "self.iterations, never Python numbers taken from tensors")


SCHEDULES = {"no-floor": {"peak": 3e-3, "warmup_steps": 10, "total_steps": 50},
             "floor": {"peak": 1e-3, "warmup_steps": 4, "total_steps": 24, "final_lr": 1e-4}}


def _schedule_steps(config: dict) -> list[int]:
    """Step 0, mid-warmup, the last warmup step, the peak, mid-decay, the end and past it."""
    warmup, total = config["warmup_steps"], config["total_steps"]
    return [0, warmup // 2, warmup - 1, warmup, warmup + (total - warmup) // 2, total - 1, total, total + 7]


def _expected_schedule(config: dict, steps: list[int]) -> np.ndarray:
    """The handout's rule at `steps`, checked against keras.optimizers.schedules.CosineDecay (warmup from 0)."""
    import keras

    expected = np.array([oracles.warmup_cosine(s, **config) for s in steps])
    keras_schedule = keras.optimizers.schedules.CosineDecay(
        0.0, config["total_steps"] - config["warmup_steps"], alpha=config.get("final_lr", 0.0) / config["peak"],
        warmup_target=config["peak"], warmup_steps=config["warmup_steps"])
    if np.abs(np.array([float(keras_schedule(s)) for s in steps]) - expected).max() > 1e-6 * config["peak"]:
        raise RuntimeError("the schedule oracle disagrees with keras.optimizers.schedules.CosineDecay")
    return expected


@hidden_test("WarmupCosineSchedule: 0 at step 0, linear warmup to the peak, cosine down to final_lr, final_lr after",
             OPTIMIZER, 2.0)
def test_schedule_values(ctx) -> None:
    for case, config in SCHEDULES.items():
        steps = _schedule_steps(config)
        what = "optim.WarmupCosineSchedule({})".format(", ".join(f"{k}={v}" for k, v in config.items()))
        reply = expect_dict(ctx.call("modern.schedule", config=config, steps=steps, modes=["python"]), ("python",),
                            what)
        values = as_array(reply["python"], what, "f", (len(steps),))
        expected = ctx.expected(case, lambda config=config, steps=steps: _expected_schedule(config, steps))
        for step, value, want in zip(steps, values, expected, strict=True):
            if abs(value - want) > 1e-9 + 1e-5 * abs(want):
                rule = ("peak * s / warmup_steps (0 at the first update, s = 0)" if step < config["warmup_steps"] else
                        "final_lr + (peak - final_lr) (1 + cos(pi (s - warmup_steps) / (total_steps - warmup_steps)))"
                        " / 2" if step <= config["total_steps"] else "final_lr after total_steps")
                raise TestFailure(f"{what} at step {step}: expected {rule}, got {value:.6g}.")


@hidden_test("WarmupCosineSchedule called with a step variable inside tf.function gives its values on Python ints",
             OPTIMIZER, 1.0)
def test_schedule_graph(ctx) -> None:
    config = SCHEDULES["floor"]
    steps = _schedule_steps(config)
    what = "optim.WarmupCosineSchedule({}) on an int64 step variable inside tf.function".format(
        ", ".join(f"{k}={v}" for k, v in config.items()))
    reply = expect_dict(ctx.call("modern.schedule", config=config, steps=steps, modes=["python", "graph"]),
                        ("python", "graph"), what)
    python = as_array(reply["python"], f"{what}: on Python ints", "f", (len(steps),))
    close(as_array(reply["graph"], what, "f", (len(steps),)), python,
          f"{what} vs the same schedule on Python ints (use tf operations such as tf.cos and tf.where on the step, "
          "not math functions or Python branches on tensors)", 1e-9, 1e-5)
    if np.abs(python).max() == 0:
        raise TestFailure(f"{what}: the schedule is 0 at every step.")


@hidden_test("WarmupCosineSchedule rejects bad arguments (warmup longer than the run, peak <= 0, ...) with ValueError",
             OPTIMIZER, 0.25)
def test_schedule_arguments(ctx) -> None:
    expect_errors(ctx.call("modern.schedule_errors"), "WarmupCosineSchedule")
