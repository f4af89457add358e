"""Hidden tests of part 4 (transformer.py).

Hidden inputs and weights are drawn here; expected values come from the numpy oracles in `oracles.py` (attention,
positional encoding) and from Keras layers given the same weights (MultiHeadAttention(use_causal_mask=True) for the
multi-head layer, a pre-LN transformer built from Keras layers for the whole model). Both are recorded when the
fixtures are built, the only time the Keras oracles below run (they import Keras).

Causality is checked in both directions: perturbing inputs after position t must leave every output at <= t unchanged
(within UNCHANGED_ATOL), while perturbing the input at t must change the output at t, and perturbing the first token
must change the last output (by more than CHANGED_MIN), so that a constant model or one that ignores its context fails.
"""

from __future__ import annotations

import numpy as np

from autograder.judge.hidden import oracles
from autograder.judge.hidden.common import as_array, close, expect_dict, expect_error
from autograder.judge.registry import TestFailure, hidden_test

PART = "transformer"
UNCHANGED_ATOL = 1e-5
CHANGED_MIN = 1e-5
DROPOUT_RATE = 0.3
DROPOUT_DRAWS = 4000
DROPOUT_ALPHA = 1e-6
"""The dropout test compares the mean of DROPOUT_DRAWS training outputs of the attention layer with its inference
output, element by element (a t statistic per element, Bonferroni over the elements): a correct layer fails with
probability below DROPOUT_ALPHA."""

MHA_WEIGHTS = ("query", "key", "value", "output")
MHA_D_MODEL, MHA_HEADS = 16, 4
MODEL_CONFIG = {"vocab_size": 23, "context_length": 12, "d_model": 16, "num_heads": 2, "num_layers": 2,
                "positional": "learned"}
"""The model of the model tests: learned positions (the default), so that a broken sinusoidal encoding costs only the
tests that name it (the encoding's and the sinusoidal halves of the KV-cache and oracle tests)."""
POSITIONALS = ("learned", "sinusoidal")
GENERATE_CONFIG = dict(MODEL_CONFIG, context_length=8)
GENERATE_NEW_TOKENS = 20
GENERATE_MARGIN = 1e-4
"""A step whose top-k or top-p boundary lies this close to a kept token's logit or mass can keep another set with the
cache's rounding than with the full recompute's: it is not compared."""
GENERATE_MISMATCHES = 1
"""Compared steps whose token may differ from the full recompute's: a categorical draw flips when its uniform falls
within rounding of a cumulative-probability boundary (about 1e-6 per draw), so two flips happen with probability
below 1e-9 here."""
ATTENTION_CASES = {
    "causal": ((2, 3, 6, 4), (2, 3, 6, 4), (2, 3, 6, 5), np.tril(np.ones((6, 6), bool))),
    "unmasked": ((2, 4, 4), (2, 5, 4), (2, 5, 3), None),
    "offset": ((1, 2, 3, 4), (1, 2, 7, 4), (1, 2, 7, 4), np.arange(7)[None, :] <= np.arange(3)[:, None] + 4),
}
"""Hidden q, k, v [..., T, d] by case: (q shape, k shape, v shape, mask or None); entries are N(0, 1.5^2)."""
CAUSAL_LENGTH = 8
CAUSAL_VARIANTS = (("after", 2), ("at", 2), ("after", 5), ("at", 5), ("first", 0))
"""Perturbed copies of a base input: the positions after t, the position t, or the first position."""


# ---------------------------------------------------------------------------------------------------- Keras oracles
def _mha_oracle(weights: dict[str, np.ndarray], x: np.ndarray, num_heads: int) -> np.ndarray:
    """keras.layers.MultiHeadAttention(use_causal_mask=True) with the given einsum-dense weights."""
    import keras

    head_dim = weights["query_kernel"].shape[-1]
    layer = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=head_dim)
    layer(x, x, use_causal_mask=True)
    for name in MHA_WEIGHTS:
        dense = getattr(layer, f"_{name}_dense")
        dense.kernel.assign(weights[f"{name}_kernel"])
        dense.bias.assign(weights[f"{name}_bias"])
    return np.asarray(layer(x, x, use_causal_mask=True))


