"""Part 2: the vanilla RNN cell and the recurrent language model that the RNN and the LSTM share.

A cell computes one time step, `keras.layers.RNN` unrolls it over time, and the language model wraps the unrolled cell
between an embedding (ids to vectors) and a dense output layer (vectors to logits over the vocabulary). The model can
also run step by step, carrying its state, which is what generation (part 3) relies on.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
import tensorflow as tf


def positive_int(value: int, name: str) -> int:
    """`value` as an int; ValueError naming `name` unless it is an integer >= 1 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def state_list(states: tf.Tensor | Sequence[tf.Tensor], count: int) -> list[tf.Tensor]:
    """The states of a cell as a list of `count` tensors [B, D_h]; a single tensor counts as a list of one.

    `keras.layers.RNN` hands a cell with a single state that tensor itself, while a direct call usually passes a list.
    """
    states = list(states) if isinstance(states, (list, tuple)) else [states]
    if len(states) != count:
        raise ValueError(f"states must hold {count} tensor(s) [B, D_h], got {len(states)}")
    return states


class RNNCell(keras.layers.Layer):
    """One step of the vanilla (Elman) RNN: h' = tanh(x W + h U + b).

    Weights: `kernel` W [D, D_h] (Glorot uniform), `recurrent_kernel` U [D_h, D_h] (orthogonal), `bias` b [D_h]
    (zeros).
    Works inside `keras.layers.RNN`, which reads `state_size` and `output_size`.
    """

    def __init__(self, units: int, **kwargs):
        """A cell with `units` = D_h hidden units."""
        super().__init__(**kwargs)
        self.units = positive_int(units, "units")
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Create kernel [D, D_h], recurrent_kernel [D_h, D_h] and bias [D_h] for inputs [B, D]."""
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"the last dimension of the inputs must be known, got input shape {input_shape}")
        self.kernel = self.add_weight(name="kernel", shape=(input_dim, self.units), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.units, self.units), initializer="orthogonal"
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs: tf.Tensor, states: tf.Tensor | Sequence[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One time step: inputs x [B, D] float32 and states [h] (h [B, D_h]) -> (h' [B, D_h], [h'])."""
        (h,) = state_list(states, 1)
        # BEGIN SOLUTION (part recurrent): Compute h' = tanh(x W + h U + b) and return (h', [h']).
        h_next = tf.tanh(tf.matmul(inputs, self.kernel) + tf.matmul(h, self.recurrent_kernel) + self.bias)
        return h_next, [h_next]
        # END SOLUTION

    def get_initial_state(self, batch_size: int | tf.Tensor | None = None) -> list[tf.Tensor]:
        """The zero state [h = zeros [B, D_h]]."""
        return [tf.zeros([batch_size, self.units], dtype=self.compute_dtype)]

    def get_config(self) -> dict:
        """The constructor arguments, so that `RNNCell.from_config(cell.get_config())` rebuilds the cell."""
        return {**super().get_config(), "units": self.units}


class RecurrentLanguageModel(keras.Model):
    """embedding -> keras.layers.RNN(cell) -> Dense(V): logits of the next token at every position.

    Subclasses choose the cell with the class attribute `cell_class` (RNNCell here, LSTMCell in lstm.py).

    Attributes:
        embedding: keras.layers.Embedding(vocab_size, embed_dim), ids [B, T] -> vectors [B, T, D].
        rnn: keras.layers.RNN(cell_class(hidden_dim), return_sequences=True, return_state=True); called on vectors
            [B, T, D] with `initial_state` (list of [B, D_h]) it returns [outputs [B, T, D_h], *final states [B, D_h]].
        output_layer: keras.layers.Dense(vocab_size), [B, T, D_h] -> logits [B, T, V].
    """

    cell_class: type[keras.layers.Layer]

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, **kwargs):
        """A model over `vocab_size` token ids with embeddings of size `embed_dim` and `hidden_dim` hidden units."""
        super().__init__(**kwargs)
        self.vocab_size = positive_int(vocab_size, "vocab_size")
        self.embed_dim = positive_int(embed_dim, "embed_dim")
        self.hidden_dim = positive_int(hidden_dim, "hidden_dim")
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embed_dim, name="embedding")
        self.rnn = keras.layers.RNN(
            self.cell_class(self.hidden_dim, name="cell"), return_sequences=True, return_state=True, name="rnn"
        )
        self.output_layer = keras.layers.Dense(self.vocab_size, name="output_layer")

    def zero_state(self, batch_size: int | tf.Tensor) -> list[tf.Tensor]:
        """The state before the first token: a list of zero tensors [B, D_h] (one for the RNN, h and c for the LSTM)."""
        return self.rnn.cell.get_initial_state(batch_size)

    def call(self, tokens: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Logits [B, T, V] float32 of tokens [B, T] int32, starting from the zero state."""
        logits, _ = self.step(tokens)
        return logits

    def step(
        self, tokens: tf.Tensor, state: Sequence[tf.Tensor] | None = None
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Continue from `state` (list of [B, D_h], None = zeros) over tokens [B, T]: (logits [B, T, V], new state)."""
        tokens = self._check_tokens(tokens)
        state = self.zero_state(tf.shape(tokens)[0]) if state is None else self._check_state(state, tokens)
        # BEGIN SOLUTION (part recurrent): Embed the tokens, run self.rnn from `state`, apply self.output_layer to its outputs.
        outputs, *new_state = self.rnn(self.embedding(tokens), initial_state=state)
        return self.output_layer(outputs), new_state
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `type(model).from_config(model.get_config())` rebuilds the model."""
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "hidden_dim": self.hidden_dim,
        }

    @staticmethod
    def _check_tokens(tokens: tf.Tensor) -> tf.Tensor:
        """tokens as an int32 tensor; ValueError unless they are integer ids of rank 2 [B, T]."""
        tokens = tf.convert_to_tensor(tokens)
        if not tokens.dtype.is_integer:
            raise ValueError(f"tokens must be integer token ids, got dtype {tokens.dtype.name}")
        if tokens.shape.rank != 2:
            raise ValueError(f"tokens must have rank 2 [B, T], got shape {tokens.shape}")
        return tf.cast(tokens, tf.int32)

    def _check_state(self, state: Sequence[tf.Tensor], tokens: tf.Tensor) -> list[tf.Tensor]:
        """state as a list of float tensors [B, D_h]; ValueError for the wrong number of tensors or shapes."""
        count = len(tf.nest.flatten(self.rnn.cell.state_size))
        if not isinstance(state, (list, tuple)) or len(state) != count:
            raise ValueError(f"state must be a list of {count} tensor(s) [B, D_h] as returned by step(), got {state!r}")
        state = [tf.convert_to_tensor(s, dtype=self.compute_dtype) for s in state]
        expected = tf.TensorShape([tokens.shape[0], self.hidden_dim])
        for s in state:
            if not s.shape.is_compatible_with(expected):
                raise ValueError(f"state tensors must have shape [B, D_h] = {expected}, got {s.shape}")
        return state


class RNNLanguageModel(RecurrentLanguageModel):
    """The recurrent language model with the vanilla RNNCell."""

    cell_class = RNNCell
