"""Part 4: a decoder-only transformer language model with causal self-attention and a key/value cache.

Building blocks from the bottom up: the causal mask, scaled dot-product attention, the sinusoidal positional encoding,
multi-head self-attention (weights laid out as in `keras.layers.MultiHeadAttention`), a pre-LayerNorm transformer block
and the language model, whose output layer reuses the token embedding matrix. `TransformerLanguageModel.step` runs new
tokens after a cached prefix, so generation costs one position per new token instead of a full recompute.

The key/value cache has a fixed capacity of C = context_length positions, preallocated with zeros: new keys and values
are written at their positions and the queries attend to every cached position up to their own. Fixed shapes let
XLA compile the one-token decoding step once for all positions (given: decoding.py).

Shapes: B batch, T new positions, S cached positions, C cache capacity, H heads, hd = d_model / H head size,
V vocabulary size.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from .adapters import AdaptableKernel
from .decoding import CompiledDecoder

MASKED_SCORE = -1e9
"""The score given to masked positions before the softmax: exp(MASKED_SCORE - max) is exactly 0 in float32."""

POSITIONAL_KINDS = ("sinusoidal", "learned")

INIT_STDDEV = 0.02
"""Every kernel and embedding starts as N(0, 0.02^2), as in GPT-2: small initial logits (near-uniform predictions)
and, on character-level Shakespeare, a validation loss of 1.88 about 12 % sooner than N(0, 1/d_model)."""


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_dropout(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be a rate in [0, 1), got {rate!r}")
    return float(rate)


def causal_mask(length: int) -> tf.Tensor:
    """bool [length, length]: entry [i, j] is True iff query position i may attend to key position j, i.e. j <= i."""
    if not tf.is_tensor(length) and (isinstance(length, bool) or int(length) != length or length < 0):
        raise ValueError(f"length must be a non-negative int, got {length!r}")
    # BEGIN SOLUTION (part transformer): Return the [length, length] boolean matrix that is True where key j <= query i.
    positions = tf.range(length)
    return positions[None, :] <= positions[:, None]
    # END SOLUTION


def scaled_dot_product_attention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """softmax(q k^T / sqrt(dk)) v with masked scores set to MASKED_SCORE; returns (output, weights).

    Args:
        q: float32 [..., Tq, dk] queries.
        k: float32 [..., Tk, dk] keys.
        v: float32 [..., Tk, dv] values.
        mask: optional bool, broadcastable to [..., Tq, Tk]; False marks a key the query must not attend to.
    Returns:
        output float32 [..., Tq, dv] and weights float32 [..., Tq, Tk] (each row sums to 1, 0 where masked).
    """
    # BEGIN SOLUTION (part transformer): Scale the scores q k^T by 1/sqrt(dk), mask them, softmax over keys, weight the values.
    q, k, v = (tf.convert_to_tensor(t, dtype_hint=tf.float32) for t in (q, k, v))
    scores = tf.matmul(q, k, transpose_b=True) / tf.sqrt(tf.cast(tf.shape(k)[-1], q.dtype))
    if mask is not None:
        scores = tf.where(tf.cast(mask, tf.bool), scores, tf.constant(MASKED_SCORE, scores.dtype))
    weights = tf.nn.softmax(scores, axis=-1)
    return tf.matmul(weights, v), weights
    # END SOLUTION


def positional_encoding(length: int, d_model: int) -> tf.Tensor:
    """float32 [length, d_model]: PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), PE[pos, 2i+1] = cos(same angle)."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be a non-negative int, got {length!r}")
    _check_positive_int(d_model, "d_model")
    # BEGIN SOLUTION (part transformer): Compute the angles pos / 10000^(2i/d_model), then interleave their sin and cos.
    position = tf.range(length, dtype=tf.float64)[:, None]
    even_dims = tf.range(0, d_model, 2, dtype=tf.float64)[None, :]  # 2i
    angle = position / tf.pow(tf.constant(10000.0, tf.float64), even_dims / d_model)  # [length, ceil(d_model / 2)]
    pairs = tf.stack([tf.sin(angle), tf.cos(angle)], axis=-1)  # [length, ceil(d_model / 2), 2]
    return tf.cast(tf.reshape(pairs, [length, -1])[:, :d_model], tf.float32)
    # END SOLUTION


