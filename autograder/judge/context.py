"""Hidden values of a test: drawn and computed when the fixtures are built, replayed when a submission is graded.

A hidden test declares each hidden input and expected value next to the check that uses it:

    cases = ctx.hidden("cases", lambda: draw_cases(ctx.rng))             # inputs the student never sees
    merges = ctx.expected("merges", lambda: oracles.bpe_train_naive(...))  # what a correct solution returns

While the fixtures are built (`recording`), `make` runs, its value is stored under "<test id>/<key>" and the test then
sees the value exactly as grading will load it (arrays keep their dtype; everything else goes through JSON). While a
submission is graded, the stored value is returned and `make` never runs, so it may import TensorFlow, Keras or the
reference solution: the judge does not. `ctx.rng` (a generator seeded by the fixture seed, the test id and the draw
attempt) exists only while recording; a test's values are drawn again, with the next attempt, when a correct solution
fails them (`autograder.recording.record`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np


class MissingHiddenValue(Exception):
    """A test asked for a hidden value the fixtures do not hold (they were built by another version: rebuild)."""


def storable(value: Any) -> Any:
    """`value` as grading will load it: an array of bool/int/float (copied), or a JSON round trip of the rest."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"hidden arrays must be bool, integer or float, not {value.dtype}")
        return value.copy()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a hidden value must be an array or JSON data (store arrays under their own key): "
                        f"{exc}") from None


def rng_seed(seed: int, test_id: str, attempt: int = 0) -> list[int]:
    """The seed sequence of a test's generator: (fixture seed, test id, attempt); the first draw omits the attempt, so
    that it is the same as before redraws existed."""
    return [int(seed), zlib.crc32(test_id.encode())] + ([int(attempt)] if attempt else [])


class HiddenValues:
    """The part of a test's context that holds its hidden inputs and expected values (see the module docstring)."""

    fixtures: dict[str, Any]
    seed: int
    test_id: str = ""
    attempt: int = 0
    recording: bool = False
    _rng: np.random.Generator | None = None

    def start_test(self, test_id: str, attempt: int = 0) -> None:
        """Point the context at the hidden values of test `test_id`, drawn (while recording) by draw `attempt`."""
        self.test_id = test_id
        self.attempt = attempt
        self._rng = None

    def hidden(self, key: str, make: Callable[[], Any]) -> Any:
        """A hidden input of this test: `make()` while recording, the stored value while grading."""
        return self._value(key, make)

    def expected(self, key: str, oracle: Callable[[], Any]) -> Any:
        """An expected value of this test: `oracle()` while recording, the stored value while grading."""
        return self._value(key, oracle)

    @property
    def rng(self) -> np.random.Generator:
        """The test's random generator for drawing hidden inputs (only inside `make`, while recording)."""
        if not self.recording:
            raise RuntimeError("ctx.rng draws hidden inputs: use it only inside the make functions of ctx.hidden")
        if self._rng is None:
            self._rng = np.random.default_rng(rng_seed(self.seed, self.test_id, self.attempt))
        return self._rng

    def _value(self, key: str, make: Callable[[], Any]) -> Any:
        name = f"{self.test_id}/{key}"
        if name in self.fixtures:
            return self.fixtures[name]
        if not self.recording:
            raise MissingHiddenValue(f"the fixtures hold no hidden value {name!r}: rebuild them")
        value = storable(make())
        self.fixtures[name] = value
        return value

