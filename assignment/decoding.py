"""The transformer's `cached_forward` as compiled TensorFlow graphs, for `TransformerLanguageModel.step` (given).

Run eagerly, every operation of a decoding step is dispatched from Python, which costs more than the arithmetic of a
small model. As one graph, and compiled by XLA for a single new token (the generation loop), a new token costs a few
milliseconds at the default size on a laptop CPU. The cache's fixed shape [B, H, C, hd] means one compilation serves
every position.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import tensorflow as tf


class CompiledDecoder:
    """`model.cached_forward(tokens, caches, start)` run as a graph: XLA-compiled for one new token while
    `model.jit_decode` is True, a plain graph (traced once per shape) otherwise, and eagerly after
    `tf.config.run_functions_eagerly(True)` (for debugging)."""

    def __init__(self, model) -> None:
        self.model = model
        self.graph = tf.function(model.cached_forward, reduce_retracing=True, autograph=False)
        self.xla = tf.function(model.cached_forward, jit_compile=True, autograph=False)
        self._xla_calls: dict[tuple, Callable] = {}

    def __call__(
        self, tokens: tf.Tensor, caches: list[dict[str, tf.Tensor]], start: int
    ) -> tuple[tf.Tensor, list[dict[str, tf.Tensor]]]:
        """(logits [B, T, V], every block's updated cache) of tokens [B, T] at positions start .. start + T - 1."""
        arguments = (tokens, caches, tf.constant(start, tf.int32))
        if tokens.shape[1] == 1 and self.model.jit_decode and not tf.config.functions_run_eagerly():
            try:
                return self._xla_call(arguments)(*arguments)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
                # How XLA refuses an operation it has no kernel for (a tf.numpy_function, say); the plain graph can
                # run it. Tracing errors (TypeError, ValueError) are not caught: the plain graph would repeat them.
                reason = error.message.strip().splitlines()[0] if error.message.strip() else type(error).__name__
                warnings.warn(f"XLA cannot compile cached_forward ({reason}); step runs it as a plain graph, "
                              "more slowly", RuntimeWarning, stacklevel=3)
                self.model.jit_decode = False
        return self.graph(*arguments)

    def _xla_call(self, arguments: tuple) -> Callable:
        """The XLA-compiled cached_forward for arguments of these shapes and dtypes, traced once and then called
        through its concrete function's flat entry point: that skips the matching of the arguments against the
        signature that tf.function and a concrete function's ordinary call make on every call, which costs about half
        as much as the step itself. Without that entry point (a private one), the ordinary call."""
        tokens, caches, _ = arguments
        key = (tuple(tokens.shape), tuple(caches[0]["key"].shape), caches[0]["key"].dtype)
        if key not in self._xla_calls:
            concrete = self.xla.get_concrete_function(*arguments)
            call_flat, captured = getattr(concrete, "_call_flat", None), concrete.captured_inputs
            self._xla_calls[key] = concrete if call_flat is None else (
                lambda *args: call_flat(tf.nest.flatten(args), captured))
        return self._xla_calls[key]
