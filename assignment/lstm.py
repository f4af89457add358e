"""Part 2: the LSTM cell and the LSTM language model (the model itself is the shared one of rnn.py).

The cell keeps two states, the output h and the memory cell c. Gates decide how much of the old memory to keep (forget
gate f), how much of the new candidate g to write (input gate i) and how much of the memory to show (output gate o).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from .rnn import RecurrentLanguageModel, positive_int, state_list


class LSTMCell(keras.layers.Layer):
    """One step of the LSTM, with the weight layout of Keras's own LSTM cell.

    Weights: `kernel` W [D, 4 D_h] (Glorot uniform), `recurrent_kernel` U [D_h, 4 D_h] (orthogonal), `bias` b [4 D_h];
    each holds four blocks of D_h columns in the gate order input, forget, candidate, output (i, f, g, o). The
    forget-gate block of the bias starts at 1 and the rest at 0, so that the memory is kept at the start of training.
    """

    def __init__(self, units: int, **kwargs):
        """A cell with `units` = D_h hidden units (and D_h memory units)."""
        super().__init__(**kwargs)
        self.units = positive_int(units, "units")
        self.state_size = [self.units, self.units]
        self.output_size = self.units

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Create kernel [D, 4 D_h], recurrent_kernel [D_h, 4 D_h] and bias [4 D_h] (forget block 1) for x [B, D]."""
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"the last dimension of the inputs must be known, got input shape {input_shape}")
        h = self.units
        self.kernel = self.add_weight(name="kernel", shape=(input_dim, 4 * h), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(h, 4 * h), initializer="orthogonal")
        self.bias = self.add_weight(name="bias", shape=(4 * h,), initializer=self._bias_initializer)

    def _bias_initializer(self, shape: Sequence[int], dtype: str | None = None) -> tf.Tensor:
        """[0] * D_h (input), [1] * D_h (forget), [0] * 2 D_h (candidate, output)."""
        h = self.units
        return tf.concat([tf.zeros([h], dtype), tf.ones([h], dtype), tf.zeros([2 * h], dtype)], axis=0)

    def call(self, inputs: tf.Tensor, states: Sequence[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One time step: inputs x [B, D] float32 and states [h, c] (each [B, D_h]) -> (h' [B, D_h], [h', c'])."""
        h, c = state_list(states, 2)
        # BEGIN SOLUTION (part recurrent): Compute z = x W + h U + b, the gates i, f, g, o, c' and h'; return (h', [h', c']).
        z = tf.matmul(inputs, self.kernel) + tf.matmul(h, self.recurrent_kernel) + self.bias
        z_i, z_f, z_g, z_o = tf.split(z, 4, axis=-1)
        i, f, g, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.tanh(z_g), tf.sigmoid(z_o)
        c_next = f * c + i * g
        h_next = o * tf.tanh(c_next)
        return h_next, [h_next, c_next]
        # END SOLUTION

    def get_initial_state(self, batch_size: int | tf.Tensor | None = None) -> list[tf.Tensor]:
        """The zero state [h, c], both zeros [B, D_h]."""
        return [tf.zeros([batch_size, self.units], dtype=self.compute_dtype) for _ in range(2)]

    def get_config(self) -> dict:
        """The constructor arguments, so that `LSTMCell.from_config(cell.get_config())` rebuilds the cell."""
        return {**super().get_config(), "units": self.units}


class LSTMLanguageModel(RecurrentLanguageModel):
    """The recurrent language model with the LSTMCell; its state is [h, c]."""

    cell_class = LSTMCell
