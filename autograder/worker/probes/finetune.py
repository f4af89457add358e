"""Probes for part 8: fine-tuning (finetune.py). Freezing and LoRA run on a tiny transformer-shaped model defined here
(token and position embeddings, blocks whose attention reads its kernels through the given `adapters.AdaptableKernel`,
a tied output layer), not on the student's part-4 or part-6 model, so that a mistake in another part cannot fail these
tests. The training steps are the probe's own (AdamW with weight decay on `model.trainable_variables`)."""

from __future__ import annotations

import math

import numpy as np

from .common import assign_weights, error_name, seed_everything, to_numpy
from .registry import probe

_TINY: dict[int, tuple] = {}


def _tiny_classes(sub) -> tuple:
    """(TinyModel class) built around the submission's adapters.AdaptableKernel (once per submission module)."""
    adapters = sub.module("adapters")
    if id(adapters) in _TINY:
        return _TINY[id(adapters)]
    import keras
    import tensorflow as tf

    kernel = adapters.AdaptableKernel

    class TinyAttention(keras.layers.Layer):
        query_kernel, key_kernel, value_kernel, output_kernel = kernel(), kernel(), kernel(), kernel()

        def __init__(self, d_model: int, num_heads: int, **kwargs):
            super().__init__(**kwargs)
            self.d_model, self.num_heads, self.head_dim = d_model, num_heads, d_model // num_heads

        def build(self, input_shape) -> None:
            d, h, hd = self.d_model, self.num_heads, self.head_dim
            init = keras.initializers.RandomNormal(stddev=0.3)
            self.query_kernel = self.add_weight(name="query_kernel", shape=(d, h, hd), initializer=init)
            self.key_kernel = self.add_weight(name="key_kernel", shape=(d, h, hd), initializer=init)
            self.value_kernel = self.add_weight(name="value_kernel", shape=(d, h, hd), initializer=init)
            self.output_kernel = self.add_weight(name="output_kernel", shape=(h, hd, d), initializer=init)
            self.query_bias = self.add_weight(name="query_bias", shape=(h, hd), initializer=init)
            self.output_bias = self.add_weight(name="output_bias", shape=(d,), initializer=init)

        def call(self, x):
            q = tf.einsum("btd,dhk->bthk", x, self.query_kernel) + self.query_bias
            k = tf.einsum("btd,dhk->bthk", x, self.key_kernel)
            v = tf.einsum("btd,dhk->bthk", x, self.value_kernel)
            weights = tf.nn.softmax(tf.einsum("bthk,bshk->bhts", q, k) / math.sqrt(self.head_dim), axis=-1)
            attended = tf.einsum("bhts,bshk->bthk", weights, v)
            return tf.einsum("bthk,hkd->btd", attended, self.output_kernel) + self.output_bias

    class TinyBlock(keras.layers.Layer):
        def __init__(self, d_model: int, num_heads: int, **kwargs):
            super().__init__(**kwargs)
            self.attention = TinyAttention(d_model, num_heads, name="attention")
            self.norm = keras.layers.LayerNormalization(name="norm")
            self.mlp = keras.layers.Dense(d_model, activation="tanh", name="mlp")

        def call(self, x):
            x = x + self.attention(self.norm(x))
            return x + self.mlp(x)

    class TinyModel(keras.Model):
        def __init__(self, vocab_size: int, context_length: int, d_model: int, num_heads: int, num_layers: int):
            super().__init__()
            self.token_embedding = keras.layers.Embedding(vocab_size, d_model, name="token_embedding")
            self.position_embedding = keras.layers.Embedding(context_length, d_model, name="position_embedding")
            self.blocks = tuple(TinyBlock(d_model, num_heads, name=f"block_{i}") for i in range(num_layers))
            self.output_bias = self.add_weight(name="output_bias", shape=(vocab_size,), initializer="zeros")

        def call(self, tokens):
            h = self.token_embedding(tokens) + self.position_embedding(tf.range(tf.shape(tokens)[1]))
            for block in self.blocks:
                h = block(h)
            return tf.einsum("btd,vd->btv", h, self.token_embedding.embeddings) + self.output_bias

    _TINY[id(adapters)] = TinyModel
    return TinyModel


def tiny_model(sub, config: dict, seed: int, lora: tuple[int, float] | None = None) -> tuple:
    """(built tiny model, its adapters: [] without `lora`, else `adapters.add_lora(model, rank, alpha)`'s)."""
    import tensorflow as tf

    seed_everything(seed)
    model = _tiny_classes(sub)(**{key: int(value) for key, value in config.items()})
    added = [] if lora is None else sub.module("adapters").add_lora(model, int(lora[0]), float(lora[1]))
    model(tf.zeros([1, 1], tf.int32))
    return model, added