def _layer_norm(weights: dict[str, np.ndarray], name: str, x: np.ndarray) -> np.ndarray:
    """keras.layers.LayerNormalization(epsilon=1e-5) with weights[name + "/gamma"] and [name + "/beta"]."""
    import keras

    layer = keras.layers.LayerNormalization(epsilon=1e-5)
    layer.build(x.shape)
    layer.gamma.assign(weights[f"{name}/gamma"])
    layer.beta.assign(weights[f"{name}/beta"])
    return np.asarray(layer(x))


def _dense(weights: dict[str, np.ndarray], name: str, x: np.ndarray, activation: str | None = None) -> np.ndarray:
    """keras.layers.Dense with weights[name + "/kernel"] and [name + "/bias"]."""
    import keras

    kernel = weights[f"{name}/kernel"]
    layer = keras.layers.Dense(kernel.shape[1], activation=activation)
    layer.build(x.shape)
    layer.kernel.assign(kernel)
    layer.bias.assign(weights[f"{name}/bias"])
    return np.asarray(layer(x))


def _transformer_lm_oracle(weights: dict[str, np.ndarray], tokens: np.ndarray, config: dict) -> np.ndarray:
    """Logits [B, T, V] of the pre-LN transformer LM from Keras layers with the given weights (keyed by path).

    h = E[tokens] + positions; per block h += MHA(LN1(h)), h += Dense(d)(Dense(4d, gelu)(LN2(h))); then
    logits = LN_final(h) E^T + output_bias, with MultiHeadAttention(use_causal_mask=True) as the attention.
    """
    table = weights["token_embedding/embeddings"]
    length = tokens.shape[1]
    if config.get("positional", "sinusoidal") == "learned":
        positions = weights["position_embedding/embeddings"][:length]
    else:
        positions = oracles.positional_encoding(length, config["d_model"])
    h = (table[tokens] + positions[None]).astype(np.float32)
    for i in range(config["num_layers"]):
        block = f"block_{i}"
        attention = {f"{n}_{kind}": weights[f"{block}/attention/{n}_{kind}"] for n in MHA_WEIGHTS
                     for kind in ("kernel", "bias")}
        h = h + _mha_oracle(attention, _layer_norm(weights, f"{block}/norm1", h), config["num_heads"])
        hidden = _dense(weights, f"{block}/mlp_hidden", _layer_norm(weights, f"{block}/norm2", h), "gelu")
        h = h + _dense(weights, f"{block}/mlp_output", hidden)
    h = _layer_norm(weights, "final_norm", h).astype(np.float64)
    return (h @ table.T.astype(np.float64) + weights["output_bias"]).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- hidden inputs
WeightDraws = dict[str, tuple[float, float, tuple[int, ...]]]
"""Random weights by name: (mean, standard deviation, shape) of their normal entries."""


def _mha_draws(d_model: int, heads: int, prefix: str = "") -> WeightDraws:
    """The einsum-dense weights of a multi-head attention layer: query/key/value kernels [d, H, hd], biases [H, hd],
    output kernel [H, hd, d] and bias [d]."""
    hd = d_model // heads
    draws: WeightDraws = {}
    for name in MHA_WEIGHTS:
        output = name == "output"
        draws[f"{prefix}{name}_kernel"] = (0.0, 0.3, (heads, hd, d_model) if output else (d_model, heads, hd))
        draws[f"{prefix}{name}_bias"] = (0.0, 0.1, (d_model,) if output else (heads, hd))
    return draws


