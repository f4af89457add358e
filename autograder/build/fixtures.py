"""Hidden inputs and expected values of the samplers' tests, built per part (the last part not yet declared by its
tests through `ctx.hidden` / `ctx.expected`; the other parts' values are recorded by `autograder.build.record`).

`build_fixtures(seed)` returns {"samplers/<thing>": np.ndarray | JSON value}. Expected values come from the numpy
definitions in `autograder.judge.hidden.oracles` and are cross-checked against the reference solution `assignment`: a
disagreement stops the build (FixtureError). The part draws from its own random stream derived from (seed, part).
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from autograder.judge.hidden import oracles
from autograder.judge.hidden.samplers import ALPHA, MIN_EXPECTED, NUM_DRAWS

Fixtures = dict[str, Any]


class FixtureError(RuntimeError):
    """The reference solution disagrees with an oracle, or no valid hidden input was found."""


def _rng(seed: int, part: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(part.encode())])


# ---------------------------------------------------------------------------------------------------- samplers
def _greedy_logits(rng: np.random.Generator, rows: int, vocab: int) -> np.ndarray:
    logits = rng.normal(0.0, 2.0, (rows, vocab)).astype(np.float32)
    for r in range(rows // 2):
        top = int(np.argmax(logits[r]))
        other = int(rng.choice([j for j in range(vocab) if j != top]))
        logits[r, other] = logits[r, top]
    return logits


def _grid_logits(rng: np.random.Generator, rows: int, vocab: int) -> np.ndarray:
    """Logits on a 0.5 grid, so that ties are frequent."""
    return (rng.integers(-4, 7, (rows, vocab)) * 0.5).astype(np.float32)


def _mid_gap_p(logits: np.ndarray, rng: np.random.Generator, min_gap: float) -> float | None:
    """A p half-way between two consecutive levels of 'mass strictly above', at least one token past the top."""
    levels = np.unique(oracles.mass_strictly_above(logits))
    gaps = [(lo, hi) for lo, hi in zip(levels[:-1], levels[1:], strict=False) if hi - lo >= 2 * min_gap]
    gaps = [(lo, hi) for lo, hi in gaps if lo > 0] or gaps
    if not gaps:
        return None
    lo, hi = gaps[int(rng.integers(len(gaps)))]
    return float((lo + hi) / 2)


def _margin(logits: np.ndarray, p: float) -> float:
    return float(np.min(np.abs(oracles.mass_strictly_above(logits) - p)))


def _draw_design(rng: np.random.Generator) -> tuple[np.ndarray, dict, dict]:
    """Logits [V] and settings for the goodness-of-fit tests such that every classic bug is caught."""
    vocab = 10
    for _ in range(2000):
        logits = rng.normal(0.0, 1.3, vocab).astype(np.float32)
        settings = {
            "low_temperature": {"temperature": float(rng.uniform(0.45, 0.7)), "top_k": None, "top_p": None},
            "high_temperature": {"temperature": float(rng.uniform(1.6, 2.5)), "top_k": None, "top_p": None},
            "top_k": {"temperature": float(rng.uniform(0.6, 0.8)), "top_k": int(rng.integers(3, 6)), "top_p": None},
        }
        p = _mid_gap_p(logits.astype(np.float64), rng, 0.02)
        t = float(rng.uniform(0.5, 0.7))
        p_t = _mid_gap_p(logits.astype(np.float64) / t, rng, 0.02)
        if p is None or p_t is None:
            continue
        settings["top_p"] = {"temperature": 1.0, "top_k": None, "top_p": p}
        settings["temperature_top_p"] = {"temperature": t, "top_k": None, "top_p": p_t}
        probs, ok = {}, oracles.softmax(logits).max() < 0.6
        for name, s in settings.items():
            probs[name] = oracles.sampling_distribution(logits, s["temperature"], s["top_k"], s["top_p"])
            mutants = oracles.mutant_distributions(logits, s["temperature"], s["top_k"], s["top_p"])
            ok &= (probs[name] > 0).sum() >= 3 and len(mutants) >= 2
            miss = [oracles.miss_probability(probs[name], q, NUM_DRAWS, ALPHA, MIN_EXPECTED) for q in mutants.values()]
            ok &= max(miss, default=1.0) < 1e-9
        if ok:
            for s in settings.values():
                s["seed"] = int(rng.integers(0, 2**31 - 1))
            return logits, settings, probs
    raise FixtureError("no sampler design with enough power found")


def _samplers(rng: np.random.Generator) -> Fixtures:
    fx: Fixtures = {}
    greedy = _greedy_logits(rng, 8, 13)
    fx["samplers/greedy_logits"] = greedy
    fx["samplers/greedy_expected"] = np.argmax(greedy, axis=-1).astype(np.int64)

    fx["samplers/temperature_logits"] = rng.normal(0.0, 2.0, (4, 9)).astype(np.float32)
    fx["samplers/temperature_values"] = [float(rng.uniform(0.3, 0.8)), float(rng.uniform(0.8, 1.2)),
                                         float(rng.uniform(1.5, 2.5)), float(rng.uniform(3.0, 5.0))]

    vocab = 12
    top_k = _grid_logits(rng, 10, vocab)
    ks = [1, vocab, vocab + 3] + [int(k) for k in rng.integers(2, vocab, 7)]
    for r in range(3, 6):  # force a tie exactly at the k-th logit
        order = np.argsort(-top_k[r], kind="stable")
        top_k[r, order[ks[r]]] = top_k[r, order[ks[r] - 1]]
    fx["samplers/top_k_logits"] = top_k
    fx["samplers/top_k_values"] = ks
    fx["samplers/top_k_kept"] = np.stack([oracles.top_k_kept(row, k) for row, k in zip(top_k, ks, strict=False)])
    fx["samplers/batch_k"] = 4
    fx["samplers/batch_k_kept"] = oracles.top_k_kept(top_k, 4)

    rows, ps = [], []
    while len(rows) < 10:
        row = _grid_logits(rng, 1, vocab)[0]
        p = 1.0 if not rows else _mid_gap_p(row.astype(np.float64), rng, 2e-3)
        if p is not None:
            rows.append(row)
            ps.append(p)
    top_p = np.stack(rows)
    fx["samplers/top_p_logits"] = top_p
    fx["samplers/top_p_values"] = ps
    fx["samplers/top_p_kept"] = np.stack([oracles.top_p_kept(row, p) for row, p in zip(top_p, ps, strict=False)])
    batch_p = max(np.linspace(0.3, 0.9, 61), key=lambda q: min(_margin(row, q) for row in top_p))
    if min(_margin(row, batch_p) for row in top_p) < 1e-3:
        raise FixtureError("no batch p with a safe margin")
    fx["samplers/batch_p"] = float(batch_p)
    fx["samplers/batch_p_kept"] = oracles.top_p_kept(top_p, batch_p)

    logits, settings, probs = _draw_design(rng)
    fx["samplers/draw_logits"] = logits
    fx["samplers/draw_settings"] = settings
    for name, p in probs.items():
        fx[f"samplers/draw_probs_{name}"] = p

    shift = int(rng.integers(1, 11))
    seed = int(rng.integers(0, 2**31 - 1))
    prompt_1d = rng.integers(0, 11, 3).tolist()
    prompt_2d = rng.integers(0, 11, (2, 4)).tolist()
    fx["samplers/generate_cases"] = [
        {"prompt": prompt_1d, "n": 6, "vocab_size": 11, "shift": shift, "gap": 30.0, "temperature": 0.0, "seed": seed},
        {"prompt": prompt_2d, "n": 5, "vocab_size": 11, "shift": shift, "gap": 30.0, "temperature": 1.0, "seed": seed},
        {"prompt": prompt_1d, "n": 0, "vocab_size": 11, "shift": shift, "gap": 30.0, "temperature": 1.0, "seed": seed},
        # gap 0: uniform logits, so only the per-step seeds [seed, s] make the 40 new tokens differ.
        {"prompt": prompt_2d, "n": 40, "vocab_size": 11, "shift": shift, "gap": 0.0, "temperature": 1.0, "seed": seed},
    ]
    # A model with a context_length: the cache fills and restarts; a prompt longer than the context is cut.
    context = int(rng.integers(5, 8))
    fx["samplers/generate_restart_cases"] = [
        {"prompt": prompt_2d, "n": 3 * context, "vocab_size": 11, "shift": shift, "gap": 30.0, "temperature": 0.0,
         "seed": seed, "context_length": context},
        {"prompt": rng.integers(0, 11, context + 2).tolist(), "n": context + 3, "vocab_size": 11, "shift": shift,
         "gap": 30.0, "temperature": 1.0, "seed": seed, "context_length": context},
    ]
    _check_samplers_reference(fx)
    return fx


def _check_samplers_reference(fx: Fixtures) -> None:
    import tensorflow as tf

    from assignment import samplers

    def kept(out: Any) -> np.ndarray:
        return np.isfinite(np.asarray(out))

    for row, k, expected in zip(fx["samplers/top_k_logits"], fx["samplers/top_k_values"], fx["samplers/top_k_kept"],
                                strict=True):
        if not np.array_equal(kept(samplers.top_k_filter(tf.constant(row[None]), k))[0], expected):
            raise FixtureError("reference top_k_filter disagrees with the oracle")
    for row, p, expected in zip(fx["samplers/top_p_logits"], fx["samplers/top_p_values"], fx["samplers/top_p_kept"],
                                strict=True):
        if not np.array_equal(kept(samplers.top_p_filter(tf.constant(row[None]), p))[0], expected):
            raise FixtureError("reference top_p_filter disagrees with the oracle")
    greedy = np.asarray(samplers.greedy(tf.constant(fx["samplers/greedy_logits"])))
    if not np.array_equal(greedy, fx["samplers/greedy_expected"]):
        raise FixtureError("reference greedy disagrees with np.argmax")


# ---------------------------------------------------------------------------------------------------- assembly
BUILDERS: dict[str, Callable[[np.random.Generator], Fixtures]] = {
    "samplers": _samplers,
}


def build_fixtures(seed: int, parts: Sequence[str] | None = None) -> Fixtures:
    """Hidden inputs and expected values for every part (or only `parts`), deterministic in `seed`.

    Imports TensorFlow, Keras and the reference package `assignment` (build time only).
    """
    fixtures: Fixtures = {}
    for part in BUILDERS if parts is None else parts:
        fixtures.update(BUILDERS[part](_rng(seed, part)))
    return fixtures