def split_heads(x: tf.Tensor) -> tf.Tensor:
    """Move the heads before time: [B, T, H, hd] -> [B, H, T, hd]."""
    return tf.transpose(x, [0, 2, 1, 3])  # SOLUTION (part transformer): Swap the time and head axes.


def merge_heads(x: tf.Tensor) -> tf.Tensor:
    """Move the heads back after time: [B, H, T, hd] -> [B, T, H, hd]."""
    return tf.transpose(x, [0, 2, 1, 3])  # SOLUTION (part transformer): Swap the head and time axes.


def update_cache(cache: tf.Tensor, new: tf.Tensor, start: int | tf.Tensor) -> tf.Tensor:
    """cache [B, H, C, hd] with positions start, ..., start + T - 1 replaced by new [B, H, T, hd]; the rest is kept.

    Written with one-hot rows instead of slicing at `start`, so that XLA compiles one graph for every start.
    Requires start + T <= C.
    """
    rows = tf.one_hot(start + tf.range(tf.shape(new)[2]), tf.shape(cache)[2], dtype=cache.dtype)  # [T, C]
    kept = 1.0 - tf.reduce_sum(rows, axis=0)  # [C]: 0 at the positions being written, 1 elsewhere
    return cache * kept[:, None] + tf.einsum("tc,bhtd->bhcd", rows, new)


class MultiHeadSelfAttention(keras.layers.Layer):
    """Causal multi-head self-attention with an optional key/value cache.

    Weights (the layout of `keras.layers.MultiHeadAttention`'s einsum layers): `query_kernel`, `key_kernel`,
    `value_kernel` [d_model, H, hd] with `query_bias`, `key_bias`, `value_bias` [H, hd]; `output_kernel`
    [H, hd, d_model] and `output_bias` [d_model].
    """

    # Given: each kernel is the stored variable, or W + (alpha / r) A B with a LoRA adapter (fine-tuning).
    query_kernel = AdaptableKernel()
    key_kernel = AdaptableKernel()
    value_kernel = AdaptableKernel()
    output_kernel = AdaptableKernel()

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, **kwargs):
        """H = num_heads heads of size d_model // num_heads; with `training` only, `dropout` drops either the
        attended values or the attention weights (as keras.layers.MultiHeadAttention does)."""
        super().__init__(**kwargs)
        self.d_model = _check_positive_int(d_model, "d_model")
        self.num_heads = _check_positive_int(num_heads, "num_heads")
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.head_dim = d_model // num_heads
        self.dropout_rate = _check_dropout(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Create the projection kernels and biases (names and shapes above) for inputs [B, T, d_model]."""
        if input_shape[-1] != self.d_model:
            raise ValueError(f"x must have d_model = {self.d_model} features, got shape {tuple(input_shape)}")
        d, h, hd = self.d_model, self.num_heads, self.head_dim
        init = keras.initializers.RandomNormal(stddev=INIT_STDDEV)
        self.query_kernel = self.add_weight(name="query_kernel", shape=(d, h, hd), initializer=init)
        self.query_bias = self.add_weight(name="query_bias", shape=(h, hd), initializer="zeros")
        self.key_kernel = self.add_weight(name="key_kernel", shape=(d, h, hd), initializer=init)
        self.key_bias = self.add_weight(name="key_bias", shape=(h, hd), initializer="zeros")
        self.value_kernel = self.add_weight(name="value_kernel", shape=(d, h, hd), initializer=init)
        self.value_bias = self.add_weight(name="value_bias", shape=(h, hd), initializer="zeros")
        self.output_kernel = self.add_weight(name="output_kernel", shape=(h, hd, d), initializer=init)
        self.output_bias = self.add_weight(name="output_bias", shape=(d,), initializer="zeros")

    def call(
        self,
        x: tf.Tensor,
        cache: dict[str, tf.Tensor] | None = None,
        start: int | tf.Tensor = 0,
        training: bool = False,
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """y [B, T, d_model] from x [B, T, d_model]; with a cache {"key", "value": [B, H, C, hd]}, (y, new_cache).

        Project x to q, k, v [B, T, H, hd] (einsum with the kernels, plus the biases) and split the heads
        ([B, H, T, hd]). Without a cache, query t attends to the keys at positions <= t. With a cache holding
        `start` positions (an int or int32 scalar tensor), x is at positions start, ..., start + T - 1: write the new
        keys and values into the cache there (`update_cache`; the results are the new cache) and let query t attend
        to the cached keys at positions <= start + t (rows start, ..., start + T - 1 of causal_mask(C), taken with
        tf.gather: slicing at a tensor `start` would make XLA compile a new graph for every position). Drop out the
        attended values, or the attention weights before they weight the values (either; training only), merge the
        heads and project them with the output kernel. With `training=False` the output equals that of a layer
        without dropout.
        """
        if cache is not None and set(cache) != {"key", "value"}:
            raise ValueError(f"cache must be a dict with the keys 'key' and 'value', got {sorted(cache)}")
        # BEGIN SOLUTION (part transformer): Project, split heads, write the cache, attend causally, merge heads, project.
        q = split_heads(tf.einsum("btd,dhk->bthk", x, self.query_kernel) + self.query_bias)  # [B, H, T, hd]
        k = split_heads(tf.einsum("btd,dhk->bthk", x, self.key_kernel) + self.key_bias)  # [B, H, T, hd]
        v = split_heads(tf.einsum("btd,dhk->bthk", x, self.value_kernel) + self.value_bias)  # [B, H, T, hd]
        if cache is None:
            mask = causal_mask(tf.shape(x)[1])  # [T, T]
        else:
            k = update_cache(cache["key"], k, start)  # [B, H, C, hd]
            v = update_cache(cache["value"], v, start)  # [B, H, C, hd]
            mask = tf.gather(causal_mask(tf.shape(k)[2]), start + tf.range(tf.shape(x)[1]))  # [T, C]
        attended, _ = scaled_dot_product_attention(q, k, v, mask)  # [B, H, T, hd]
        attended = self.dropout(attended, training=training)
        y = tf.einsum("bthk,hkd->btd", merge_heads(attended), self.output_kernel) + self.output_bias  # [B, T, d_model]
        return y if cache is None else (y, {"key": k, "value": v})
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `from_config(layer.get_config())` rebuilds the layer."""
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "dropout": self.dropout_rate}


