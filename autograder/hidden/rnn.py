"""Hidden tests of part 2, recurrent cells and language models; `define_tests` is shared with the LSTM tests."""

from __future__ import annotations

import numpy as np

from ..registry import TestFailure, hidden_test
from .common import as_array, close, expect_dict

NAMES = {
    "rnn": ("RNNCell", "RNNLanguageModel", "keras.layers.SimpleRNNCell", 1),
    "lstm": ("LSTMCell", "LSTMLanguageModel", "keras.layers.LSTMCell", 4),
}
ATOL = 1e-5
RTOL = 1e-4


def _cell_cases(ctx, kind: str, mode: str) -> None:
    cell_name, _, oracle, _ = NAMES[kind]
    for case in ctx.fixtures[f"{kind}/cell_cases"]:
        x = ctx.fixtures[f"{kind}/{case}/x"]
        b, t, _ = x.shape
        units = ctx.fixtures[f"{kind}/units"]
        n_states = 2 if kind == "lstm" else 1
        states = [ctx.fixtures[f"{kind}/{case}/state{i}"] for i in range(n_states)]
        weights = {k: ctx.fixtures[f"{kind}/weights/{k}"] for k in ("kernel", "recurrent_kernel", "bias")}
        reply = ctx.call("rnn.cell_forward", kind=kind, units=units, x=x, states=states, weights=weights)
        reply = expect_dict(reply, (f"{mode}_outputs", f"{mode}_states"), cell_name)
        how = f"{cell_name} stepped over x [{b}, {t}, D]" if mode == "step" else (
            f"keras.layers.RNN({cell_name}) on x [{b}, {t}, D]")
        out = as_array(reply[f"{mode}_outputs"], f"outputs of {how}", "f", (b, t, units))
        close(out, ctx.fixtures[f"{kind}/{case}/outputs"], f"outputs of {how} vs {oracle}", ATOL, RTOL)
        got_states = reply[f"{mode}_states"]
        if not isinstance(got_states, list) or len(got_states) != n_states:
            raise TestFailure(f"{how}: expected {n_states} state tensor(s) [B, H], got {type(got_states).__name__} "
                              f"of length {len(got_states) if isinstance(got_states, list) else '?'}.")
        for i, state in enumerate(got_states):
            state = as_array(state, f"final state {i} of {how}", "f", (b, units))
            close(state, ctx.fixtures[f"{kind}/{case}/final_state{i}"], f"final state {i} of {how} vs {oracle}",
                  ATOL, RTOL)


def _lm_weights(ctx, kind: str) -> dict:
    keys = ("embeddings", "kernel", "recurrent_kernel", "bias", "output_kernel", "output_bias")
    return {k: ctx.fixtures[f"{kind}/lm/{k}"] for k in keys}


def _lm_forward(ctx, kind: str) -> tuple[dict, tuple[int, int, int]]:
    config = ctx.fixtures[f"{kind}/lm/config"]
    tokens = ctx.fixtures[f"{kind}/lm/tokens"]
    reply = ctx.call("rnn.lm_forward", kind=kind, tokens=tokens, weights=_lm_weights(ctx, kind), **config)
    b, t = tokens.shape
    return expect_dict(reply, ("logits", "step_logits"), NAMES[kind][1]), (b, t, config["vocab_size"])


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
        reply, shape = _lm_forward(ctx, kind)
        logits = as_array(reply["logits"], f"{model_name}(tokens [B, T])", "f", shape)
        if logits.dtype != np.float32:
            raise TestFailure(f"{model_name}(tokens): expected float32 logits, got {logits.dtype}.")
        close(logits, ctx.fixtures[f"{kind}/lm/logits"], f"{model_name} logits with the given weights", ATOL, RTOL)

    @hidden_test(f"{model_name}.step carries the state: step(x[:, :s]) then step(x[:, s:], state) equals call(x)",
                 part, 1.0)
    def test_lm_state_carry(ctx) -> None:
        reply, shape = _lm_forward(ctx, kind)
        logits = as_array(reply["logits"], f"{model_name}(tokens [B, T])", "f", shape)
        stepped = as_array(reply["step_logits"], f"{model_name}.step logits concatenated over time", "f", shape)
        close(stepped, logits, f"{model_name}.step(x[:, :s]) + step(x[:, s:], state) vs one call", ATOL, RTOL)

    @hidden_test(f"gradients of the loss reach every trainable variable of {model_name}", part, 1.0)
    def test_lm_gradients(ctx) -> None:
        config = {k: v for k, v in ctx.fixtures[f"{kind}/lm/config"].items() if k != "split"}
        reply = expect_dict(ctx.call(
            "rnn.lm_gradients", kind=kind, tokens=ctx.fixtures[f"{kind}/lm/tokens"],
            labels=ctx.fixtures[f"{kind}/lm/labels"], seed=ctx.seed, **config,
        ), ("names", "shapes", "norms"), model_name)
        v, e, h = config["vocab_size"], config["embed_dim"], config["hidden_dim"]
        required = {(v, e): "embedding [V, E]", (e, gates * h): "cell kernel", (h, gates * h): "cell recurrent_kernel",
                    (gates * h,): "cell bias", (h, v): "output kernel [H, V]", (v,): "output bias [V]"}
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