def weight_path(variable) -> str:
    """A weight's path below its model ("block_0/attention/query_kernel_lora/lora_a")."""
    return variable.path.split("/", 1)[1]


def adamw_steps(model, tokens: np.ndarray, steps: int = 2) -> None:
    """`steps` AdamW steps (weight decay 0.5, so that a decayed frozen weight would move) on model.trainable_variables
    with a next-token loss on `tokens`."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.5)
    inputs = tf.constant(tokens, tf.int32)
    labels = tf.roll(inputs, -1, axis=1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(inputs))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))


def _changes(model, tokens: np.ndarray) -> dict:
    before = {weight_path(w): to_numpy(w).copy() for w in model.weights}
    adamw_steps(model, tokens)
    return {weight_path(w): bool(not np.array_equal(to_numpy(w), before[weight_path(w)])) for w in model.weights}


def _adapter(sub, rank: int, alpha: float, input_axes: int, kernel: np.ndarray):
    """(LoRA(rank, alpha, input_axes=input_axes) built by a first call on the kernel, the kernel as a variable)."""
    import tensorflow as tf

    adapter = sub.module("finetune").LoRA(int(rank), float(alpha), input_axes=int(input_axes))
    variable = tf.Variable(kernel, dtype=tf.float32)
    adapter(variable)
    return adapter, variable


@probe("finetune.lora_kernel")
def lora_kernel(sub, rank: int, alpha: float, input_axes: int, kernel: np.ndarray, a: np.ndarray, b: np.ndarray,
                x: np.ndarray, cotangent: np.ndarray) -> dict:
    """A LoRA adapter of `kernel` with A and B assigned by name (lora_a, lora_b): {"adapted": adapter(W), "y": x
    [N, d_in] times the adapted kernel as [d_in, d_out], "grad_a", "grad_b": gradients of sum(y * cotangent)}."""
    import tensorflow as tf

    adapter, variable = _adapter(sub, rank, alpha, input_axes, kernel)
    assign_weights(adapter, {"lora_a": a, "lora_b": b}, "LoRA")
    with tf.GradientTape() as tape:
        adapted = adapter(variable)
        y = tf.matmul(tf.constant(x), tf.reshape(adapted, [x.shape[1], -1]))
        loss = tf.reduce_sum(y * tf.constant(cotangent))
    grad_a, grad_b = tape.gradient(loss, [adapter.lora_a, adapter.lora_b])
    return {"adapted": to_numpy(adapted), "y": to_numpy(y), "grad_a": to_numpy(grad_a), "grad_b": to_numpy(grad_b)}


@probe("finetune.lora_init")
def lora_init(sub, rank: int, alpha: float, input_axes: int, kernel: np.ndarray, seed: int) -> dict:
    """A fresh adapter of `kernel`: {"weights": {name: value} of its weights, "adapted": adapter(W)}."""
    seed_everything(seed)
    adapter, variable = _adapter(sub, rank, alpha, input_axes, kernel)
    return {"weights": {w.path.split("/")[-1]: to_numpy(w) for w in adapter.weights},
            "adapted": to_numpy(adapter(variable))}


@probe("finetune.merge")
def merge(sub, rank: int, alpha: float, input_axes: int, kernel: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """{"before": adapter(W), "kernel": W after adapter.merge(W), "b": B after, "after": adapter(merged W)}."""
    adapter, variable = _adapter(sub, rank, alpha, input_axes, kernel)
    assign_weights(adapter, {"lora_a": a, "lora_b": b}, "LoRA")
    before = to_numpy(adapter(variable))
    adapter.merge(variable)
    return {"before": before, "kernel": to_numpy(variable), "b": to_numpy(adapter.lora_b),
            "after": to_numpy(adapter(variable))}


@probe("finetune.identity")
def identity(sub, config: dict, seed: int, rank: int, alpha: float, tokens: np.ndarray) -> dict:
    """{"pretrained", "adapted"}: the logits of a tiny model and of the same model (weights copied) with fresh adapters
    (`adapters.add_lora`)."""
    import tensorflow as tf

    pretrained, _ = tiny_model(sub, config, seed)
    adapted, added = tiny_model(sub, config, seed + 1, (rank, alpha))
    skipped = {id(w) for adapter in added for w in adapter.weights}
    for target, source in zip([w for w in adapted.weights if id(w) not in skipped], pretrained.weights, strict=True):
        target.assign(source)
    inputs = tf.constant(tokens, tf.int32)
    return {"pretrained": to_numpy(pretrained(inputs)), "adapted": to_numpy(adapted(inputs))}


@probe("finetune.freeze")
def freeze(sub, config: dict, seed: int, num_blocks: int, tokens: np.ndarray) -> dict:
    """{"changed": {weight path: whether two AdamW steps changed it}} after freeze(model, num_blocks)."""
    model, _ = tiny_model(sub, config, seed)
    sub.module("finetune").freeze(model, int(num_blocks))
    return {"changed": _changes(model, tokens)}


@probe("finetune.adapters_only")
def adapters_only(sub, config: dict, seed: int, rank: int, alpha: float, tokens: np.ndarray) -> dict:
    """After train_only_adapters(model, adapters) on a tiny model with adapters (B set to small random values, so that
    A has gradients too): {"trainable": paths of model.trainable_variables, "changed": {path: changed by two AdamW
    steps}}."""
    model, added = tiny_model(sub, config, seed, (rank, alpha))
    rng = np.random.default_rng(int(seed))
    for adapter in added:
        adapter.lora_b.assign(rng.normal(0.0, 0.1, tuple(adapter.lora_b.shape)).astype(np.float32))
    sub.module("finetune").train_only_adapters(model, added)
    return {"trainable": sorted(weight_path(w) for w in model.trainable_variables), "changed": _changes(model, tokens)}


@probe("finetune.counts")
def counts(sub, config: dict, seed: int, frozen: list, rank: int | None = None) -> dict:
    """{"count": trainable_parameters(model)} of a tiny model (with adapters of `rank` when given) whose sublayers
    named in `frozen` ("token_embedding", "block_0", ...) the probe itself made non-trainable."""
    model, _ = tiny_model(sub, config, seed, None if rank is None else (rank, 1.0))
    layers = {"token_embedding": model.token_embedding, "position_embedding": model.position_embedding,
              **{f"block_{i}": block for i, block in enumerate(model.blocks)}}
    for name in frozen:
        layers[name].trainable = False
    count = sub.module("finetune").trainable_parameters(model)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"trainable_parameters must return an int, got {type(count).__name__}")
    return {"count": int(count)}


@probe("finetune.argument_errors")
def argument_errors(sub, config: dict) -> dict:
    """{case: the exception type name it raised, or None}: bad ranks and alphas of LoRA (at construction, or when it
    is built on a kernel its rank exceeds), bad numbers of blocks to freeze, and correct calls ("valid: ...")."""
    finetune = sub.module("finetune")
    model, _ = tiny_model(sub, config, 0)
    blocks = len(model.blocks)
    cases = {
        "valid: LoRA(2, 1.5)": lambda: finetune.LoRA(2, 1.5),
        "valid: LoRA(2, 1.0) built on a kernel [2, 3, 4]": lambda: finetune.LoRA(2, 1.0).build((2, 3, 4)),
        f"valid: freeze(model with {blocks} blocks, {blocks})": lambda: finetune.freeze(model, blocks),
        "LoRA(0, 1.0) (rank < 1)": lambda: finetune.LoRA(0, 1.0),
        "LoRA(-2, 1.0) (rank < 1)": lambda: finetune.LoRA(-2, 1.0),
        "LoRA(2, 0.0) (alpha <= 0)": lambda: finetune.LoRA(2, 0.0),
        "LoRA(2, -4.0) (alpha <= 0)": lambda: finetune.LoRA(2, -4.0),
        "LoRA(3, 1.0) built on a kernel [2, 8] (rank above d_in)": lambda: finetune.LoRA(3, 1.0).build((2, 8)),
        "LoRA(3, 1.0) built on a kernel [8, 2] (rank above d_out)": lambda: finetune.LoRA(3, 1.0).build((8, 2)),
        "LoRA(5, 1.0, input_axes=2) built on a kernel [2, 2, 8] (rank above d_in = 4)":
            lambda: finetune.LoRA(5, 1.0, input_axes=2).build((2, 2, 8)),
        f"freeze(model with {blocks} blocks, {blocks + 1})": lambda: finetune.freeze(model, blocks + 1),
        f"freeze(model with {blocks} blocks, -1)": lambda: finetune.freeze(model, -1),
    }
    return {case: error_name(fn) for case, fn in cases.items()}
