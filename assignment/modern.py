"""Part 6: the modern decoder, as in the hyperparameter table of today's 7B models (Llama-style).

Part 4's transformer with the changes those models made: RMSNorm instead of LayerNorm, rotary position embeddings
(RoPE) in the attention instead of position vectors added to the input, a SwiGLU MLP, grouped-query attention (GQA:
H query heads share H_kv key/value heads, so the key/value cache is H / H_kv times smaller; H_kv = 1 is multi-query
attention), no biases, pre-norm blocks and an untied output layer.

The attention builds on part 4 (`from .transformer import ...`): `causal_mask`, `scaled_dot_product_attention`,
`split_heads`, `merge_heads` and `update_cache` do the same work here, and `ModernLanguageModel` keeps the cache
contract of `TransformerLanguageModel` (`initial_state`, `step`, `cached_forward`), so that generation
(`samplers.generate`, `python -m assignment.generate`) runs it unchanged.

Shapes: B batch, T new positions, C cache capacity (= context_length), H query heads, H_kv key/value heads,
hd = d_model / H head size, V vocabulary size, F SwiGLU hidden size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf

from .adapters import AdaptableKernel
from .decoding import CompiledDecoder
from .transformer import (
    INIT_STDDEV,
    TransformerLanguageModel,
    _check_positive_int,
    causal_mask,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
    update_cache,
)


def _check_positive_number(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class RMSNorm(keras.layers.Layer):
    """Root-mean-square normalisation over the last axis, with a learned scale and no shift (no mean subtracted).

    Weight: `scale` [d] (ones at first).
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        """epsilon: added to the mean square before the square root."""
        super().__init__(**kwargs)
        self.epsilon = _check_positive_number(epsilon, "epsilon")

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Create `scale` [d] for inputs [..., d]."""
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """x [..., d] -> x / sqrt(mean(x^2 over the last axis) + epsilon) * scale, of x's shape and dtype.

        The statistics are computed in float32 (x cast to float32, the result cast back to x's dtype).
        """
        # BEGIN SOLUTION (part modern): Divide x (in float32) by its root mean square over the last axis, times scale.
        x32 = tf.cast(x, tf.float32)
        inverse_rms = tf.math.rsqrt(tf.reduce_mean(tf.square(x32), axis=-1, keepdims=True) + self.epsilon)  # [..., 1]
        return tf.cast(x32 * inverse_rms * tf.cast(self.scale, tf.float32), x.dtype)
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `from_config(layer.get_config())` rebuilds the layer."""
        return {**super().get_config(), "epsilon": self.epsilon}


def rotary_embedding(x: tf.Tensor, positions: tf.Tensor, theta: float = 10000.0) -> tf.Tensor:
    """Rotate the feature pairs of x [B, H, T, hd] by angles proportional to their positions (RoPE).

    Feature i is paired with feature i + hd/2 (i < hd/2: the two halves, the GPT-NeoX / Llama layout), and the pair of
    row t is rotated by the angle positions[t] * theta^(-2i/hd):
    out[..., i] = x_i cos - x_{i+hd/2} sin, out[..., i + hd/2] = x_{i+hd/2} cos + x_i sin.
    Computed in float32.

    Args:
        x: [B, H, T, hd] queries or keys, hd even.
        positions: int32 [T], the absolute positions of the T rows.
        theta: the base of the wavelengths.
    Returns:
        [B, H, T, hd], x's dtype: every pair keeps its norm, and the dot product of a rotated query and a rotated key
        depends on their positions only through their difference.
    """
    x = tf.convert_to_tensor(x)
    head_dim = x.shape[-1]
    if head_dim is None or head_dim % 2:
        raise ValueError(f"hd (the last axis of x) must be even for the rotary embedding, got shape {x.shape}")
    theta = _check_positive_number(theta, "theta")
    # BEGIN SOLUTION (part modern): Angles positions x theta^(-2i/hd) [T, hd/2]; rotate each pair (x_i, x_{i+hd/2}).
    frequencies = tf.pow(theta, -2.0 * tf.range(head_dim // 2, dtype=tf.float32) / head_dim)  # [hd/2]
    angles = tf.cast(positions, tf.float32)[:, None] * frequencies[None, :]  # [T, hd/2]
    cos, sin = tf.cos(angles), tf.sin(angles)
    first, second = tf.split(tf.cast(x, tf.float32), 2, axis=-1)  # [B, H, T, hd/2] each: x_i and x_{i+hd/2}
    rotated = tf.concat([first * cos - second * sin, second * cos + first * sin], axis=-1)  # [B, H, T, hd]
    return tf.cast(rotated, x.dtype)
    # END SOLUTION


def swiglu_hidden_dim(d_model: int, multiple_of: int = 32) -> int:
    """Llama's SwiGLU hidden size F: int(8 d_model / 3) rounded up to a multiple of `multiple_of` (three matrices of
    d_model x F cost about as much as part 4's two of d_model x 4 d_model)."""
    _check_positive_int(d_model, "d_model")
    _check_positive_int(multiple_of, "multiple_of")
    hidden = int(8 * d_model / 3)
    return multiple_of * -(-hidden // multiple_of)


class SwiGLU(keras.layers.Layer):
    """The gated MLP: down(silu(gate(x)) * up(x)), three bias-free matrices.

    Sublayers: keras.layers.Dense `gate` [d, F], `up` [d, F] and `down` [F, d], without biases.
    """

    def __init__(self, d_model: int, hidden_dim: int, **kwargs):
        """An MLP from d_model features through hidden_dim (F) gated units back to d_model."""
        super().__init__(**kwargs)
        self.d_model = _check_positive_int(d_model, "d_model")
        self.hidden_dim = _check_positive_int(hidden_dim, "hidden_dim")
        init = keras.initializers.RandomNormal(stddev=INIT_STDDEV)
        self.gate = keras.layers.Dense(hidden_dim, use_bias=False, kernel_initializer=init, name="gate")
        self.up = keras.layers.Dense(hidden_dim, use_bias=False, kernel_initializer=init, name="up")
        self.down = keras.layers.Dense(d_model, use_bias=False, kernel_initializer=init, name="down")

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Build the three matrices for inputs [..., d_model]."""
        self.gate.build(input_shape)
        self.up.build(input_shape)
        self.down.build((*input_shape[:-1], self.hidden_dim))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """x [..., d_model] -> down(silu(gate(x)) * up(x)) [..., d_model], silu(z) = z sigmoid(z)."""
        return self.down(tf.nn.silu(self.gate(x)) * self.up(x))  # SOLUTION (part modern): Gate, multiply, project down.

    def get_config(self) -> dict:
        """The constructor arguments, so that `from_config(layer.get_config())` rebuilds the layer."""
        return {**super().get_config(), "d_model": self.d_model, "hidden_dim": self.hidden_dim}


class GroupedQueryAttention(keras.layers.Layer):
    """Causal grouped-query attention with rotary position embeddings, no biases and an optional key/value cache.

    H query heads share H_kv key/value heads: query head j uses key/value head j // (H / H_kv). H_kv = H is multi-head
    attention, H_kv = 1 multi-query attention.

    Weights (the layout of the einsum layers of `keras.layers.GroupQueryAttention`): `query_kernel` [d_model, H, hd],
    `key_kernel` and `value_kernel` [d_model, H_kv, hd], `output_kernel` [H, hd, d_model].
    """

    # Given: each kernel is the stored variable, or W + (alpha / r) A B with a LoRA adapter (fine-tuning).
    query_kernel = AdaptableKernel()
    key_kernel = AdaptableKernel()
    value_kernel = AdaptableKernel()
    output_kernel = AdaptableKernel()

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int, theta: float = 10000.0, **kwargs):
        """num_heads (H) query heads of size hd = d_model // num_heads (even), num_kv_heads (H_kv, dividing H) key/value
        heads; theta is the rotary embedding's base."""
        super().__init__(**kwargs)
        self.d_model = _check_positive_int(d_model, "d_model")
        self.num_heads = _check_positive_int(num_heads, "num_heads")
        self.num_kv_heads = _check_positive_int(num_kv_heads, "num_kv_heads")
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.head_dim = d_model // num_heads
        if self.head_dim % 2:
            raise ValueError(f"the head size d_model / num_heads = {d_model} / {num_heads} = {self.head_dim} must be "
                             "even for the rotary embedding")
        self.theta = _check_positive_number(theta, "theta")

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Create the four projection kernels (names and shapes above) for inputs [B, T, d_model]."""
        if input_shape[-1] != self.d_model:
            raise ValueError(f"x must have d_model = {self.d_model} features, got shape {tuple(input_shape)}")
        d, h, h_kv, hd = self.d_model, self.num_heads, self.num_kv_heads, self.head_dim
        init = keras.initializers.RandomNormal(stddev=INIT_STDDEV)
        self.query_kernel = self.add_weight(name="query_kernel", shape=(d, h, hd), initializer=init)
        self.key_kernel = self.add_weight(name="key_kernel", shape=(d, h_kv, hd), initializer=init)
        self.value_kernel = self.add_weight(name="value_kernel", shape=(d, h_kv, hd), initializer=init)
        self.output_kernel = self.add_weight(name="output_kernel", shape=(h, hd, d), initializer=init)

    def call(
        self,
        x: tf.Tensor,
        positions: tf.Tensor | None = None,
        cache: dict[str, tf.Tensor] | None = None,
        start: int | tf.Tensor = 0,
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """y [B, T, d_model] from x [B, T, d_model]; with a cache {"key", "value": [B, H_kv, C, hd]}, (y, new_cache).

        Project x to q [B, H, T, hd] and k, v [B, H_kv, T, hd] (einsum with the kernels, then split the heads) and
        rotate q and k (never v) with `rotary_embedding` at their positions: start, ..., start + T - 1, or `positions`
        (int32 [T]) when given. Without a cache, query t attends to the keys at positions <= t. With a cache holding
        `start` positions (an int or int32 scalar tensor), write the new keys and values into it (`update_cache`; the
        results are the new cache) and let query t attend to the cached keys at positions <= start + t (rows start,
        ..., start + T - 1 of causal_mask(C), taken with tf.gather), as in part 4. Repeat each key/value head H / H_kv
        times (tf.repeat, so that query head j meets key/value head j // (H / H_kv)), attend as in part 4, merge the
        heads and project them with the output kernel.
        """
        length = x.shape[1]
        if positions is not None and not tf.convert_to_tensor(positions).shape.is_compatible_with([length]):
            raise ValueError(f"positions must have shape [T] = [{length}], got {tf.convert_to_tensor(positions).shape}")
        if cache is not None:
            if set(cache) != {"key", "value"}:
                raise ValueError(f"cache must be a dict with the keys 'key' and 'value', got {sorted(cache)}")
            capacity = cache["key"].shape[2]
            if isinstance(start, int) and None not in (length, capacity) and not 0 <= start <= capacity - length:
                raise ValueError(f"start: positions {start} .. {start + length - 1} are not all in the cache's "
                                 f"0 .. {capacity - 1}")
        # BEGIN SOLUTION (part modern): Project, split heads, rotate q and k, write the cache, repeat k/v heads, attend.
        if positions is None:
            positions = start + tf.range(tf.shape(x)[1])  # [T]
        q = rotary_embedding(split_heads(tf.einsum("btd,dhk->bthk", x, self.query_kernel)), positions, self.theta)
        k = rotary_embedding(split_heads(tf.einsum("btd,dhk->bthk", x, self.key_kernel)), positions, self.theta)
        v = split_heads(tf.einsum("btd,dhk->bthk", x, self.value_kernel))  # [B, H_kv, T, hd], like k
        if cache is None:
            mask = causal_mask(tf.shape(x)[1])  # [T, T]
        else:
            k = update_cache(cache["key"], k, start)  # [B, H_kv, C, hd]
            v = update_cache(cache["value"], v, start)  # [B, H_kv, C, hd]
            mask = tf.gather(causal_mask(tf.shape(k)[2]), start + tf.range(tf.shape(x)[1]))  # [T, C]
        group = self.num_heads // self.num_kv_heads
        attended, _ = scaled_dot_product_attention(
            q, tf.repeat(k, group, axis=1), tf.repeat(v, group, axis=1), mask)  # keys, values [B, H, T or C, hd]
        y = tf.einsum("bthk,hkd->btd", merge_heads(attended), self.output_kernel)  # [B, T, d_model]
        return y if cache is None else (y, {"key": k, "value": v})
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `from_config(layer.get_config())` rebuilds the layer."""
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "num_kv_heads": self.num_kv_heads, "theta": self.theta}


class ModernBlock(keras.layers.Layer):
    """Pre-norm block: h = x + attention(attention_norm(x)), then h + mlp(mlp_norm(h)).

    Sublayers: `attention_norm` and `mlp_norm` (RMSNorm), `attention` (GroupedQueryAttention), `mlp` (SwiGLU).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int,
        hidden_dim: int | None = None,
        epsilon: float = 1e-6,
        theta: float = 10000.0,
        **kwargs,
    ):
        """A block of width d_model; hidden_dim is the SwiGLU size F (None: swiglu_hidden_dim(d_model))."""
        super().__init__(**kwargs)
        # The sublayers check the arguments.
        self.attention_norm = RMSNorm(epsilon, name="attention_norm")
        self.attention = GroupedQueryAttention(d_model, num_heads, num_kv_heads, theta, name="attention")
        self.mlp_norm = RMSNorm(epsilon, name="mlp_norm")
        self.mlp = SwiGLU(d_model, swiglu_hidden_dim(d_model) if hidden_dim is None else hidden_dim, name="mlp")
        self.d_model, self.num_heads, self.num_kv_heads = d_model, num_heads, num_kv_heads
        self.hidden_dim, self.epsilon, self.theta = self.mlp.hidden_dim, self.mlp_norm.epsilon, self.attention.theta

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Build the sublayers for inputs [B, T, d_model]."""
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp.build(input_shape)

    def call(
        self, x: tf.Tensor, cache: dict[str, tf.Tensor] | None = None, start: int | tf.Tensor = 0
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """x [B, T, d_model] -> [B, T, d_model]; with a cache and start (as GroupedQueryAttention), (output, cache)."""
        # BEGIN SOLUTION (part modern): Add the attention branch, then the MLP branch, each on its RMSNorm'd input.
        attended = self.attention(self.attention_norm(x), cache=cache, start=start)
        if cache is not None:
            attended, cache = attended
        h = x + attended
        out = h + self.mlp(self.mlp_norm(h))
        return out if cache is None else (out, cache)
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `from_config(layer.get_config())` rebuilds the layer."""
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "num_kv_heads": self.num_kv_heads, "hidden_dim": self.hidden_dim, "epsilon": self.epsilon,
                "theta": self.theta}


class ModernLanguageModel(keras.Model):
    """Decoder-only Llama-style model: token embedding, `num_layers` ModernBlocks, final RMSNorm, untied output layer.

    No positional embedding (the attention rotates queries and keys instead) and no dropout. Same API and cache
    contract as part 4's TransformerLanguageModel, with caches [B, H_kv, C, hd].

    Attributes:
        token_embedding: keras.layers.Embedding [V, d_model].
        blocks: tuple of ModernBlock, the layers named block_0, block_1, ...
        final_norm: RMSNorm applied before the output layer.
        output_layer: keras.layers.Dense(V, use_bias=False), kernel [d_model, V], not tied to the embedding.
        context_length: int, the most positions the model sees (call and step refuse more).
        jit_decode: bool, whether step runs a single new token through XLA (as part 4).
        decoder: the decoding.CompiledDecoder that runs cached_forward for step.
    """

    jit_decode = True
    _check_tokens = TransformerLanguageModel._check_tokens  # part 4's: int32 [B, T] within the context, or ValueError

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int,
        num_heads: int,
        num_kv_heads: int,
        num_layers: int,
        hidden_dim: int | None = None,
        theta: float = 10000.0,
        **kwargs,
    ):
        """A language model over vocab_size tokens seeing at most context_length positions; num_heads query heads
        share num_kv_heads key/value heads in every block."""
        super().__init__(**kwargs)
        self.vocab_size = _check_positive_int(vocab_size, "vocab_size")
        self.context_length = _check_positive_int(context_length, "context_length")
        self.d_model = _check_positive_int(d_model, "d_model")
        self.num_layers = _check_positive_int(num_layers, "num_layers")
        init = keras.initializers.RandomNormal(stddev=INIT_STDDEV)
        self.token_embedding = keras.layers.Embedding(vocab_size, d_model, embeddings_initializer=init,
                                                      name="token_embedding")
        # A tuple, not a list: tf.train.Checkpoint saves the layers of a tuple attribute but skips those of a list.
        self.blocks = tuple(ModernBlock(d_model, num_heads, num_kv_heads, hidden_dim, theta=theta, name=f"block_{i}")
                            for i in range(num_layers))  # the blocks check the other arguments
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, d_model // num_heads
        self.hidden_dim, self.theta = self.blocks[0].hidden_dim, self.blocks[0].theta
        self.final_norm = RMSNorm(name="final_norm")
        self.output_layer = keras.layers.Dense(vocab_size, use_bias=False, kernel_initializer=init,
                                               name="output_layer")
        self.decoder = CompiledDecoder(self)

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Build the sublayers for tokens [B, T]."""
        hidden_shape = (*input_shape, self.d_model)
        self.token_embedding.build(input_shape)
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        self.output_layer.build(hidden_shape)

    def call(self, tokens: tf.Tensor, training: bool = False) -> tf.Tensor:
        """logits float32 [B, T, V] for tokens int32 [B, T], T <= context_length (`training` changes nothing: no
        dropout).

        h = token_embedding(tokens), then every block, then final_norm; the logits are output_layer(h).
        """
        tokens = self._check_tokens(tokens)
        # BEGIN SOLUTION (part modern): Embed the tokens, run the blocks, the final RMSNorm and the output layer.
        h = self.token_embedding(tokens)  # [B, T, d_model]
        for block in self.blocks:
            h = block(h)
        return self.output_layer(self.final_norm(h))  # [B, T, V]
        # END SOLUTION

    def initial_state(self, batch_size: int | tf.Tensor) -> dict:
        """The state before any token: every block's cache zeros [B, H_kv, C, hd] with C = context_length,
        position 0."""
        empty = tf.zeros([batch_size, self.num_kv_heads, self.context_length, self.head_dim])
        return {"caches": [{"key": empty, "value": empty} for _ in self.blocks], "position": 0}

    def step(self, tokens: tf.Tensor, state: dict | None = None) -> tuple[tf.Tensor, dict]:
        """Run tokens int32 [B, T] after the prefix cached in `state` (None = empty); returns (logits, new state).

        Part 4's `TransformerLanguageModel.step`, whose state {"caches", "position"} here holds one cache
        {"key", "value": [B, H_kv, C, hd]} per block: the logits [B, T, V] equal those of `call` on the whole
        sequence, and `cached_forward` does the work as a compiled graph.
        """
        return TransformerLanguageModel.step(self, tokens, state)

    def cached_forward(
        self, tokens: tf.Tensor, caches: list[dict[str, tf.Tensor]], start: tf.Tensor
    ) -> tuple[tf.Tensor, list[dict[str, tf.Tensor]]]:
        """Logits [B, T, V] of tokens [B, T] at positions start, ..., start + T - 1, and every block's updated cache.

        Each block runs on h with its cache {"key", "value"} [B, H_kv, C, hd] holding `start` positions and returns
        (h, cache with positions up to start + T - 1 written). `start` is an int32 scalar tensor (this runs inside
        tf.function).
        """
        # BEGIN SOLUTION (part modern): Run the new tokens through the blocks with their caches; return logits and caches.
        h = self.token_embedding(tokens)  # [B, T, d_model]
        new_caches = []
        for block, cache in zip(self.blocks, caches, strict=True):
            h, cache = block(h, cache=cache, start=start)
            new_caches.append(cache)
        return self.output_layer(self.final_norm(h)), new_caches  # [B, T, V] and one cache per block
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `ModernLanguageModel.from_config(model.get_config())` rebuilds it."""
        return {**super().get_config(), "vocab_size": self.vocab_size, "context_length": self.context_length,
                "d_model": self.d_model, "num_heads": self.num_heads, "num_kv_heads": self.num_kv_heads,
                "num_layers": self.num_layers, "hidden_dim": self.hidden_dim, "theta": self.theta}