class TransformerBlock(keras.layers.Layer):
    """Pre-LayerNorm block: x + Dropout(MHSA(LN1(x))), then x + Dropout(MLP(LN2(x))).

    MLP = Dense(4 d_model, gelu) -> Dense(d_model).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, **kwargs):
        """A block of width d_model with num_heads attention heads and dropout on both residual branches."""
        super().__init__(**kwargs)
        self.attention = MultiHeadSelfAttention(d_model, num_heads, dropout, name="attention")  # checks the arguments
        self.d_model, self.num_heads, self.dropout_rate = d_model, num_heads, self.attention.dropout_rate
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm1")
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm2")
        init = keras.initializers.RandomNormal(stddev=INIT_STDDEV)
        self.mlp_hidden = keras.layers.Dense(4 * d_model, activation="gelu", kernel_initializer=init, name="mlp_hidden")
        self.mlp_output = keras.layers.Dense(d_model, kernel_initializer=init, name="mlp_output")
        self.dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Build the sublayers for inputs [B, T, d_model]."""
        self.norm1.build(input_shape)
        self.attention.build(input_shape)
        self.norm2.build(input_shape)
        self.mlp_hidden.build(input_shape)
        self.mlp_output.build((*input_shape[:-1], 4 * self.d_model))

    def call(
        self,
        x: tf.Tensor,
        cache: dict[str, tf.Tensor] | None = None,
        start: int | tf.Tensor = 0,
        training: bool = False,
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """x [B, T, d_model] -> [B, T, d_model]; with a cache and start (as MultiHeadSelfAttention), (output, cache)."""
        # BEGIN SOLUTION (part transformer): Apply the attention and MLP residual branches (pre-LN, dropout on each branch).
        attended = self.attention(self.norm1(x), cache=cache, start=start, training=training)
        if cache is not None:
            attended, cache = attended
        x = x + self.dropout(attended, training=training)
        x = x + self.dropout(self.mlp_output(self.mlp_hidden(self.norm2(x))), training=training)
        return x if cache is None else (x, cache)
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `from_config(layer.get_config())` rebuilds the layer."""
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "dropout": self.dropout_rate}


class TransformerLanguageModel(keras.Model):
    """Decoder-only transformer: token embedding + positions, `num_layers` blocks, final LayerNorm, tied output layer.

    Attributes:
        token_embedding: keras.layers.Embedding, the matrix E [V, d_model]; logits = h E^T + output_bias.
        position_embedding: keras.layers.Embedding [context_length, d_model] when positional="learned", else None.
        blocks: tuple of TransformerBlock, the layers named block_0, block_1, ...
        final_norm: keras.layers.LayerNormalization applied before the output layer.
        output_bias: float32 [V].
        context_length: int, the most positions the model sees (call and step refuse more).
        jit_decode: bool, whether step runs a single new token through XLA (True by default; False skips the
            compilation, which takes a second or two and some memory, for a slower step).
        decoder: the decoding.CompiledDecoder that runs cached_forward for step.
    """

    jit_decode = True

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        dropout: float = 0.0,
        positional: str = "learned",
        **kwargs,
    ):
        """A language model over vocab_size tokens seeing at most context_length positions.

        Positions are learned by default: the sinusoidal encoding's unit-amplitude vectors dwarf the small tied token
        embeddings (standard deviation INIT_STDDEV), so with them the model learns much more slowly at first.
        """
        super().__init__(**kwargs)
        self.vocab_size = _check_positive_int(vocab_size, "vocab_size")
        self.context_length = _check_positive_int(context_length, "context_length")
        self.d_model = _check_positive_int(d_model, "d_model")
        self.num_heads = _check_positive_int(num_heads, "num_heads")
        self.num_layers = _check_positive_int(num_layers, "num_layers")
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if positional not in POSITIONAL_KINDS:
            raise ValueError(f"positional must be one of {POSITIONAL_KINDS}, got {positional!r}")
        self.positional = positional
        self.dropout_rate = _check_dropout(dropout)
        init = keras.initializers.RandomNormal(stddev=INIT_STDDEV)
        self.token_embedding = keras.layers.Embedding(vocab_size, d_model, embeddings_initializer=init,
                                                      name="token_embedding")
        self.position_embedding = None
        if positional == "learned":
            self.position_embedding = keras.layers.Embedding(context_length, d_model, embeddings_initializer=init,
                                                             name="position_embedding")
        # A tuple, not a list: tf.train.Checkpoint saves the layers of a tuple attribute but skips those of a list.
        self.blocks = tuple(TransformerBlock(d_model, num_heads, dropout, name=f"block_{i}") for i in range(num_layers))
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")
        self.decoder = CompiledDecoder(self)

    def build(self, input_shape: Sequence[int | None]) -> None:
        """Build the sublayers and create output_bias [V] for tokens [B, T]."""
        hidden_shape = (*input_shape, self.d_model)
        self.token_embedding.build(input_shape)
        if self.position_embedding is not None:
            self.position_embedding.build((self.context_length,))
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        self.output_bias = self.add_weight(name="output_bias", shape=(self.vocab_size,), initializer="zeros")

    def positions(self, start: int | tf.Tensor, length: int | tf.Tensor) -> tf.Tensor:
        """float32 [length, d_model]: the position vectors of positions start, ..., start + length - 1."""
        indices = start + tf.range(length)  # not tf.range(start, start + length): XLA needs a static length
        if self.position_embedding is not None:
            return self.position_embedding(indices)
        return tf.gather(positional_encoding(self.context_length, self.d_model), indices)

    def _check_tokens(self, tokens: tf.Tensor, start: int = 0) -> tf.Tensor:
        """tokens as int32 [B, T]; ValueError unless integer ids of rank 2 with start + T <= context_length."""
        tokens = tf.convert_to_tensor(tokens)
        if not tokens.dtype.is_integer:
            raise ValueError(f"tokens must be integer token ids, got dtype {tokens.dtype.name}")
        if tokens.shape.rank != 2:
            raise ValueError(f"tokens must have rank 2 [B, T], got shape {tokens.shape}")
        length = tokens.shape[1]
        if length is not None and start + length > self.context_length:
            where = f"{start} cached + {length} new" if start else f"{length}"
            raise ValueError(f"tokens: {where} positions exceed context_length = {self.context_length}")
        return tf.cast(tokens, tf.int32)

    def call(self, tokens: tf.Tensor, training: bool = False) -> tf.Tensor:
        """logits float32 [B, T, V] for tokens int32 [B, T], T <= context_length.

        h = token_embedding(tokens) + positions(0, T), then every block, then final_norm; the logits are
        h E^T + output_bias with E = token_embedding.embeddings (the output layer is tied to the embedding).
        """
        tokens = self._check_tokens(tokens)
        # BEGIN SOLUTION (part transformer): Embed tokens and positions, run the blocks and the final LayerNorm, tied logits.
        h = self.token_embedding(tokens) + self.positions(0, tf.shape(tokens)[1])  # [B, T, d_model]
        for block in self.blocks:
            h = block(h, training=training)
        h = self.final_norm(h)
        return tf.einsum("btd,vd->btv", h, self.token_embedding.embeddings) + self.output_bias  # [B, T, V]
        # END SOLUTION

    def initial_state(self, batch_size: int | tf.Tensor) -> dict:
        """The state before any token: every layer's cache zeros [B, H, C, hd] with C = context_length, position 0."""
        empty = tf.zeros([batch_size, self.num_heads, self.context_length, self.d_model // self.num_heads])
        return {"caches": [{"key": empty, "value": empty} for _ in self.blocks], "position": 0}

    def step(self, tokens: tf.Tensor, state: dict | None = None) -> tuple[tf.Tensor, dict]:
        """Run tokens int32 [B, T] after the prefix cached in `state` (None = empty); returns (logits, new state).

        The state is {"caches": one {"key", "value"} cache [B, H, C, hd] per block, "position": number of positions
        seen}. The logits [B, T, V] equal those of `call` on the whole sequence. The work is done by
        `cached_forward`, run by `self.decoder` as one TensorFlow graph; a single new token (T = 1, the generation
        loop) runs a graph compiled by XLA when `jit_decode` is True and XLA can compile it.
        `tf.config.run_functions_eagerly(True)` runs it eagerly, for debugging.
        """
        if state is not None and (not isinstance(state, dict) or set(state) != {"caches", "position"}
                                  or len(state["caches"]) != len(self.blocks)):
            raise ValueError("state must be None or the dict {'caches', 'position'} returned by step()")
        start = 0 if state is None else int(state["position"])
        tokens = self._check_tokens(tokens, start)
        if not self.built:
            self.build(tuple(tokens.shape))
        if state is None:
            state = self.initial_state(tf.shape(tokens)[0])
        logits, caches = self.decoder(tokens, state["caches"], start)
        return logits, {"caches": caches, "position": start + int(tokens.shape[1])}

    def cached_forward(
        self, tokens: tf.Tensor, caches: list[dict[str, tf.Tensor]], start: tf.Tensor
    ) -> tuple[tf.Tensor, list[dict[str, tf.Tensor]]]:
        """Logits [B, T, V] of tokens [B, T] at positions start, ..., start + T - 1, and every block's updated cache.

        h = token_embedding(tokens) + positions(start, T); each block runs on h with its cache {"key", "value"}
        [B, H, C, hd] holding `start` positions and returns (h, cache with positions up to start + T - 1 written);
        the logits are final_norm(h) E^T + output_bias. `start` is an int32 scalar tensor (this runs inside
        tf.function, so use tf.shape(tokens)[1] for T).
        """
        # BEGIN SOLUTION (part transformer): Run the new tokens through the blocks with their caches; return logits and caches.
        h = self.token_embedding(tokens) + self.positions(start, tf.shape(tokens)[1])  # [B, T, d_model]
        new_caches = []
        for block, cache in zip(self.blocks, caches, strict=True):
            h, cache = block(h, cache=cache, start=start)
            new_caches.append(cache)
        logits = tf.einsum("btd,vd->btv", self.final_norm(h), self.token_embedding.embeddings) + self.output_bias
        return logits, new_caches  # [B, T, V] and one cache {"key", "value": [B, H, C, hd]} per block
        # END SOLUTION

    def get_config(self) -> dict:
        """The constructor arguments, so that `TransformerLanguageModel.from_config(model.get_config())` rebuilds it."""
        return {**super().get_config(), "vocab_size": self.vocab_size, "context_length": self.context_length,
                "d_model": self.d_model, "num_heads": self.num_heads, "num_layers": self.num_layers,
                "dropout": self.dropout_rate, "positional": self.positional}