def _lm_draws(config: dict) -> WeightDraws:
    """The weights (keyed by path below the model) of a learned-positions TransformerLanguageModel(**config)."""
    v, d = config["vocab_size"], config["d_model"]

    def norm(name: str) -> WeightDraws:
        return {f"{name}/gamma": (1.0, 0.2, (d,)), f"{name}/beta": (0.0, 0.1, (d,))}

    draws: WeightDraws = {"token_embedding/embeddings": (0.0, 0.5, (v, d)),
                          "position_embedding/embeddings": (0.0, 0.5, (config["context_length"], d))}
    for i in range(config["num_layers"]):
        block = f"block_{i}"
        draws.update(_mha_draws(d, config["num_heads"], f"{block}/attention/"))
        draws.update(norm(f"{block}/norm1"))
        draws.update(norm(f"{block}/norm2"))
        draws.update({f"{block}/mlp_hidden/kernel": (0.0, 0.25, (d, 4 * d)),
                      f"{block}/mlp_hidden/bias": (0.0, 0.1, (4 * d,)),
                      f"{block}/mlp_output/kernel": (0.0, 0.15, (4 * d, d)),
                      f"{block}/mlp_output/bias": (0.0, 0.1, (d,))})
    draws.update(norm("final_norm"))
    draws["output_bias"] = (0.0, 0.0, (v,))  # zero: test_output_bias checks the bias on its own
    return draws


def _weights(ctx, draws: WeightDraws) -> dict[str, np.ndarray]:
    """Hidden float32 weights, each stored under "weights/<name>"."""
    return {name: ctx.hidden(f"weights/{name}", lambda mean=mean, std=std, shape=shape: (
        mean + ctx.rng.normal(0.0, std, shape)).astype(np.float32)) for name, (mean, std, shape) in draws.items()}


def _perturbed(kind: str, t: int) -> slice:
    return slice(t + 1, None) if kind == "after" else slice(t, t + 1)


def _causal_x(rng: np.random.Generator, d_model: int) -> np.ndarray:
    """float32 [1 + variants, T, d_model]: a N(0, 1) base input, then per variant a copy with N(0, 1) noise added at
    its positions."""
    base = rng.normal(0.0, 1.0, (CAUSAL_LENGTH, d_model)).astype(np.float32)
    xs = [base]
    for kind, t in CAUSAL_VARIANTS:
        x, where = base.copy(), _perturbed(kind, t)
        x[where] += rng.normal(0.0, 1.0, x[where].shape).astype(np.float32)
        xs.append(x)
    return np.stack(xs)


def _causal_tokens(rng: np.random.Generator, vocab: int) -> np.ndarray:
    """int32 [1 + variants, T]: uniform base tokens, then per variant a copy with every token at its positions
    changed to another one."""
    base = rng.integers(0, vocab, CAUSAL_LENGTH)
    tokens = [base]
    for kind, t in CAUSAL_VARIANTS:
        changed, where = base.copy(), _perturbed(kind, t)
        changed[where] = (changed[where] + rng.integers(1, vocab, changed[where].shape)) % vocab
        tokens.append(changed)
    return np.stack(tokens).astype(np.int32)


# ---------------------------------------------------------------------------------------------------- tests
@hidden_test("causal_mask(T) is the [T, T] boolean lower-triangular matrix (True where j <= i)", PART, 0.5)
def test_causal_mask(ctx) -> None:
    for t in (1, 4, 9):
        reply = expect_dict(ctx.call("call", module="transformer", function="causal_mask", args=[t]), ("value",),
                            "causal_mask")
        mask = as_array(reply["value"], f"causal_mask({t})", "b", (t, t))
        if not np.array_equal(mask, np.tril(np.ones((t, t), dtype=bool))):
            raise TestFailure(f"causal_mask({t}): must be True exactly where key j <= query i.")


