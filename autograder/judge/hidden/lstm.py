"""Hidden tests of part 2, LSTM: the shared recurrent tests plus the LSTM weight layout and forget-gate bias."""

from __future__ import annotations

import numpy as np

from autograder.judge.hidden.common import as_array, close
from autograder.judge.hidden.rnn import define_tests
from autograder.judge.registry import TestFailure, hidden_test

PART = "lstm"

define_tests("lstm", PART)


@hidden_test("LSTMCell creates kernel [D, 4 D_h], recurrent_kernel [D_h, 4 D_h], bias [4 D_h], forget-gate bias 1",
             PART, 0.5)
def test_lstm_initial_weights(ctx) -> None:
    d, h = 3, 5
    reply = ctx.call("rnn.cell_initial_weights", kind="lstm", input_dim=d, units=h, seed=ctx.seed)
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
