"""Registry of probes: named functions the judge can ask the worker to run on the submission.

A probe takes the submission accessor `sub` (`sub.module("rnn")` imports the submission's rnn.py) and keyword
arguments of plain data (None, bool, int, float, str, lists, dicts with string keys, numpy arrays), and returns plain
data of the same kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PROBES: dict[str, Callable[..., Any]] = {}


def probe(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the probe `name` ("<part>.<what>")."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in PROBES:
            raise ValueError(f"a probe named {name!r} is already registered")
        PROBES[name] = fn
        return fn

    return register
