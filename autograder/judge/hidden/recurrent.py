"""Hidden tests of part 2, recurrent cells and language models: the tests of autograder parts `rnn` and `lstm`
(`define_tests` writes the tests both share; the LSTM adds its weight layout and forget-gate bias).

Hidden weights, inputs and states are drawn here; expected values come from Keras's own cells (SimpleRNNCell,
LSTMCell inside keras.layers.RNN) given the same weights. Both are recorded when the fixtures are built, the only time
the oracle below runs (it imports Keras).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from autograder.judge.hidden.common import as_array, close, expect_dict
from autograder.judge.registry import TestFailure, hidden_test

NAMES = {
    "rnn": ("RNNCell", "RNNLanguageModel", "keras.layers.SimpleRNNCell", 1),
    "lstm": ("LSTMCell", "LSTMLanguageModel", "keras.layers.LSTMCell", 4),
}
ATOL = 1e-5
RTOL = 1e-4
CELL_INPUT_DIM, CELL_UNITS = 5, 6
CELL_CASES = {"b1_t1": (1, 1), "b3_t4": (3, 4), "b2_t40": (2, 40)}
"""Hidden cell inputs x [B, T, D] by case: (B, T)."""
LM_CONFIG = {"vocab_size": 17, "embed_dim": 6, "hidden_dim": 8}
LM_BATCH, LM_LENGTH = 2, 9


def _states(kind: str) -> int:
    return 2 if kind == "lstm" else 1


def _keras_rnn(kind: str, weights: dict[str, np.ndarray], x: np.ndarray,
               states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outputs [B, T, D_h] and final states of keras.layers.RNN over Keras's own cell of `kind` with `weights`."""
    import keras

    units = weights["recurrent_kernel"].shape[0]
    cell = keras.layers.SimpleRNNCell(units) if kind == "rnn" else keras.layers.LSTMCell(units)
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    layer(x[:, :1], initial_state=states)
    for name in ("kernel", "recurrent_kernel", "bias"):
        getattr(cell, name).assign(weights[name])
    out = layer(x, initial_state=states)
    return np.asarray(out[0]), [np.asarray(s) for s in out[1:]]


def _cell_weights(ctx, kind: str, key: str, input_dim: int, units: int) -> dict[str, np.ndarray]:
    """Hidden cell weights {"kernel": [D, G*D_h], "recurrent_kernel": [D_h, G*D_h], "bias": [G*D_h]} (G gates)."""
    g = NAMES[kind][3] * units
    draws = {"kernel": (0.4, (input_dim, g)), "recurrent_kernel": (0.3, (units, g)), "bias": (0.2, (g,))}
    return {name: ctx.hidden(f"{key}/{name}", lambda scale=scale, shape=shape: ctx.rng.normal(
        0.0, scale, shape).astype(np.float32)) for name, (scale, shape) in draws.items()}


def _cell_case(ctx, kind: str, mode: str, case: str, weights: dict[str, np.ndarray]) -> None:
    cell_name, _, oracle_name, _ = NAMES[kind]
    b, t = CELL_CASES[case]
    units, n_states = CELL_UNITS, _states(kind)
    x = ctx.hidden(f"{case}/x", lambda: ctx.rng.normal(0.0, 1.0, (b, t, CELL_INPUT_DIM)).astype(np.float32))
    states = [ctx.hidden(f"{case}/state{i}", lambda: ctx.rng.normal(0.0, 0.5, (b, units)).astype(np.float32))
              for i in range(n_states)]
    oracle = cache(lambda: _keras_rnn(kind, weights, x, states))
    reply = ctx.call("recurrent.cell_forward", kind=kind, units=units, x=x, states=states, weights=weights)
    reply = expect_dict(reply, (f"{mode}_outputs", f"{mode}_states"), cell_name)
    how = f"{cell_name} stepped over x [{b}, {t}, D]" if mode == "step" else (
        f"keras.layers.RNN({cell_name}) on x [{b}, {t}, D]")
    out = as_array(reply[f"{mode}_outputs"], f"outputs of {how}", "f", (b, t, units))
    close(out, ctx.expected(f"{case}/outputs", lambda: oracle()[0]), f"outputs of {how} vs {oracle_name}", ATOL,
          RTOL)
    got_states = reply[f"{mode}_states"]
    if not isinstance(got_states, list) or len(got_states) != n_states:
        raise TestFailure(f"{how}: expected {n_states} state tensor(s) [B, D_h], got {type(got_states).__name__} "
                          f"of length {len(got_states) if isinstance(got_states, list) else '?'}.")
    for i, state in enumerate(got_states):
        state = as_array(state, f"final state {i} of {how}", "f", (b, units))
        expected = ctx.expected(f"{case}/final_state{i}", lambda i=i: oracle()[1][i])
        close(state, expected, f"final state {i} of {how} vs {oracle_name}", ATOL, RTOL)


