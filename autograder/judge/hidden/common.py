"""Judge-side helpers shared by the hidden tests (numpy only; never scipy, TensorFlow or the submission).

Every message here describes what was expected in words, shapes and properties, never the hidden values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autograder.judge.hidden.oracles import merge_sparse_cells
from autograder.judge.registry import TestFailure


def as_array(
    value: Any, what: str, kind: str, shape: tuple[int | None, ...] | None = None, finite: bool = True
) -> np.ndarray:
    """Validate a value returned by the worker and return it as an ndarray.

    Args:
        value: anything the worker returned.
        what: human-readable description used in messages, e.g. "the logits returned by RNNLanguageModel".
        kind: allowed numpy dtype kinds, e.g. "f" (float), "iu" (integer), "b" (bool).
        shape: expected shape, None entries match any size; None skips the shape check.
        finite: reject NaN and infinite entries of float arrays.
    """
    if not isinstance(value, np.ndarray):
        raise TestFailure(f"{what}: expected an array, got {type(value).__name__}.")
    if value.dtype.kind not in kind:
        names = {"f": "floating point", "i": "integer", "u": "integer", "b": "boolean"}
        wanted = " or ".join(sorted({names.get(k, k) for k in kind}))
        raise TestFailure(f"{what}: expected a {wanted} array, got dtype {value.dtype}.")
    if shape is not None:
        ok = value.ndim == len(shape) and all(e is None or e == a for e, a in zip(shape, value.shape, strict=False))
        if not ok:
            wanted = "[" + ", ".join("?" if e is None else str(e) for e in shape) + "]"
            raise TestFailure(f"{what}: expected shape {wanted}, got {list(value.shape)}.")
    if finite and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise TestFailure(f"{what}: contains NaN or infinite values.")
    return value


def close(actual: np.ndarray, expected: np.ndarray, what: str, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Raise TestFailure unless `actual` equals `expected` within tolerance (same shape already checked)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise TestFailure(f"{what}: expected shape {list(expected.shape)}, got {list(actual.shape)}.")
    if not np.all(np.isfinite(actual)):
        raise TestFailure(f"{what}: contains NaN or infinite values.")
    err = np.abs(actual - expected)
    bad = err > atol + rtol * np.abs(expected)
    if bad.any():
        raise TestFailure(
            f"{what}: {int(bad.sum())} of {bad.size} entries differ from the expected values "
            f"(max abs error {err.max():.3g}, tolerance {atol:g} + {rtol:g}*|expected|)."
        )


def expect_dict(value: Any, keys: tuple[str, ...], what: str) -> dict:
    """Validate that the worker returned a dict with (at least) these keys."""
    if not isinstance(value, dict) or any(k not in value for k in keys):
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    return value


def expect_number(value: Any, what: str) -> float:
    """Validate a finite real number returned by the worker."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "fiu":
            value = value.item()
        else:
            raise TestFailure(f"{what}: expected a number, got {type(value).__name__}.")
    value = float(value)
    if not np.isfinite(value):
        raise TestFailure(f"{what}: expected a finite number, got {value}.")
    return value


def expect_error(reply: Any, error: str, what: str) -> None:
    """`reply` is the name of the exception type a probe caught (None when nothing was raised)."""
    if reply is None:
        raise TestFailure(f"{what}: expected a {error}, but no exception was raised.")
    if reply != error:
        raise TestFailure(f"{what}: expected a {error}, got {reply}.")


def expect_errors(reply: Any, what: str) -> None:
    """`reply` maps each case to the exception type name it raised (None when nothing was raised).

    Cases named "valid: ..." are correct calls that must not raise; every other case must raise ValueError. At least
    one valid case is required, so that argument checks (given code) only count together with a working part.
    """
    if not isinstance(reply, dict) or not all(isinstance(k, str) for k in reply):
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    valid = [case for case in reply if case.startswith("valid: ")]
    if not valid:
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    for case in sorted(valid):
        if reply[case] is not None:
            raise TestFailure(f"{case[len('valid: '):]}: a correct call must not raise, got {reply[case]}.")
    for case, error in sorted(reply.items()):
        if case not in valid:
            expect_error(error, "ValueError", case)


def goodness_of_fit(counts: np.ndarray, probs: np.ndarray, min_expected: float = 50.0) -> float:
    """Pearson chi-square p-value of token counts against an analytic distribution.

    Args:
        counts: int [V], how often each token was drawn.
        probs: float [V], the exact distribution (sums to 1). Tokens with probability 0 must never be drawn:
            a single such draw raises TestFailure at once (no statistic is needed for an impossible event).
        min_expected: sparse cells are pooled until each has at least this expected count, which keeps the
            chi-square approximation accurate far into the tail where the tests set alpha.
    Returns:
        The p-value (1.0 when fewer than two pooled cells remain, i.e. the distribution is a point mass that the
        counts respect).
    """
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    impossible = probs <= 0
    if counts[impossible].sum() > 0:
        raise TestFailure(
            f"drew {int(counts[impossible].sum())} of {int(counts.sum())} tokens that should have probability "
            f"zero (tokens outside the kept set were sampled)."
        )
    n = counts.sum()
    observed, expected = merge_sparse_cells(counts[~impossible], n * probs[~impossible], min_expected)
    if observed.size < 2:
        return 1.0
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return chi_square_survival(observed.size - 1, statistic)


def chi_square_survival(df: int, x: float) -> float:
    """P(X >= x) for X chi-square with `df` (a positive int) degrees of freedom: the regularized upper incomplete gamma
    function Q(df / 2, x / 2) in closed form, so that the judge needs no scipy (about 26 MB of its memory):

        even df = 2m:      Q = sum_{i < m} e^{-x/2} (x/2)^i / i!
        odd df = 2m + 1:   Q = erfc(sqrt(x/2)) + sum_{i < m} e^{-x/2} (x/2)^{i + 1/2} / Gamma(i + 3/2)

    Each term is taken through its logarithm, so that neither e^{-x/2} nor (x/2)^i over- or underflows on its own;
    the terms are positive, so the relative error stays near the float64 rounding far into the tail.
    """
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2:
        first, offset = math.erfc(math.sqrt(half)), 0.5
    else:
        first, offset = 0.0, 0.0
    terms = [math.exp((i + offset) * math.log(half) - math.lgamma(i + offset + 1) - half) for i in range(df // 2)]
    return min(1.0, first + math.fsum(terms))
