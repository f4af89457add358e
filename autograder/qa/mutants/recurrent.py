"""Mutants of part 2 (rnn.py, lstm.py): the cell equations, the weight layout and the state carried by step()."""

from __future__ import annotations

from autograder.qa.mutants import Edit, Mutant

RNN_STEPS = "rnn.cell_steps"
RNN_LAYER = "rnn.cell_in_rnn_layer"
RNN_LOGITS = "rnn.lm_logits"
RNN_CARRY = "rnn.lm_state_carry"
RNN_GRADIENTS = "rnn.lm_gradients"
LSTM_STEPS = "lstm.cell_steps"
LSTM_LAYER = "lstm.cell_in_rnn_layer"
LSTM_LOGITS = "lstm.lm_logits"
LSTM_CARRY = "lstm.lm_state_carry"
LSTM_WEIGHTS = "lstm.lstm_initial_weights"
LSTM_GRADIENTS = "lstm.lm_gradients"

MUTANTS = [
    Mutant(
        "rnn-relu",
        "the RNN cell uses ReLU instead of tanh",
        Edit("rnn", "RNNCell.call", patch=(("h_next = tf.tanh(", "h_next = tf.nn.relu("),)),
        (RNN_STEPS, RNN_LAYER),
    ),
    Mutant(
        "rnn-no-bias",
        "the RNN cell leaves out the bias",
        Edit("rnn", "RNNCell.call", patch=((" + self.bias)", ")"),)),
        (RNN_STEPS, RNN_LAYER, RNN_GRADIENTS),
    ),
    Mutant(
        "rnn-kernels-swapped",
        "the RNN cell multiplies x by the recurrent kernel and h by the input kernel (works only when D == H)",
        Edit("rnn", "RNNCell.call", patch=((
            "tf.matmul(inputs, self.kernel) + tf.matmul(h, self.recurrent_kernel)",
            "tf.matmul(inputs, self.recurrent_kernel) + tf.matmul(h, self.kernel)"),
        )),
        (RNN_STEPS, RNN_LAYER),
    ),
    Mutant(
        "rnn-state-not-updated",
        "the RNN cell returns the old state, so every step starts again from the initial h",
        Edit("rnn", "RNNCell.call", patch=(("return h_next, [h_next]", "return h_next, [h]"),)),
        (RNN_STEPS, RNN_LAYER),
    ),
    Mutant(
        "rnn-no-recurrence",
        "the RNN cell forgets the recurrent term h U (a feed-forward layer per step)",
        Edit("rnn", "RNNCell.call", patch=((" + tf.matmul(h, self.recurrent_kernel)", ""),)),
        (RNN_STEPS, RNN_LAYER, RNN_GRADIENTS),
    ),
    Mutant(
        "lm-step-ignores-state",
        "the language model's step() always starts from the zero state instead of the state it is given",
        Edit("rnn", "RecurrentLanguageModel.step", patch=(
            ("initial_state=state)", "initial_state=self.zero_state(tf.shape(tokens)[0]))"),
        )),
        (RNN_CARRY, LSTM_CARRY),
    ),
    Mutant(
        "lm-returns-probabilities",
        "the language model returns softmax probabilities instead of logits",
        Edit("rnn", "RecurrentLanguageModel.step", patch=(
            ("return self.output_layer(outputs), new_state",
             "return tf.nn.softmax(self.output_layer(outputs)), new_state"),
        )),
        (RNN_LOGITS, LSTM_LOGITS),
    ),
    Mutant(
        "lstm-gate-order-ifog",
        "the LSTM reads the four blocks in the order i, f, o, g instead of i, f, g, o",
        Edit("lstm", "LSTMCell.call", patch=(("z_i, z_f, z_g, z_o = tf.split", "z_i, z_f, z_o, z_g = tf.split"),)),
        (LSTM_STEPS, LSTM_LAYER),
    ),
    Mutant(
        "lstm-forget-bias-zero",
        "the LSTM's forget-gate bias starts at 0 instead of 1",
        Edit("lstm", "LSTMCell._bias_initializer", patch=(("tf.ones([h], dtype)", "tf.zeros([h], dtype)"),)),
        (LSTM_WEIGHTS,),
    ),
    Mutant(
        "lstm-cell-state-not-carried",
        "the LSTM returns the old memory c as the new state",
        Edit("lstm", "LSTMCell.call", patch=(("return h_next, [h_next, c_next]", "return h_next, [h_next, c]"),)),
        (LSTM_STEPS, LSTM_LAYER),
    ),
    Mutant(
        "lstm-no-output-tanh",
        "the LSTM computes h' = o * c' without the tanh",
        Edit("lstm", "LSTMCell.call", patch=(("h_next = o * tf.tanh(c_next)", "h_next = o * c_next"),)),
        (LSTM_STEPS, LSTM_LAYER),
    ),
    Mutant(
        "lstm-gates-swapped-in-update",
        "the LSTM updates the memory as c' = i * c + f * g (input and forget gates swapped)",
        Edit("lstm", "LSTMCell.call", patch=(("c_next = f * c + i * g", "c_next = i * c + f * g"),)),
        (LSTM_STEPS, LSTM_LAYER),
    ),
    Mutant(
        "lstm-sigmoid-candidate",
        "the LSTM squashes the candidate g with a sigmoid instead of tanh",
        Edit("lstm", "LSTMCell.call", patch=(("tf.tanh(z_g)", "tf.sigmoid(z_g)"),)),
        (LSTM_STEPS, LSTM_LAYER),
    ),
    Mutant(
        "lstm-states-swapped",
        "the LSTM returns its states in the order [c, h] instead of [h, c]",
        Edit("lstm", "LSTMCell.call", patch=(("return h_next, [h_next, c_next]", "return h_next, [c_next, h_next]"),)),
        (LSTM_STEPS, LSTM_LAYER),
    ),
    Mutant(
        "lstm-no-bias",
        "the LSTM cell leaves out the bias b in z = x W + h U + b",
        Edit("lstm", "LSTMCell.call",
             patch=((" + tf.matmul(h, self.recurrent_kernel) + self.bias", " + tf.matmul(h, self.recurrent_kernel)"),)),
        (LSTM_STEPS, LSTM_LAYER, LSTM_GRADIENTS),
    ),
]