def _cell_cases(ctx, kind: str, mode: str) -> None:
    weights = _cell_weights(ctx, kind, "weights", CELL_INPUT_DIM, CELL_UNITS)
    for case in CELL_CASES:
        _cell_case(ctx, kind, mode, case, weights)


def _tokens(ctx, key: str) -> np.ndarray:
    return ctx.hidden(key, lambda: ctx.rng.integers(0, LM_CONFIG["vocab_size"], (LM_BATCH, LM_LENGTH)).astype(
        np.int32))


def _lm_weights(ctx, kind: str) -> dict[str, np.ndarray]:
    """Hidden LM weights: "embeddings" [V, E], the cell's, "output_kernel" [D_h, V] and "output_bias" [V]."""
    v, e, h = LM_CONFIG["vocab_size"], LM_CONFIG["embed_dim"], LM_CONFIG["hidden_dim"]
    draws = {"embeddings": (0.5, (v, e)), "output_kernel": (0.5, (h, v)), "output_bias": (0.1, (v,))}
    weights = {name: ctx.hidden(f"weights/{name}", lambda scale=scale, shape=shape: ctx.rng.normal(
        0.0, scale, shape).astype(np.float32)) for name, (scale, shape) in draws.items()}
    return {**weights, **_cell_weights(ctx, kind, "weights", e, h)}


