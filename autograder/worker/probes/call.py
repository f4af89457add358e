"""The generic probe: call one function of the submission with plain arguments and return its plain result."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import to_numpy
from .registry import probe


def to_plain(value: Any) -> Any:
    """A result as plain data: tensors and arrays become numpy arrays, tuples lists; TypeError for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) or hasattr(value, "numpy"):
        return to_numpy(value)
    raise TypeError(f"the function returned a {type(value).__name__}, which the autograder cannot compare")


@probe("call")
def call(sub, module: str, function: str, args: list | None = None, kwargs: dict | None = None,
         catch: bool = False) -> Any:
    """`module.function(*args, **kwargs)` of the submission ("BPETokenizer.train" reaches a class attribute).

    Returns {"value": result as plain data}; with `catch`, an exception is returned as {"error": its type name}
    instead of failing the test (for tests that expect an error).
    """
    target = sub.module(module)
    for name in function.split("."):
        target = getattr(target, name)
    try:
        result = target(*(args or []), **(kwargs or {}))
    except Exception as exc:
        if catch:
            return {"error": type(exc).__name__}
        raise
    return {"value": to_plain(result)}
