"""Hidden tests of part 4 (transformer.py).

Causality is checked in both directions: perturbing inputs after position t must leave every output at <= t unchanged
(within UNCHANGED_ATOL), while perturbing the input at t must change the output at t, and perturbing the first token
must change the last output (by more than CHANGED_MIN), so that a constant model or one that ignores its context fails.
"""

from __future__ import annotations

import numpy as np

from ..registry import TestFailure, hidden_test
from .common import as_array, close, expect_dict, expect_error

PART = "transformer"
UNCHANGED_ATOL = 1e-5
CHANGED_MIN = 1e-5


@hidden_test("causal_mask(T) is the [T, T] boolean lower-triangular matrix (True where j <= i)", PART, 0.5)
def test_causal_mask(ctx) -> None:
    sizes = [1, 4, 9]
    reply = expect_dict(ctx.call("transformer.causal_mask", sizes=sizes), ("masks",), "causal_mask")
    masks = reply["masks"]
    if not isinstance(masks, list) or len(masks) != len(sizes):
        raise TestFailure("causal_mask: the worker returned an unexpected reply.")
    for t, mask in zip(sizes, masks, strict=False):
        mask = as_array(mask, f"causal_mask({t})", "b", (t, t))
        if not np.array_equal(mask, np.tril(np.ones((t, t), dtype=bool))):
            raise TestFailure(f"causal_mask({t}): must be True exactly where key j <= query i.")


@hidden_test("scaled_dot_product_attention: weights 0 where masked, rows sum to 1, outputs equal the reference", PART,
             1.5)
def test_attention(ctx) -> None:
    for case in ctx.fixtures["transformer/attention_cases"]:
        q, k, v = (ctx.fixtures[f"transformer/attention/{case}/{n}"] for n in "qkv")
        mask = ctx.fixtures.get(f"transformer/attention/{case}/mask")
        what = f"scaled_dot_product_attention(q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)}, " + (
            "no mask)" if mask is None else f"mask {list(mask.shape)})")
        reply = expect_dict(ctx.call("transformer.attention", q=q, k=k, v=v, mask=mask), ("output", "weights"), what)
        weights = as_array(reply["weights"], f"attention weights of {what}", "f", q.shape[:-1] + (k.shape[-2],))
        output = as_array(reply["output"], f"output of {what}", "f", q.shape[:-1] + (v.shape[-1],))
        if mask is not None and np.abs(np.where(np.broadcast_to(mask, weights.shape), 0.0, weights)).max() > 1e-6:
            raise TestFailure(f"{what}: attention weights must be 0 where the mask is False.")
        if np.abs(weights.sum(-1) - 1.0).max() > 1e-5:
            raise TestFailure(f"{what}: every row of the attention weights must sum to 1.")
        close(weights, ctx.fixtures[f"transformer/attention/{case}/weights"], f"attention weights of {what}", 1e-5)
        close(output, ctx.fixtures[f"transformer/attention/{case}/output"], f"output of {what}", 1e-5, 1e-4)


@hidden_test("positional_encoding(length, d_model): sin on even dims, cos on odd dims, 10000^(2i/d_model)", PART, 0.5)
def test_positional_encoding(ctx) -> None:
    cases = ctx.fixtures["transformer/pe_cases"]
    reply = expect_dict(ctx.call("transformer.positional_encoding", cases=cases), ("encodings",), "")
    if not isinstance(reply["encodings"], list) or len(reply["encodings"]) != len(cases):
        raise TestFailure("positional_encoding: the worker returned an unexpected reply.")
    for i, ((n, d), pe) in enumerate(zip(cases, reply["encodings"], strict=False)):
        what = f"positional_encoding({n}, {d})"
        close(as_array(pe, what, "f", (n, d)), ctx.fixtures[f"transformer/pe_expected/{i}"], what, 1e-4)


def _mha(ctx, x: np.ndarray, what: str) -> np.ndarray:
    config = ctx.fixtures["transformer/mha_config"]
    weights = {k: ctx.fixtures[f"transformer/mha/{k}"] for k in ctx.fixtures["transformer/mha_weight_names"]}
    reply = expect_dict(ctx.call("transformer.mha_forward", weights=weights, x=x, **config), ("y",), what)
    return as_array(reply["y"], what, "f", x.shape)


@hidden_test("MultiHeadSelfAttention equals keras.layers.MultiHeadAttention(use_causal_mask=True) with copied weights",
             PART, 2.0)
def test_mha_oracle(ctx) -> None:
    x = ctx.fixtures["transformer/mha_x"]
    what = f"MultiHeadSelfAttention(x {list(x.shape)})"
    close(_mha(ctx, x, what), ctx.fixtures["transformer/mha_expected"], f"{what} vs the Keras oracle", 1e-5, 1e-4)


