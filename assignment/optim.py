"""Part 6: the optimizer of the modern decoder. AdamW (Adam with decoupled weight decay) and the learning-rate
schedule of linear warmup then cosine decay.

`AdamW` is a `keras.optimizers.Optimizer`: Keras calls `update_step` once per variable at every
`apply_gradients`, with the learning rate of the current step (the schedule's value at `optimizer.iterations`, the
number of updates done before this one), and counts `iterations` up after the update. The training command uses them
with `--optimizer own` (given: trainer.py).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


def _check_number(value: float, name: str, low: float, high: float, *, closed: str = "[)") -> float:
    """value as a float; ValueError unless it lies in the interval from low to high, `closed` giving its brackets."""
    inside = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and (low <= value if closed[0] == "[" else low < value)
              and (value <= high if closed[1] == "]" else value < high))
    if not inside:
        raise ValueError(f"{name} must be in {closed[0]}{low}, {high}{closed[1]}, got {value!r}")
    return float(value)


def _check_int(value: int, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


class AdamW(keras.optimizers.Optimizer):
    """Adam with decoupled weight decay (Loshchilov and Hutter), the update of Keras's AdamW.

    Weight decay shrinks the matrices only (variables of rank >= 2: kernels, embeddings), never the vectors (norm
    scales, biases). Slots: `momentums` and `velocities`, the moments m and v of every variable, zeros at first.
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float = 0.01,
        name: str = "adamw",
        **kwargs,
    ):
        """learning_rate > 0 (a float, or a schedule of the step); 0 <= beta_1, beta_2 < 1; epsilon > 0;
        weight_decay >= 0 (0: Adam). Other keyword arguments go to keras.optimizers.Optimizer."""
        if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            learning_rate = _check_number(learning_rate, "learning_rate", 0.0, math.inf, closed="()")
        betas = _check_number(beta_1, "beta_1", 0.0, 1.0), _check_number(beta_2, "beta_2", 0.0, 1.0)
        epsilon = _check_number(epsilon, "epsilon", 0.0, math.inf, closed="()")
        weight_decay = _check_number(weight_decay, "weight_decay", 0.0, math.inf)
        # weight_decay=None: the base class applies no decay of its own (update_step applies it).
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        (self.beta_1, self.beta_2), self.epsilon, self.weight_decay_rate = betas, epsilon, weight_decay

    def build(self, var_list: list) -> None:
        """Create the zero moments m (`momentums`) and v (`velocities`) of every variable, as keras.optimizers.Adam."""
        if self.built:
            return
        super().build(var_list)
        self.momentums = [self.add_variable_from_reference(variable, "momentum") for variable in var_list]
        self.velocities = [self.add_variable_from_reference(variable, "velocity") for variable in var_list]

    def moments(self, variable) -> tuple[keras.Variable, keras.Variable]:
        """(m, v): the moment slots of a variable the optimizer was built with."""
        index = self._get_variable_index(variable)  # Keras's index of the variable (see keras.optimizers.Optimizer)
        return self.momentums[index], self.velocities[index]

    def update_step(self, gradient: tf.Tensor, variable, learning_rate: tf.Tensor) -> None:
        """One AdamW update of `variable` with `gradient` g at learning rate lr, Keras's AdamW exactly.

        With t = iterations + 1 (1 at the first update):
            variable <- variable - variable * weight_decay * lr    (only when the variable has rank >= 2; first)
            m <- m + (g - m)(1 - beta_1)                             (= beta_1 m + (1 - beta_1) g)
            v <- v + (g^2 - v)(1 - beta_2)
            alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)           (the bias corrections of m and v)
            variable <- variable - alpha m / (sqrt(v) + epsilon)
        `self.moments(variable)` gives the slots m and v; update them and the variable with `self.assign_add` and
        `self.assign_sub`. Compute in the variable's dtype, with the gradient as a dense tensor (an embedding's
        gradient may come as a tf.IndexedSlices: tf.convert_to_tensor).
        """
        # BEGIN SOLUTION (part modern): Decay the matrices, update the moments m and v, take the bias-corrected step.
        lr = tf.cast(learning_rate, variable.dtype)
        gradient = tf.cast(tf.convert_to_tensor(gradient), variable.dtype)
        m, v = self.moments(variable)
        t = tf.cast(self.iterations + 1, variable.dtype)
        if len(variable.shape) >= 2:
            self.assign_sub(variable, variable * self.weight_decay_rate * lr)
        self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
        self.assign_add(v, (tf.square(gradient) - v) * (1.0 - self.beta_2))
        alpha = lr * tf.sqrt(1.0 - tf.pow(self.beta_2, t)) / (1.0 - tf.pow(self.beta_1, t))
        self.assign_sub(variable, m * alpha / (tf.sqrt(v) + self.epsilon))
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `AdamW.from_config(optimizer.get_config())` rebuilds it."""
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "weight_decay": self.weight_decay_rate}


class WarmupCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, cosine decay to `final_lr` at `total_steps`, then
    `final_lr`.

    With s the step (the optimizer's iterations: 0 for the first update), W = warmup_steps and N = total_steps:
        lr(s) = peak * s / W                                                        for s < W
        lr(s) = final_lr + (peak - final_lr) * 0.5 * (1 + cos(pi * (s - W) / (N - W)))  for W <= s < N
        lr(s) = final_lr                                                            for s >= N
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0):
        """peak > 0; 0 <= warmup_steps <= total_steps, total_steps >= 1; 0 <= final_lr <= peak."""
        self.peak = _check_number(peak, "peak", 0.0, math.inf, closed="()")
        self.warmup_steps = _check_int(warmup_steps, "warmup_steps", 0)
        self.total_steps = _check_int(total_steps, "total_steps", 1)
        if warmup_steps > total_steps:
            raise ValueError(f"warmup_steps ({warmup_steps}) must be <= total_steps ({total_steps}): a schedule with "
                             "warmup longer than the run")
        self.final_lr = _check_number(final_lr, "final_lr", 0.0, self.peak, closed="[]")

    def __call__(self, step: int | tf.Tensor) -> tf.Tensor:
        """The float32 learning rate of step `step` (an int or an integer tensor, also inside tf.function)."""
        step = tf.cast(step, tf.float32)
        # BEGIN SOLUTION (part modern): Warm up linearly, then decay along half a cosine period, then stay at final_lr.
        warmup = self.peak * step / max(self.warmup_steps, 1)
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)  # 0 -> 1 over the decay
        cosine = self.final_lr + (self.peak - self.final_lr) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warmup, tf.where(step < self.total_steps, cosine, self.final_lr))
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `from_config(schedule.get_config())` rebuilds it."""
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "final_lr": self.final_lr}
