"""Kernels that a LoRA adapter can adapt (given): how the attention layers of parts 4 and 6 let fine-tuning's low-rank
adapters (finetune.py) change the kernels they read, without any change to the code that reads them.

`keras.layers.Dense` does the same for its own LoRA: it stores the kernel W as `_kernel` and exposes `kernel` as a
property that returns W + (alpha / r) A B once `enable_lora` has run. Here an attention layer declares each kernel
attribute as an `AdaptableKernel` (``query_kernel = AdaptableKernel()`` in the class body); `self.query_kernel` then
reads the stored variable W, or W + (alpha / r) A B, the result of the layer's adapter `query_kernel_lora` when
`add_lora` attached one. The stored variable keeps its attribute name, so checkpoints keep their keys.

`add_lora` attaches the adapters to a model that is not built yet (a built Keras layer accepts no new sublayers); each
adapter builds its A and B the first time its kernel is read, when the model is built.
"""

from __future__ import annotations

import keras

ADAPTED_KERNELS = {"query_kernel": 1, "key_kernel": 1, "value_kernel": 1, "output_kernel": 2}
"""The attention kernels that fine-tuning adapts -> their number of input axes (`LoRA`'s `input_axes`): the query,
key and value kernels [d_model, H, hd] map d_model inputs, the output kernel [H, hd, d_model] maps H * hd inputs."""

ADAPTER_SUFFIX = "_lora"
"""The adapter of kernel attribute NAME is the layer's attribute NAME + ADAPTER_SUFFIX."""


class AdaptableKernel:
    """A kernel attribute of a layer: the stored variable W, or its adapter's W + (alpha / r) A B when it has one."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, layer: keras.layers.Layer | None, owner: type | None = None):
        if layer is None:
            return self
        try:
            kernel = layer.__dict__[self.name]
        except KeyError:  # not built yet
            raise AttributeError(f"{type(layer).__name__} has no {self.name} before it is built") from None
        adapter = layer.__dict__.get(self.name + ADAPTER_SUFFIX)
        return kernel if adapter is None else adapter(kernel)

    def __set__(self, layer: keras.layers.Layer, value) -> None:
        layer.__dict__[self.name] = value


def attention_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The attention layer of every block of a transformer or modern model (`block.attention`), in block order."""
    return [block.attention for block in model.blocks]


def add_lora(model: keras.Model, rank: int, alpha: float) -> list:
    """Attach a `finetune.LoRA(rank, alpha)` adapter to every adapted kernel (ADAPTED_KERNELS) of every attention
    layer of `model`, which must not be built yet; returns the adapters (block by block, in ADAPTED_KERNELS order)."""
    from .finetune import LoRA

    if model.built:
        raise ValueError("add_lora needs a model that is not built yet (build it after attaching the adapters)")
    adapters = []
    for layer in attention_layers(model):
        for name, input_axes in ADAPTED_KERNELS.items():
            adapter = LoRA(rank, alpha, input_axes=input_axes, name=name + ADAPTER_SUFFIX)
            setattr(layer, name + ADAPTER_SUFFIX, adapter)
            adapters.append(adapter)
    return adapters


def adapted_kernels(model: keras.Model) -> list[tuple[object, keras.Variable]]:
    """(adapter, stored kernel W) of every adapted kernel of a built model with adapters, in `add_lora`'s order."""
    return [(layer.__dict__[name + ADAPTER_SUFFIX], layer.__dict__[name])
            for layer in attention_layers(model) for name in ADAPTED_KERNELS
            if name + ADAPTER_SUFFIX in layer.__dict__]