def _check_causal(outputs: np.ndarray, variants: list, what: str) -> None:
    """outputs [1 + n, T, ...]: row 0 is the base input, then one row per (kind, t) variant."""
    base = outputs[0]
    for out, (kind, t) in zip(outputs[1:], variants, strict=False):
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
    x = ctx.fixtures["transformer/mha_causal_x"]
    what = "MultiHeadSelfAttention"
    _check_causal(_mha(ctx, x, what), ctx.fixtures["transformer/causal_variants"], what)


@hidden_test("TransformerLanguageModel is causal: later tokens never change earlier logits, token t changes logits t",
             PART, 1.5)
def test_model_causality(ctx) -> None:
    tokens = ctx.fixtures["transformer/model_causal_tokens"]
    config = ctx.fixtures["transformer/model_config"]
    what = "TransformerLanguageModel"
    reply = expect_dict(ctx.call("transformer.model_forward", config=config, seed=ctx.seed, tokens=tokens),
                        ("logits",), what)
    logits = as_array(reply["logits"], f"{what}(tokens {list(tokens.shape)})", "f",
                      tokens.shape + (config["vocab_size"],))
    _check_causal(logits, ctx.fixtures["transformer/causal_variants"], what)


@hidden_test("TransformerLanguageModel ties the output projection to token_embedding (logits = h @ E^T + b)", PART,
             1.0)
def test_tied_embeddings(ctx) -> None:
    config = ctx.fixtures["transformer/model_config"]
    tokens = ctx.fixtures["transformer/tied_tokens"]
    token = ctx.fixtures["transformer/tied_token"]
    what = "TransformerLanguageModel with a changed row of token_embedding.embeddings"
    reply = expect_dict(ctx.call("transformer.tied_embedding", config=config, seed=ctx.seed, tokens=tokens,
                                 token=token, delta=ctx.fixtures["transformer/tied_delta"]), ("logits",), what)
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


@hidden_test("TransformerLanguageModel.step with the KV cache gives the logits of a full recompute", PART, 1.5)
def test_kv_cache(ctx) -> None:
    for config in ctx.fixtures["transformer/kv_configs"]:
        tokens = ctx.fixtures["transformer/kv_tokens"]
        prefix = ctx.fixtures["transformer/kv_prefix"]
        what = f"TransformerLanguageModel(positional='{config.get('positional', 'sinusoidal')}')"
        reply = expect_dict(ctx.call("transformer.kv_cache", config=config, seed=ctx.seed, tokens=tokens,
                                     prefix=prefix), ("full", "cached"), what)
        shape = tokens.shape + (config["vocab_size"],)
        full = as_array(reply["full"], f"{what}(tokens)", "f", shape)
        cached = as_array(reply["cached"], f"{what}.step logits (prompt, then one token at a time)", "f", shape)
        close(cached, full, f"{what}: logits with the KV cache vs full recompute", 1e-4, 1e-4)


@hidden_test("TransformerLanguageModel equals the pre-LN oracle with copied weights", PART, 3.0)
def test_model_oracle(ctx) -> None:
    config = ctx.fixtures["transformer/model_config"]
    tokens = ctx.fixtures["transformer/lm_tokens"]
    names = ctx.fixtures["transformer/lm_weight_names"]
    for positional in ("sinusoidal", "learned"):
        weights = {n: ctx.fixtures[f"transformer/lm_weights/{n}"] for n in names
                   if positional == "learned" or not n.startswith("position_embedding/")}
        what = f"TransformerLanguageModel(positional='{positional}') with copied weights"
        reply = expect_dict(ctx.call("transformer.model_with_weights", config=dict(config, positional=positional),
                                     weights=weights, tokens=tokens), ("logits",), what)
        logits = as_array(reply["logits"], f"logits of {what}", "f", tokens.shape + (config["vocab_size"],))
        close(logits, ctx.fixtures[f"transformer/lm_logits/{positional}"],
              f"{what} vs the pre-LN oracle (h = E[tokens] + positions; each block h += MHSA(norm1(h)), "
              "h += mlp_output(mlp_hidden(norm2(h))); logits = final_norm(h) E^T + output_bias)", 1e-4, 1e-4)


@hidden_test("TransformerLanguageModel rejects more than context_length tokens with ValueError", PART, 0.25)
def test_too_long(ctx) -> None:
    config = ctx.fixtures["transformer/model_config"]
    reply = expect_dict(ctx.call("transformer.too_long", config=config, seed=ctx.seed), ("error",), "")
    expect_error(reply["error"], "ValueError", "TransformerLanguageModel on context_length + 1 tokens")
