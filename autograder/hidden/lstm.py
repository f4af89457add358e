"""Hidden tests of part 2, LSTM: the shared recurrent tests plus the LSTM weight layout and forget-gate bias."""

from __future__ import annotations

import numpy as np

from ..registry import TestFailure, hidden_test
from .common import as_array
from .rnn import define_tests

PART = "lstm"

define_tests("lstm", PART)


@hidden_test("LSTMCell creates kernel [D, 4H], recurrent_kernel [H, 4H], bias [4H] with forget-gate bias 1", PART, 0.5)
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