def _expected_attention(ctx, case: str, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                        mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Expected (output, weights) of attention case `case` from the numpy oracle."""
    return (ctx.expected(f"{case}/output", lambda: oracles.attention(q, k, v, mask)[0]),
            ctx.expected(f"{case}/weights", lambda: oracles.attention(q, k, v, mask)[1]))



def _t_upper_quantile(df: int, tail: float) -> float:
    """The t distribution's quantile with upper tail `tail` (recorded with the fixtures: the judge never imports
    scipy)."""
    from scipy import special

    return -float(special.stdtrit(df, tail))

@hidden_test("scaled_dot_product_attention: weights 0 where masked, rows sum to 1, outputs equal the reference", PART,
             1.5)
def test_attention(ctx) -> None:
    for case, (*shapes, mask) in ATTENTION_CASES.items():
        q, k, v = (ctx.hidden(f"{case}/{n}", lambda s=s: ctx.rng.normal(0.0, 1.5, s).astype(np.float32))
                   for n, s in zip("qkv", shapes, strict=True))
        what = f"scaled_dot_product_attention(q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)}, " + (
            "no mask)" if mask is None else f"mask {list(mask.shape)})")
        reply = expect_dict(ctx.call("transformer.attention", q=q, k=k, v=v, mask=mask), ("output", "weights"), what)
        weights = as_array(reply["weights"], f"attention weights of {what}", "f", q.shape[:-1] + (k.shape[-2],))
        output = as_array(reply["output"], f"output of {what}", "f", q.shape[:-1] + (v.shape[-1],))
        if mask is not None and np.abs(np.where(np.broadcast_to(mask, weights.shape), 0.0, weights)).max() > 1e-6:
            raise TestFailure(f"{what}: attention weights must be 0 where the mask is False.")
        if np.abs(weights.sum(-1) - 1.0).max() > 1e-5:
            raise TestFailure(f"{what}: every row of the attention weights must sum to 1.")
        expected_output, expected_weights = _expected_attention(ctx, case, q, k, v, mask)
        close(weights, expected_weights, f"attention weights of {what}", 1e-5)
        close(output, expected_output, f"output of {what}", 1e-5, 1e-4)


@hidden_test("positional_encoding(length, d_model): sin on even dims, cos on odd dims, 10000^(2i/d_model)", PART, 0.5)
def test_positional_encoding(ctx) -> None:
    for n, d in ((6, 4), (40, 16), (3, 10)):
        what = f"positional_encoding({n}, {d})"
        reply = expect_dict(ctx.call("call", module="transformer", function="positional_encoding", args=[n, d]),
                            ("value",), "positional_encoding")
        close(as_array(reply["value"], what, "f", (n, d)),
              ctx.expected(f"encoding/{n}x{d}", lambda n=n, d=d: oracles.positional_encoding(n, d)), what, 1e-4)


@hidden_test("positional_encoding returns float32 (the dtype of the embeddings it is added to)", PART, 0.25)
def test_positional_encoding_dtype(ctx) -> None:
    reply = expect_dict(ctx.call("call", module="transformer", function="positional_encoding", args=[5, 8]),
                        ("value",), "positional_encoding")
    encoding = as_array(reply["value"], "positional_encoding(5, 8)", "f", (5, 8))
    if encoding.dtype != np.float32:
        raise TestFailure(f"positional_encoding(5, 8): expected float32 (compute in float64 if you like, then cast), "
                          f"got {encoding.dtype}.")


def _mha(ctx, weights: dict[str, np.ndarray], x: np.ndarray, what: str) -> np.ndarray:
    reply = expect_dict(ctx.call("transformer.mha_forward", d_model=MHA_D_MODEL, num_heads=MHA_HEADS,
                                 weights=weights, x=x), ("y",), what)
    return as_array(reply["y"], what, "f", x.shape)


@hidden_test("MultiHeadSelfAttention equals keras.layers.MultiHeadAttention(use_causal_mask=True) with copied weights",
             PART, 2.0)
def test_mha_oracle(ctx) -> None:
    weights = _weights(ctx, _mha_draws(MHA_D_MODEL, MHA_HEADS))
    x = ctx.hidden("x", lambda: ctx.rng.normal(0.0, 1.0, (2, 7, MHA_D_MODEL)).astype(np.float32))
    what = f"MultiHeadSelfAttention(x {list(x.shape)})"
    close(_mha(ctx, weights, x, what), ctx.expected("y", lambda: _mha_oracle(weights, x, MHA_HEADS)),
          f"{what} vs the Keras oracle", 1e-5, 1e-4)


def _check_causal(outputs: np.ndarray, what: str) -> None:
    """outputs [1 + n, T, ...]: row 0 is the base input, then one row per CAUSAL_VARIANTS (kind, t)."""
    base = outputs[0]
    for out, (kind, t) in zip(outputs[1:], CAUSAL_VARIANTS, strict=False):
        if kind == "after":
            err = float(np.abs(out[: t + 1] - base[: t + 1]).max())
            if err > UNCHANGED_ATOL:
                raise TestFailure(f"{what}: changing the inputs after position {t} changed the outputs at positions "
                                  f"<= {t} (max abs change {err:.3g}); position i may only attend to j <= i.")
        elif kind == "at":
            if float(np.abs(out[t] - base[t]).max()) <= CHANGED_MIN:
                raise TestFailure(f"{what}: changing the input at position {t} did not change the output at {t}.")
        else:
            if float(np.abs(out[-1] - base[-1]).max()) <= CHANGED_MIN:
                raise TestFailure(f"{what}: changing the first input did not change the output at the last position; "
                                  "each position must attend to all earlier positions.")


@hidden_test("MultiHeadSelfAttention is causal: later inputs never change earlier outputs, input t changes output t",
             PART, 1.0)
def test_mha_causality(ctx) -> None:
    weights = _weights(ctx, _mha_draws(MHA_D_MODEL, MHA_HEADS))
    x = ctx.hidden("x", lambda: _causal_x(ctx.rng, MHA_D_MODEL))
    what = "MultiHeadSelfAttention"
    _check_causal(_mha(ctx, weights, x, what), what)


@hidden_test("TransformerLanguageModel is causal: later tokens never change earlier logits, token t changes logits t",
             PART, 1.5)
def test_model_causality(ctx) -> None:
    config = MODEL_CONFIG
    tokens = ctx.hidden("tokens", lambda: _causal_tokens(ctx.rng, config["vocab_size"]))
    what = "TransformerLanguageModel"
    reply = expect_dict(ctx.call("transformer.model_forward", config=config, seed=ctx.seed, tokens=tokens),
                        ("logits",), what)
    logits = as_array(reply["logits"], f"{what}(tokens {list(tokens.shape)})", "f",
                      tokens.shape + (config["vocab_size"],))
    _check_causal(logits, what)


@hidden_test("TransformerLanguageModel ties the output projection to token_embedding (logits = h @ E^T + b)", PART,
             1.0)
def test_tied_embeddings(ctx) -> None:
    config, vocab = MODEL_CONFIG, MODEL_CONFIG["vocab_size"]
    token = ctx.hidden("token", lambda: int(ctx.rng.integers(0, vocab)))
    tokens = ctx.hidden("tokens", lambda: ((token + ctx.rng.integers(1, vocab, (2, 6))) % vocab).astype(np.int32))
    delta = ctx.hidden("delta", lambda: ctx.rng.normal(0.0, 1.0, config["d_model"]).astype(np.float32))
    what = "TransformerLanguageModel with a changed row of token_embedding.embeddings"
    reply = expect_dict(ctx.call("transformer.tied_embedding", config=config, seed=ctx.seed, tokens=tokens,
                                 token=token, delta=delta), ("logits",), what)
    logits = as_array(reply["logits"], what, "f", (3,) + tokens.shape + (config["vocab_size"],)).astype(np.float64)
    others = np.delete(logits, token, axis=-1)
    if np.abs(others[1:] - others[0]).max() > 1e-4:
        raise TestFailure(f"{what}: changing the embedding of a token absent from the input must change only that "
                          "token's logit.")
    d1, d2 = logits[1, ..., token] - logits[0, ..., token], logits[2, ..., token] - logits[0, ..., token]
    if np.abs(d1).max() < 1e-3:
        raise TestFailure(f"{what}: the token's logit did not change; the output projection must reuse the "
                          "token_embedding matrix (logits = h @ E^T).")
    if np.abs(d2 - 2 * d1).max() > 1e-3 * max(1.0, float(np.abs(d1).max())):
        raise TestFailure(f"{what}: the token's logit must be linear in its embedding row (logits = h @ E^T + b).")


def _per_positional(check) -> float | None:
    """Run `check(positional)` for both kinds of positions: full credit when both pass, half when one does (a broken
    sinusoidal encoding, say, leaves the learned model working); TestFailure with the first message when none."""
    failures = []
    for positional in POSITIONALS:
        try:
            check(positional)
        except TestFailure as exc:
            failures.append(str(exc))
    if len(failures) == len(POSITIONALS):
        raise TestFailure(failures[0])
    return None if not failures else (len(POSITIONALS) - len(failures)) / len(POSITIONALS)


@hidden_test("TransformerLanguageModel.step with the KV cache gives the logits of a full recompute", PART, 2.5)
def test_kv_cache(ctx) -> float | None:
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, MODEL_CONFIG["vocab_size"], (2, 10)).astype(np.int32))
    prefix = ctx.hidden("prefix", lambda: int(ctx.rng.integers(2, 7)))
    def check(positional: str) -> None:
        config = dict(MODEL_CONFIG, positional=positional)
        what = f"TransformerLanguageModel(positional='{positional}')"
        reply = expect_dict(ctx.call("transformer.kv_cache", config=config, seed=ctx.seed, tokens=tokens,
                                     prefix=prefix), ("full", "cached"), what)
        shape = tokens.shape + (config["vocab_size"],)
        full = as_array(reply["full"], f"{what}(tokens)", "f", shape)
        cached = as_array(reply["cached"], f"{what}.step logits (prompt, then one token at a time)", "f", shape)
        close(cached, full, f"{what}: logits with the KV cache vs full recompute", 1e-4, 1e-4)

    return _per_positional(check)


@hidden_test("TransformerLanguageModel equals the pre-LN oracle with copied weights", PART, 3.0)
def test_model_oracle(ctx) -> float | None:
    config = MODEL_CONFIG
    all_weights = _weights(ctx, _lm_draws(config))
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, config["vocab_size"], (2, 10)).astype(np.int32))

    def check(positional: str) -> None:
        lm_config = dict(config, positional=positional)
        weights = {n: w for n, w in all_weights.items()
                   if positional == "learned" or not n.startswith("position_embedding/")}
        what = f"TransformerLanguageModel(positional='{positional}') with copied weights"
        reply = expect_dict(ctx.call("transformer.model_with_weights", config=lm_config, weights=weights,
                                     tokens=tokens), ("logits",), what)
        logits = as_array(reply["logits"], f"logits of {what}", "f", tokens.shape + (config["vocab_size"],))
        expected = ctx.expected(f"logits/{positional}", lambda weights=weights, lm_config=lm_config:
                                _transformer_lm_oracle(weights, tokens, lm_config))
        close(logits, expected,
              f"{what} vs the pre-LN oracle (h = E[tokens] + positions; each block h += MHSA(norm1(h)), "
              "h += mlp_output(mlp_hidden(norm2(h))); logits = final_norm(h) E^T + output_bias)", 1e-4, 1e-4)

    return _per_positional(check)


@hidden_test("TransformerLanguageModel rejects more than context_length tokens with ValueError", PART, 0.25)
def test_too_long(ctx) -> None:
    reply = expect_dict(ctx.call("transformer.too_long", config=MODEL_CONFIG, seed=ctx.seed), ("error",), "")
    expect_error(reply["error"], "ValueError", "TransformerLanguageModel on context_length + 1 tokens")


@hidden_test("dropout: training=False equals the model without dropout; training=True drops at random, unbiased",
             PART, 1.0)
def test_dropout(ctx) -> None:
    weights = _weights(ctx, _mha_draws(MHA_D_MODEL, MHA_HEADS))
    x = ctx.hidden("x", lambda: ctx.rng.normal(0.0, 1.0, (1, 5, MHA_D_MODEL)).astype(np.float32))
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, MODEL_CONFIG["vocab_size"], (2, 7)).astype(np.int32))
    what = f"MultiHeadSelfAttention(dropout={DROPOUT_RATE}) and TransformerLanguageModel(dropout={DROPOUT_RATE})"
    reply = expect_dict(ctx.call("transformer.dropout", d_model=MHA_D_MODEL, num_heads=MHA_HEADS, rate=DROPOUT_RATE,
                                 weights=weights, x=x, draws=DROPOUT_DRAWS, config=MODEL_CONFIG, seed=ctx.seed,
                                 tokens=tokens),
                        ("mha_eval", "mha_zero", "mha_mean", "mha_std", "model_eval", "model_zero", "model_train"),
                        what)
    layer = f"MultiHeadSelfAttention(dropout={DROPOUT_RATE})"
    evaluated = as_array(reply["mha_eval"], f"{layer}(x, training=False)", "f", x.shape)
    close(evaluated, as_array(reply["mha_zero"], "the same layer without dropout", "f", x.shape),
          f"{layer}(x, training=False) vs the same weights without dropout (no dropout at inference)", 1e-5, 1e-5)
    model = f"TransformerLanguageModel(dropout={DROPOUT_RATE})"
    shape = tokens.shape + (MODEL_CONFIG["vocab_size"],)
    model_eval = as_array(reply["model_eval"], f"{model}(tokens, training=False)", "f", shape)
    close(model_eval, as_array(reply["model_zero"], "the same model without dropout", "f", shape),
          f"{model}(tokens, training=False) vs the same weights without dropout (no dropout at inference)", 1e-5,
          1e-5)
    trained = as_array(reply["model_train"], f"{model}(tokens, training=True)", "f", (2,) + shape)
    if min(np.abs(t - model_eval).max() for t in trained) < 1e-4 or np.abs(trained[0] - trained[1]).max() < 1e-4:
        raise TestFailure(f"{what}: with training=True two calls must drop different units, so their logits differ "
                          "from each other and from training=False (pass training on to every layer).")
    mean = as_array(reply["mha_mean"], f"mean of {layer}(x, training=True)", "f", x.shape[1:]).astype(np.float64)
    std = as_array(reply["mha_std"], f"spread of {layer}(x, training=True)", "f", x.shape[1:]).astype(np.float64)
    if std.max() < 1e-6:
        raise TestFailure(f"{layer}(x, training=True): the outputs never vary; drop out at random in training.")
    tail = DROPOUT_ALPHA / (2 * x[0].size)  # Bonferroni over the outputs of one sequence, two-sided
    threshold = float(ctx.expected("t_threshold", lambda: _t_upper_quantile(DROPOUT_DRAWS - 1, tail)))
    z = np.abs(mean - evaluated[0]) / np.maximum(std / np.sqrt(DROPOUT_DRAWS), 1e-9)
    if z.max() > threshold:
        raise TestFailure(f"{layer}: the mean of {DROPOUT_DRAWS} outputs with training=True differs from the output "
                          f"with training=False (|t| {z.max():.1f} > {threshold:.1f}, alpha {DROPOUT_ALPHA:g}); "
                          "keras.layers.Dropout scales the kept units by 1 / (1 - rate) so that the mean is unchanged.")


@hidden_test("TransformerLanguageModel adds output_bias to every position's logits", PART, 0.5)
def test_output_bias(ctx) -> None:
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, MODEL_CONFIG["vocab_size"], (2, 5)).astype(np.int32))
    bias = ctx.hidden("bias", lambda: ctx.rng.normal(0.0, 1.0, MODEL_CONFIG["vocab_size"]).astype(np.float32))
    what = "TransformerLanguageModel with output_bias 0, then b"
    reply = expect_dict(ctx.call("transformer.output_bias", config=MODEL_CONFIG, seed=ctx.seed, tokens=tokens,
                                 bias=bias), ("logits",), what)
    logits = as_array(reply["logits"], what, "f", (2,) + tokens.shape + (MODEL_CONFIG["vocab_size"],))
    close(logits[1] - logits[0], np.broadcast_to(bias, logits[0].shape), f"{what}: the change of the logits "
          "(logits = final_norm(h) E^T + output_bias)", 1e-4, 1e-4)


def _generate_case(rng: np.random.Generator) -> dict:
    return {"prompt": rng.integers(0, GENERATE_CONFIG["vocab_size"], (2, 5)).tolist(),
            "temperature": float(rng.uniform(0.8, 1.2)), "top_k": int(rng.integers(4, 8)),
            "top_p": float(rng.uniform(0.6, 0.85)), "generate_seed": int(rng.integers(0, 2**31 - 1))}


def _borderline(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> bool:
    """Whether rounding could change the kept set of logits [V]: a logit within GENERATE_MARGIN of the k-th largest,
    or a kept token's mass level within GENERATE_MARGIN of p."""
    x = np.asarray(logits, np.float64) / temperature
    kth = np.sort(x)[::-1][min(top_k, x.size) - 1]
    if np.sum(np.abs(x - kth) < GENERATE_MARGIN) > 1:
        return True
    kept = np.where(oracles.top_k_kept(x, top_k), x, -np.inf)
    levels = oracles.mass_strictly_above(kept)[np.isfinite(kept)]
    return bool(np.any(np.abs(levels - top_p) < GENERATE_MARGIN))


