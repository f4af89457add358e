"""Helpers shared by the probes (worker side): tensor conversion, weight assignment by name, error capture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def to_numpy(value: Any) -> np.ndarray:
    """Convert a tensor, variable or array-like to a numpy array."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value)


def weight_name(variable: Any) -> str:
    """The last component of a Keras variable's name ("rnn_cell/kernel" -> "kernel")."""
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0]


def assign_weights(layer: Any, weights: dict[str, np.ndarray], what: str) -> None:
    """Assign `weights` to the variables of `layer` that carry these names (the names prescribed by the handout).

    Raises ValueError naming the missing weight or the wrong shape, which the student sees.
    """
    own = {}
    for variable in layer.weights:
        own.setdefault(weight_name(variable), variable)
    for name, value in weights.items():
        variable = own.get(name)
        if variable is None:
            raise ValueError(
                f"{what} has no weight named '{name}' (found {sorted(own)}); create it in build() with "
                f"add_weight(name='{name}', ...) as the handout prescribes."
            )
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(f"{what}.{name} has shape {list(variable.shape)}, expected {list(value.shape)}.")
        variable.assign(value)


def error_name(fn: Callable[[], Any]) -> str | None:
    """Run `fn` and return the name of the exception type it raised, or None if it returned normally."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the judge decides whether this type is the expected one
        return type(exc).__name__
    return None


def seed_everything(seed: int) -> None:
    """Seed Keras, TensorFlow, numpy and Python so that model initialisation is reproducible."""
    import keras

    keras.utils.set_random_seed(int(seed))
