"""Part 8: fine-tuning a pretrained language model on a new text, by freezing and by LoRA.

Full fine-tuning trains every weight again; on a small fine-tuning set that overfits it and forgets the pretraining
text. Freezing keeps the embedding and the first k blocks as they were pretrained (they are left out of the trainable
variables, so a train step leaves them bit-identical) and trains the rest. LoRA (low-rank adaptation) freezes every
pretrained weight and learns, for a kernel W [d_in, d_out], a low-rank update: the layer reads

    W' = W + (alpha / r) A B,    A [d_in, r] random,  B [r, d_out] zero at the start,

so y = x W' = x W + (alpha / r) x A B, and at the start W' = W exactly: the adapted model is the pretrained one.
Only A and B train: r (d_in + d_out) numbers instead of d_in d_out. `LoRA.merge` folds the update into W for export.

The attention layers of parts 4 and 6 read their kernels through the given `adapters.AdaptableKernel`, which returns
`adapter(W)` when a `LoRA` adapter is attached (`adapters.add_lora`); the part-4 and part-6 code is unchanged. A kernel
with several axes (the query kernel [d_model, H, hd], the output kernel [H, hd, d_model]) is the matrix
[d_in, d_out] of its first `input_axes` axes by the others (d_in = d_model, d_out = H hd for the query kernel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf


def _check_rank(rank: int) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    return rank


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0 or math.isinf(alpha):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    return float(alpha)


def freeze(model: keras.Model, num_blocks: int) -> None:
    """Make the embedding and the first `num_blocks` blocks of a transformer or modern model non-trainable.

    The embedding is `model.token_embedding` (tied to the output layer in part 4) and, when the model has one, the
    learned `model.position_embedding`; the blocks are `model.blocks[:num_blocks]`. Everything else (later blocks,
    final norm, output bias or output layer) stays trainable, so `model.trainable_variables` no longer holds the
    frozen weights and a train step (which differentiates and updates exactly those) leaves them bit-identical.

    Raises:
        ValueError: num_blocks not an int in [0, len(model.blocks)].
    """
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or not 0 <= num_blocks <= len(model.blocks):
        raise ValueError(f"num_blocks must be an int in [0, {len(model.blocks)}] (the model's blocks), "
                         f"got {num_blocks!r}")
    raise NotImplementedError(
        "TODO(part 8): Set trainable = False on the embedding(s) and on the first num_blocks blocks."
    )


def trainable_parameters(model: keras.Model) -> int:
    """The number of trainable numbers of a built model: the sum of the sizes of `model.trainable_variables`."""
    raise NotImplementedError("TODO(part 8): Add up the number of entries of every trainable variable.")


class LoRA(keras.layers.Layer):
    """The low-rank adapter of one pretrained kernel W: called on W, it returns W' = W + (alpha / r) A B.

    Weights: `lora_a` A [d_in, r], drawn from N(0, 1 / d_in) (so x A has about the scale of x), and `lora_b`
    B [r, d_out], zeros, where d_in is the product of W's first `input_axes` dimensions and d_out that of the others.
    """

    def __init__(self, rank: int, alpha: float, input_axes: int = 1, **kwargs):
        """An adapter of rank r = `rank` and scale alpha / r (alpha = `alpha`) for a kernel whose first `input_axes`
        axes are its inputs (1 for a Dense kernel [d_in, d_out]); ValueError for rank < 1 or alpha <= 0."""
        super().__init__(**kwargs)
        self.rank = _check_rank(rank)
        self.alpha = _check_alpha(alpha)
        if isinstance(input_axes, bool) or not isinstance(input_axes, int) or input_axes < 1:
            raise ValueError(f"input_axes must be a positive int, got {input_axes!r}")
        self.input_axes = input_axes

    def build(self, kernel_shape: Sequence[int]) -> None:
        """Create A [d_in, r] and B [r, d_out] for a kernel of shape `kernel_shape`.

        Raises:
            ValueError: a kernel without output axes, or a rank above min(d_in, d_out) (a rank that large is not a
                low-rank update: W itself has no more than min(d_in, d_out) independent directions).
        """
        if len(kernel_shape) <= self.input_axes:
            raise ValueError(f"the kernel of shape {tuple(kernel_shape)} has no axes after its {self.input_axes} "
                             "input axes")
        d_in, d_out = math.prod(kernel_shape[: self.input_axes]), math.prod(kernel_shape[self.input_axes :])
        if self.rank > min(d_in, d_out):
            raise ValueError(f"rank must be <= min(d_in, d_out) = {min(d_in, d_out)} for a kernel of shape "
                             f"{tuple(kernel_shape)}, got {self.rank}")
        raise NotImplementedError("TODO(part 8): Create lora_a [d_in, r] ~ N(0, 1/d_in) and lora_b [r, d_out] zeros.")

    def call(self, kernel: tf.Tensor) -> tf.Tensor:
        """W' = W + (alpha / r) A B for the kernel W (float32, shape `kernel_shape` of build): A B [d_in, d_out]
        reshaped to W's shape."""
        raise NotImplementedError("TODO(part 8): Add (alpha / r) A B, reshaped to the kernel's shape, to the kernel.")

    def merge(self, kernel: keras.Variable) -> None:
        """Fold the update into the pretrained kernel: W <- W + (alpha / r) A B, then B <- 0.

        Afterwards the adapter adds nothing, and the kernel it returns, W' = W, is the one it returned before the
        merge (the same float32 sum), so the model's outputs do not change; W alone then serves the model, without
        the adapter (export).
        """
        raise NotImplementedError("TODO(part 8): Assign W + (alpha / r) A B to the kernel, then zeros to B.")

    def get_config(self) -> dict:
        """The constructor arguments, so that `from_config(layer.get_config())` rebuilds the adapter."""
        return {**super().get_config(), "rank": self.rank, "alpha": self.alpha, "input_axes": self.input_axes}


def train_only_adapters(model: keras.Model, adapters: Sequence[LoRA]) -> None:
    """Make every weight of the built `model` non-trainable except the adapters' A and B (`lora_a`, `lora_b`).

    The pretrained kernels, biases, norms and embeddings all freeze: afterwards `model.trainable_variables` is
    exactly the adapters' A and B (set each variable's `trainable`; the layers stay trainable, since a non-trainable
    layer hides the variables of its sublayers too, the adapters' among them).
    """
    raise NotImplementedError("TODO(part 8): Mark every model weight trainable iff it is one of the adapters' weights.")