@hidden_test("generate through TransformerLanguageModel past its context with top_k and top_p draws what a full "
             "recompute draws", PART, 2.0, timeout=90.0)
def test_generate_past_context(ctx) -> None:
    case = ctx.hidden("case", lambda: _generate_case(ctx.rng))
    prompt = np.asarray(case["prompt"], dtype=np.int32)
    n, c = GENERATE_NEW_TOKENS, GENERATE_CONFIG["context_length"]
    what = (f"samplers.generate(TransformerLanguageModel(context_length={c}), prompt {list(prompt.shape)}, "
            f"max_new_tokens={n}, temperature, top_k, top_p, seed)")
    settings = {key: case[key] for key in ("temperature", "top_k", "top_p", "generate_seed")}
    reply = expect_dict(ctx.call("transformer.generate", config=GENERATE_CONFIG, seed=ctx.seed, scale=0.3,
                                 prompt=prompt, max_new_tokens=n, **settings), ("ids", "expected", "logits"), what)
    ids = as_array(reply["ids"], what, "iu", (prompt.shape[0], prompt.shape[1] + n))
    if not np.array_equal(ids[:, : prompt.shape[1]], prompt):
        raise TestFailure(f"{what}: the output must start with the prompt.")
    expected = as_array(reply["expected"], "the full recompute's draws", "iu", (n, prompt.shape[0]))
    logits = as_array(reply["logits"], "the full recompute's logits", "f", (n, prompt.shape[0],
                                                                            GENERATE_CONFIG["vocab_size"]))
    compared = np.array([[not _borderline(logits[s, b], case["temperature"], case["top_k"], case["top_p"])
                          for b in range(prompt.shape[0])] for s in range(n)])
    mismatches = int(np.sum((ids[:, prompt.shape[1]:].T != expected) & compared))
    if mismatches > GENERATE_MISMATCHES:
        raise TestFailure(f"{what}: {mismatches} of {int(compared.sum())} new tokens differ from the draws of the "
                          "full recompute of the tokens the cache should hold (the prompt's last context_length, "
                          "then one more per step, a restart from the last context_length // 2 when it is full), "
                          "with the same seeds; check step() with the cache up to context_length positions.")