def _lm_logits_oracle(kind: str, weights: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
    """Logits [B, T, V] of embedding -> keras.layers.RNN(Keras's cell) from zero states -> Dense."""
    zeros = [np.zeros((tokens.shape[0], LM_CONFIG["hidden_dim"]), np.float32)] * _states(kind)
    hidden, _ = _keras_rnn(kind, weights, weights["embeddings"][tokens], zeros)
    return (hidden.astype(np.float64) @ weights["output_kernel"] + weights["output_bias"]).astype(np.float32)


def _lm_forward(ctx, kind: str) -> tuple[dict, tuple[int, int, int], dict[str, np.ndarray], np.ndarray]:
    """The LM's logits from one call and from step(:split) + step(split:, state) on hidden tokens and weights."""
    tokens = _tokens(ctx, "tokens")
    weights = _lm_weights(ctx, kind)
    split = ctx.hidden("split", lambda: int(ctx.rng.integers(1, 9)))
    reply = ctx.call("recurrent.lm_forward", kind=kind, tokens=tokens, weights=weights, split=split, **LM_CONFIG)
    shape = (*tokens.shape, LM_CONFIG["vocab_size"])
    return expect_dict(reply, ("logits", "step_logits"), NAMES[kind][1]), shape, weights, tokens


def define_tests(kind: str, part: str) -> None:
    """Register the cell, LM, state-carry and gradient tests of one recurrent family."""
    cell_name, model_name, oracle, gates = NAMES[kind]

    @hidden_test(f"{cell_name}.call matches the {oracle} oracle step by step (B=1,2,3; T=1, 4, 40)", part, 2.0)
    def test_cell_steps(ctx) -> None:
        _cell_cases(ctx, kind, "step")

    @hidden_test(f"{cell_name} inside keras.layers.RNN matches the {oracle} oracle", part, 1.0)
    def test_cell_in_rnn_layer(ctx) -> None:
        _cell_cases(ctx, kind, "layer")

    @hidden_test(f"{model_name} returns logits [B, T, V] equal to embedding -> {cell_name} -> Dense", part, 1.5)
    def test_lm_logits(ctx) -> None:
        reply, shape, weights, tokens = _lm_forward(ctx, kind)
        logits = as_array(reply["logits"], f"{model_name}(tokens [B, T])", "f", shape)
        if logits.dtype != np.float32:
            raise TestFailure(f"{model_name}(tokens): expected float32 logits, got {logits.dtype}.")
        expected = ctx.expected("logits", lambda: _lm_logits_oracle(kind, weights, tokens))
        close(logits, expected, f"{model_name} logits with the given weights", ATOL, RTOL)

    @hidden_test(f"{model_name}.step carries the state: step(x[:, :s]) then step(x[:, s:], state) equals call(x)",
                 part, 2.0)
    def test_lm_state_carry(ctx) -> None:
        reply, shape, _, _ = _lm_forward(ctx, kind)
        logits = as_array(reply["logits"], f"{model_name}(tokens [B, T])", "f", shape)
        stepped = as_array(reply["step_logits"], f"{model_name}.step logits concatenated over time", "f", shape)
        close(stepped, logits, f"{model_name}.step(x[:, :s]) + step(x[:, s:], state) vs one call", ATOL, RTOL)

    @hidden_test(f"gradients of the loss reach every trainable variable of {model_name}", part, 1.0)
    def test_lm_gradients(ctx) -> None:
        reply = expect_dict(ctx.call(
            "recurrent.lm_gradients", kind=kind, tokens=_tokens(ctx, "tokens"), labels=_tokens(ctx, "labels"),
            seed=ctx.seed, **LM_CONFIG,
        ), ("names", "shapes", "norms"), model_name)
        v, e, h = LM_CONFIG["vocab_size"], LM_CONFIG["embed_dim"], LM_CONFIG["hidden_dim"]
        required = {(v, e): "embedding [V, E]", (e, gates * h): "cell kernel", (h, gates * h): "cell recurrent_kernel",
                    (gates * h,): "cell bias", (h, v): "output kernel [D_h, V]", (v,): "output bias [V]"}
        shapes = [tuple(int(d) for d in s) for s in reply["shapes"]] if isinstance(reply["shapes"], list) else []
        missing = [what for shape, what in required.items() if shape not in shapes]
        if missing:
            raise TestFailure(f"{model_name} is missing trainable variables: {', '.join(missing)} "
                              f"(vocab V, embed_dim E, hidden_dim H).")
        norms = as_array(reply["norms"], "gradient norms", "f", (len(shapes),), finite=False)
        dead = [str(n) for n, g in zip(reply["names"], norms, strict=False) if not np.isfinite(g) or g == 0.0]
        if dead:
            raise TestFailure(f"{model_name}: no gradient (None or exactly zero) reaches {', '.join(dead)}; every "
                              f"trainable variable must take part in computing the logits.")


define_tests("rnn", "rnn")
define_tests("lstm", "lstm")


@hidden_test("LSTMCell creates kernel [D, 4 D_h], recurrent_kernel [D_h, 4 D_h], bias [4 D_h], forget-gate bias 1",
             "lstm", 0.5)
def test_lstm_initial_weights(ctx) -> None:
    d, h = 3, 5
    reply = ctx.call("recurrent.cell_initial_weights", kind="lstm", input_dim=d, units=h, seed=ctx.seed)
    if not isinstance(reply, dict):
        raise TestFailure("the worker returned an unexpected reply.")
    for name, shape in (("kernel", (d, 4 * h)), ("recurrent_kernel", (h, 4 * h)), ("bias", (4 * h,))):
        if name not in reply:
            raise TestFailure(f"LSTMCell has no weight named '{name}' after build (found {sorted(reply)}).")
        as_array(reply[name], f"LSTMCell.{name}", "f", shape)
    bias = reply["bias"]
    expected = np.concatenate([np.zeros(h), np.ones(h), np.zeros(2 * h)])
    if not np.allclose(bias, expected):
        raise TestFailure("LSTMCell.bias must start at 1 for the forget gate (second block of H, gate order i, f, c, "
                          "o) and 0 elsewhere.")
    # One step on x = ones [2, D] from zero states: z = x W + b, c' = i * g (f * c vanishes), h' = o * tanh(c').
    z = np.ones((2, d)) @ reply["kernel"] + bias
    gate_i, gate_g, gate_o = (1 / (1 + np.exp(-z[:, :h])), np.tanh(z[:, 2 * h : 3 * h]),
                              1 / (1 + np.exp(-z[:, 3 * h :])))
    output = as_array(reply.get("call_output"), "output of the freshly built LSTMCell", "f", (2, h))
    close(output, gate_o * np.tanh(gate_i * gate_g), "output of the freshly built LSTMCell from zero states",
          1e-5, 1e-4)
