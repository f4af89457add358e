"""Hidden tests of part 3 (samplers.py).

The goodness-of-fit tests draw NUM_DRAWS tokens from one set of logits (tiled to [NUM_DRAWS, V] and passed to the
student's `sample` in a single call with one seed) and compare the counts with the exact distribution by a Pearson
chi-square test at level ALPHA, after pooling cells with expected count below MIN_EXPECTED. Each test makes at most
two comparisons, so a correct sampler fails a test with probability below 2 * ALPHA = 2e-7 < 1e-6. Each of these
tests draws its own hidden logits and settings (`_draw_design`), accepted only when every classic bug (temperature
multiplied instead of divided, softmax before temperature, k + 1 tokens kept, crossing token dropped, top-p before
temperature) is detected with probability above 1 - 1e-9 at these sizes; the kit tests recompute that power.

Hidden inputs are drawn here and expected values come from the numpy definitions in `oracles.py`; both are recorded
when the fixtures are built.
"""

from __future__ import annotations

import numpy as np

from autograder.judge.hidden import oracles
from autograder.judge.hidden.common import as_array, close, expect_dict, expect_error, expect_errors, goodness_of_fit
from autograder.judge.registry import TestFailure, hidden_test

ALPHA = 1e-7
NUM_DRAWS = 20_000
MIN_EXPECTED = 50.0
SEED_DRAWS = 200

PART = "samplers"
BATCH_K = 4
"""The k of the whole-batch top_k_filter call."""
GREEDY_ROWS, GREEDY_VOCAB = 8, 13
FILTER_ROWS, FILTER_VOCAB = 10, 12
DESIGN_VOCAB = 10
GENERATE_VOCAB = 11


# ---------------------------------------------------------------------------------------------------- hidden inputs
def _greedy_logits(rng: np.random.Generator, rows: int, vocab: int) -> np.ndarray:
    """N(0, 2^2) logits [rows, vocab]; in the first half of the rows the maximum is tied with another token."""
    logits = rng.normal(0.0, 2.0, (rows, vocab)).astype(np.float32)
    for r in range(rows // 2):
        top = int(np.argmax(logits[r]))
        other = int(rng.choice([j for j in range(vocab) if j != top]))
        logits[r, other] = logits[r, top]
    return logits


def _grid_logits(rng: np.random.Generator, rows: int, vocab: int) -> np.ndarray:
    """Logits on a 0.5 grid, so that ties are frequent."""
    return (rng.integers(-4, 7, (rows, vocab)) * 0.5).astype(np.float32)


def _top_k_values(rng: np.random.Generator) -> list[int]:
    """One k per row of the top-k logits: 1, V, V + 3, then random in [2, V)."""
    return [1, FILTER_VOCAB, FILTER_VOCAB + 3] + [int(k) for k in rng.integers(2, FILTER_VOCAB, FILTER_ROWS - 3)]


def _top_k_logits(rng: np.random.Generator, ks: list[int]) -> np.ndarray:
    """Grid logits [len(ks), FILTER_VOCAB] with a tie exactly at the k-th logit in rows 3 to 5."""
    logits = _grid_logits(rng, len(ks), FILTER_VOCAB)
    for r in range(3, 6):
        order = np.argsort(-logits[r], kind="stable")
        logits[r, order[ks[r]]] = logits[r, order[ks[r] - 1]]
    return logits


def _gaps(logits: np.ndarray, min_gap: float) -> list[tuple[float, float]]:
    """Consecutive levels of 'mass strictly above' at least 2 * min_gap apart, past the top token when possible."""
    levels = np.unique(oracles.mass_strictly_above(logits))
    gaps = [(lo, hi) for lo, hi in zip(levels[:-1], levels[1:], strict=False) if hi - lo >= 2 * min_gap]
    return [(lo, hi) for lo, hi in gaps if lo > 0] or gaps


def _mid_gap_p(logits: np.ndarray, rng: np.random.Generator, min_gap: float) -> float | None:
    """A p half-way between two consecutive levels of 'mass strictly above', at least one token past the top."""
    gaps = _gaps(logits, min_gap)
    if not gaps:
        return None
    lo, hi = gaps[int(rng.integers(len(gaps)))]
    return float((lo + hi) / 2)


TOP_P_MIN_GAP = 2e-3
"""Half the smallest distance between the mass levels around each hidden p of the top-p rows."""


def _top_p_logits(rng: np.random.Generator) -> np.ndarray:
    """Grid logits [FILTER_ROWS, FILTER_VOCAB]; every row after the first has a gap for its p (`_gaps`)."""
    rows: list[np.ndarray] = []
    while len(rows) < FILTER_ROWS:
        row = _grid_logits(rng, 1, FILTER_VOCAB)[0]
        if not rows or _gaps(row.astype(np.float64), TOP_P_MIN_GAP):
            rows.append(row)
    return np.stack(rows)


def _top_p_values(rng: np.random.Generator, logits: np.ndarray) -> list[float]:
    """One p per row of the top-p logits: 1, then half-way between two mass levels of the row."""
    return [1.0] + [float(_mid_gap_p(row.astype(np.float64), rng, TOP_P_MIN_GAP)) for row in logits[1:]]


def _margin(logits: np.ndarray, p: float) -> float:
    return float(np.min(np.abs(oracles.mass_strictly_above(logits) - p)))


def _batch_p(logits: np.ndarray) -> float:
    """The p in 0.3, 0.31, ..., 0.9 farthest from every row's mass levels (at least 1e-3 away)."""
    batch_p = max(np.linspace(0.3, 0.9, 61), key=lambda q: min(_margin(row, q) for row in logits))
    if min(_margin(row, batch_p) for row in logits) < 1e-3:
        raise RuntimeError("no batch p with a safe margin: rebuild with another seed")
    return float(batch_p)


def _draw_design(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Logits [DESIGN_VOCAB] and settings (temperature, top_k, top_p, seed) by name for the goodness-of-fit tests,
    such that every classic bug is caught."""
    for _ in range(2000):
        logits = rng.normal(0.0, 1.3, DESIGN_VOCAB).astype(np.float32)
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
        ok = oracles.softmax(logits).max() < 0.6
        for s in settings.values():
            probs = oracles.sampling_distribution(logits, s["temperature"], s["top_k"], s["top_p"])
            mutants = oracles.mutant_distributions(logits, s["temperature"], s["top_k"], s["top_p"])
            ok &= (probs > 0).sum() >= 3 and len(mutants) >= 2
            miss = [oracles.miss_probability(probs, q, NUM_DRAWS, ALPHA, MIN_EXPECTED) for q in mutants.values()]
            ok &= max(miss, default=1.0) < 1e-9
        if ok:
            for s in settings.values():
                s["seed"] = int(rng.integers(0, 2**31 - 1))
            return logits, settings
    raise RuntimeError("no sampler design with enough power found: rebuild with another seed")


def _design(ctx, configs: tuple[str, ...]) -> tuple[np.ndarray, dict]:
    """The test's hidden design: the logits and the settings `configs` of one design drawn by `_draw_design`."""
    drawn: list = []

    def design() -> tuple[np.ndarray, dict]:
        if not drawn:
            drawn.extend(_draw_design(ctx.rng))
        return drawn[0], drawn[1]

    logits = ctx.hidden("logits", lambda: design()[0])
    settings = ctx.hidden("settings", lambda: {name: design()[1][name] for name in configs})
    return logits, settings


# ---------------------------------------------------------------------------------------------------- tests
def _ids(value, n: int, vocab_size: int, what: str) -> np.ndarray:
    ids = as_array(value, what, "iu", (n,))
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise TestFailure(f"{what}: token ids must lie in [0, {vocab_size}).")
    return ids.astype(np.int64)


def _kept(filtered: np.ndarray, logits: np.ndarray, what: str) -> np.ndarray:
    """Kept mask of a filtered [B, V] array; kept entries must be unchanged, dropped ones -inf."""
    filtered = as_array(filtered, what, "f", logits.shape, finite=False)
    if np.isnan(filtered).any():
        raise TestFailure(f"{what}: contains NaN.")
    kept = np.isfinite(filtered)
    dropped_ok = np.all(np.isneginf(filtered[~kept]))
    if not dropped_ok:
        raise TestFailure(f"{what}: tokens outside the kept set must be set to -inf.")
    if not np.allclose(filtered[kept], logits[kept], rtol=1e-6, atol=1e-6):
        raise TestFailure(f"{what}: kept tokens must keep their logits unchanged.")
    return kept


def _compare_kept(kept: np.ndarray, expected: np.ndarray, what: str, rule: str) -> None:
    wrong = np.flatnonzero((kept != expected).any(axis=1))
    if wrong.size:
        r = int(wrong[0])
        extra = int((kept[r] & ~expected[r]).sum())
        missing = int((expected[r] & ~kept[r]).sum())
        raise TestFailure(
            f"{what}: wrong kept set in {wrong.size} of {len(kept)} hidden rows (first: row {r}, {extra} token(s) "
            f"kept that should be dropped, {missing} dropped that should be kept). Rule: {rule}"
        )


TOP_K_RULE = "keep every token whose logit is >= the k-th largest logit of its row (ties at the boundary all kept)."
TOP_P_RULE = (
    "keep token i iff the total probability of the tokens strictly more probable than i is < p (so the token that "
    "crosses p is kept and ties are kept or dropped together; order and ties are decided on the logits)."
)


@hidden_test("greedy and sample(temperature=0) return the argmax (lowest index on ties)", PART, weight=1.0)
def test_greedy(ctx) -> None:
    logits = ctx.hidden("logits", lambda: _greedy_logits(ctx.rng, GREEDY_ROWS, GREEDY_VOCAB))
    expected = ctx.expected("expected", lambda: np.argmax(logits, axis=-1).astype(np.int64))
    reply = expect_dict(ctx.call("samplers.greedy", logits=logits), ("greedy", "sample_t0"), "greedy")
    for key, what in (("greedy", "greedy(logits)"), ("sample_t0", "sample(logits, temperature=0)")):
        ids = _ids(reply[key], len(logits), logits.shape[1], what)
        wrong = int((ids != expected).sum())
        if wrong:
            raise TestFailure(f"{what}: {wrong} of {len(ids)} hidden rows differ from the argmax (ties -> lowest "
                              "index).")


@hidden_test("apply_temperature divides the logits by the temperature", PART, weight=0.5)
def test_temperature_values(ctx) -> None:
    logits = ctx.hidden("logits", lambda: ctx.rng.normal(0.0, 2.0, (4, 9)).astype(np.float32))
    values = ctx.hidden("values", lambda: [float(ctx.rng.uniform(0.3, 0.8)), float(ctx.rng.uniform(0.8, 1.2)),
                                           float(ctx.rng.uniform(1.5, 2.5)), float(ctx.rng.uniform(3.0, 5.0))])
    reply = ctx.call("samplers.filter", kind="temperature", logits=logits, values=values)
    reply = expect_dict(reply, ("filtered",), "apply_temperature")
    out = as_array(reply["filtered"], "apply_temperature(logits, t)", "f", logits.shape)
    close(out, logits.astype(np.float64) / np.asarray(values)[:, None], "apply_temperature(logits, t)", 1e-6, 1e-5)


@hidden_test("top_k_filter keeps exactly the top-k set (ties at the k-th logit kept)", PART, weight=1.0)
def test_top_k_kept_set(ctx) -> None:
    ks = ctx.hidden("ks", lambda: _top_k_values(ctx.rng))
    logits = ctx.hidden("logits", lambda: _top_k_logits(ctx.rng, ks))
    expected = ctx.expected("kept", lambda: np.stack([oracles.top_k_kept(row, k)
                                                      for row, k in zip(logits, ks, strict=True)]))
    reply = ctx.call("samplers.filter", kind="top_k", logits=logits, values=ks)
    kept = _kept(expect_dict(reply, ("filtered",), "top_k_filter")["filtered"], logits, "top_k_filter(logits, k)")
    _compare_kept(kept, expected, "top_k_filter(logits, k)", TOP_K_RULE)
    expected = ctx.expected("batch_kept", lambda: oracles.top_k_kept(logits, BATCH_K))
    reply = ctx.call("samplers.filter_batch", kind="top_k", logits=logits, value=BATCH_K)
    kept = _kept(expect_dict(reply, ("filtered",), "top_k_filter")["filtered"], logits, "top_k_filter on a batch")
    _compare_kept(kept, expected, "top_k_filter on a [B, V] batch (rows independent)", TOP_K_RULE)


@hidden_test("top_p_filter keeps exactly the nucleus (crossing token kept, ties together)", PART, weight=1.0)
def test_top_p_kept_set(ctx) -> None:
    logits = ctx.hidden("logits", lambda: _top_p_logits(ctx.rng))
    ps = ctx.hidden("ps", lambda: _top_p_values(ctx.rng, logits))
    expected = ctx.expected("kept", lambda: np.stack([oracles.top_p_kept(row, p)
                                                      for row, p in zip(logits, ps, strict=True)]))
    reply = ctx.call("samplers.filter", kind="top_p", logits=logits, values=ps)
    kept = _kept(expect_dict(reply, ("filtered",), "top_p_filter")["filtered"], logits, "top_p_filter(logits, p)")
    _compare_kept(kept, expected, "top_p_filter(logits, p)", TOP_P_RULE)
    batch_p = ctx.hidden("batch_p", lambda: _batch_p(logits))
    expected = ctx.expected("batch_kept", lambda: oracles.top_p_kept(logits, batch_p))
    reply = ctx.call("samplers.filter_batch", kind="top_p", logits=logits, value=batch_p)
    kept = _kept(expect_dict(reply, ("filtered",), "top_p_filter")["filtered"], logits, "top_p_filter on a batch")
    _compare_kept(kept, expected, "top_p_filter on a [B, V] batch (rows independent)", TOP_P_RULE)


AT_ONE_ROWS = 6
AT_ONE_GAP = (25.0, 45.0)
"""How far below the row's largest logit the improbable tokens of the p = 1 rows lie."""


def _improbable_logits(rng: np.random.Generator) -> np.ndarray:
    """Rows [AT_ONE_ROWS, FILTER_VOCAB] of a few probable tokens (N(0, 1) logits: one in the first half of the rows,
    2 to 4 in the others) and improbable ones, AT_ONE_GAP below the largest logit, in random positions. With one
    probable token its float32 probability is exactly 1 (the others add up to less than 2e-10), so the mass above each
    improbable token is 1 in float32. The expected kept set is the handout's rule for p = 1 (every token), not the
    float64 oracle, whose sums round to 1 as well once the gap exceeds about 37."""
    rows = []
    for r in range(AT_ONE_ROWS):
        probable = rng.normal(0.0, 1.0, 1 if r < AT_ONE_ROWS // 2 else int(rng.integers(2, 5)))
        improbable = probable.max() - rng.uniform(*AT_ONE_GAP, FILTER_VOCAB - len(probable))
        rows.append(rng.permutation(np.concatenate([probable, improbable])))
    return np.stack(rows).astype(np.float32)


TOP_P_AT_ONE_RULE = ("p = 1 keeps every token: return the logits unchanged (in float32 the mass above a very "
                     "improbable token can round to exactly 1, so a literal mass < p test drops it).")


@hidden_test("top_p_filter with p = 1 keeps every token, however improbable", PART, weight=0.5)
def test_top_p_at_one(ctx) -> None:
    logits = ctx.hidden("logits", lambda: _improbable_logits(ctx.rng))
    what = "top_p_filter(logits, 1.0) on rows with very improbable tokens"
    reply = ctx.call("samplers.filter", kind="top_p", logits=logits, values=[1.0] * len(logits))
    kept = _kept(expect_dict(reply, ("filtered",), what)["filtered"], logits, what)
    _compare_kept(kept, np.ones_like(kept), what, TOP_P_AT_ONE_RULE)
    what = "top_p_filter(logits, 1.0) on a [B, V] batch with very improbable tokens"
    reply = ctx.call("samplers.filter_batch", kind="top_p", logits=logits, value=1.0)
    kept = _kept(expect_dict(reply, ("filtered",), what)["filtered"], logits, what)
    _compare_kept(kept, np.ones_like(kept), what, TOP_P_AT_ONE_RULE)


def _goodness_of_fit(ctx, logits: np.ndarray, settings: dict, config: str, description: str) -> None:
    """Draw NUM_DRAWS tokens with the hidden settings `config` and chi-square test them against the exact law."""
    setting = settings[config]
    probs = ctx.expected(f"probs/{config}", lambda: oracles.sampling_distribution(
        logits, setting["temperature"], setting["top_k"], setting["top_p"]))
    reply = ctx.call(
        "samplers.draw", logits=logits, num_samples=NUM_DRAWS, seed=setting["seed"],
        temperature=setting["temperature"], top_k=setting["top_k"], top_p=setting["top_p"],
    )
    what = f"sample(logits tiled to [{NUM_DRAWS}, V], {description})"
    ids = _ids(expect_dict(reply, ("ids",), what)["ids"], NUM_DRAWS, len(logits), what)
    counts = np.bincount(ids, minlength=len(logits))
    try:
        p_value = goodness_of_fit(counts, probs, MIN_EXPECTED)
    except TestFailure as exc:
        raise TestFailure(f"{what}: {exc}") from None
    if p_value < ALPHA:
        raise TestFailure(
            f"{what}: the sampled frequencies do not follow the expected distribution (chi-square p-value "
            f"{p_value:.2g} < alpha {ALPHA:g} over {NUM_DRAWS} draws)."
        )


@hidden_test("sample with temperature follows softmax(logits / temperature) (chi-square)", PART, weight=1.5)
def test_temperature_distribution(ctx) -> None:
    logits, settings = _design(ctx, ("low_temperature", "high_temperature"))
    _goodness_of_fit(ctx, logits, settings, "low_temperature",
                     "temperature < 1: expected softmax(logits / temperature)")
    _goodness_of_fit(ctx, logits, settings, "high_temperature",
                     "temperature > 1: expected softmax(logits / temperature)")


@hidden_test("sample with top_k follows the renormalised top-k distribution (chi-square)", PART, weight=1.5)
def test_top_k_distribution(ctx) -> None:
    logits, settings = _design(ctx, ("top_k",))
    _goodness_of_fit(ctx, logits, settings, "top_k", "temperature then top_k: expected softmax over the k kept tokens")


@hidden_test("sample with top_p follows the renormalised nucleus distribution (chi-square)", PART, weight=1.5)
def test_top_p_distribution(ctx) -> None:
    logits, settings = _design(ctx, ("top_p", "temperature_top_p"))
    _goodness_of_fit(ctx, logits, settings, "top_p",
                     "top_p: expected softmax over the nucleus, crossing token included")
    _goodness_of_fit(ctx, logits, settings, "temperature_top_p",
                     "temperature then top_p: nucleus of the tempered distribution")


@hidden_test("sample is reproducible: same seed gives the same tokens, different seeds differ", PART, weight=1.0)
def test_seed(ctx) -> None:
    logits, settings = _design(ctx, ("high_temperature",))
    seed = settings["high_temperature"]["seed"]
    what = f"sample(logits tiled to [{SEED_DRAWS}, V], seed=...)"
    runs = []
    for s in (seed, seed, seed + 1):
        reply = ctx.call("samplers.draw", logits=logits, num_samples=SEED_DRAWS, seed=s, temperature=1.0)
        runs.append(_ids(expect_dict(reply, ("ids",), what)["ids"], SEED_DRAWS, len(logits), what))
    if not np.array_equal(runs[0], runs[1]):
        raise TestFailure(f"{what}: two calls with the same seed returned different tokens (use the seed with "
                          "tf.random.stateless_categorical).")
    if np.array_equal(runs[0], runs[2]):
        raise TestFailure(f"{what}: two different seeds returned identical tokens (the seed argument is ignored).")


@hidden_test("samplers reject invalid temperature, k and p with ValueError", PART, weight=0.5)
def test_invalid_arguments(ctx) -> None:
    expect_errors(ctx.call("samplers.invalid_arguments"), "sampler argument checks")


def _generate_cases(rng: np.random.Generator) -> list[dict]:
    """generate() cases on a CountingModel with a hidden shift and seed: greedy, sampled from a [2, T0] prompt, zero
    new tokens, and 40 tokens from uniform logits (gap 0), where only the per-step seeds [seed, s] make them differ."""
    shift = int(rng.integers(1, GENERATE_VOCAB))
    seed = int(rng.integers(0, 2**31 - 1))
    prompt_1d = rng.integers(0, GENERATE_VOCAB, 3).tolist()
    prompt_2d = rng.integers(0, GENERATE_VOCAB, (2, 4)).tolist()
    model = {"vocab_size": GENERATE_VOCAB, "shift": shift, "seed": seed}
    return [
        {"prompt": prompt_1d, "n": 6, **model, "gap": 30.0, "temperature": 0.0},
        {"prompt": prompt_2d, "n": 5, **model, "gap": 30.0, "temperature": 1.0},
        {"prompt": prompt_1d, "n": 0, **model, "gap": 30.0, "temperature": 1.0},
        {"prompt": prompt_2d, "n": 40, **model, "gap": 0.0, "temperature": 1.0},
    ]


def _generate_restart_cases(rng: np.random.Generator) -> list[dict]:
    """generate() cases on a CountingModel with a hidden context_length C in [5, 8): the cache fills and restarts
    (3C new tokens), and a prompt longer than the context is cut (C + 2 prompt tokens)."""
    shift = int(rng.integers(1, GENERATE_VOCAB))
    seed = int(rng.integers(0, 2**31 - 1))
    prompt_2d = rng.integers(0, GENERATE_VOCAB, (2, 4)).tolist()
    context = int(rng.integers(5, 8))
    model = {"vocab_size": GENERATE_VOCAB, "shift": shift, "gap": 30.0, "seed": seed, "context_length": context}
    return [
        {"prompt": prompt_2d, "n": 3 * context, **model, "temperature": 0.0},
        {"prompt": rng.integers(0, GENERATE_VOCAB, context + 2).tolist(), "n": context + 3, **model,
         "temperature": 1.0},
    ]


def _new_tokens(ids, prompt: np.ndarray, n: int, what: str) -> np.ndarray:
    """The n new ids after the prompt, once `ids` is an int array [..., T0 + n] that starts with the prompt."""
    ids = as_array(ids, what, "iu", prompt.shape[:-1] + (prompt.shape[-1] + n,))
    if not np.array_equal(ids[..., : prompt.shape[-1]], prompt):
        raise TestFailure(f"{what}: the output must start with the prompt.")
    return ids[..., prompt.shape[-1]:]


def _check_generation(ids, prompt: np.ndarray, n: int, vocab_size: int, shift: int, what: str) -> None:
    expected = (prompt[..., -1:] + shift * np.arange(1, n + 1)) % vocab_size
    if not np.array_equal(_new_tokens(ids, prompt, n, what), expected):
        raise TestFailure(f"{what}: the new tokens are not the ones the model's step() logits make (near) certain.")


def _check_uniform_generation(ids, prompt: np.ndarray, n: int, vocab_size: int, what: str) -> None:
    """A model with uniform logits: the new tokens must vary within each row. A correct sampler draws n equal tokens
    in a row with probability V^-(n-1) (11^-39 here); drawing every token with the same seed always does."""
    new = _new_tokens(ids, prompt, n, what).reshape(-1, n)
    if new.min() < 0 or new.max() >= vocab_size:
        raise TestFailure(f"{what}: the new tokens must be ids in [0, vocab_size).")
    if any(len(set(row.tolist())) == 1 for row in new):
        raise TestFailure(f"{what}, uniform logits: every new token of a row was the same; draw step s with the "
                          "seed [seed, s], not the same seed at every step.")


def _check_calls(calls, prompt_len: int, n: int, what: str) -> None:
    calls = as_array(calls, what, "iu", (None, 2))
    if n == 0:
        return
    if len(calls) not in (n, n + 1) or calls[0, 0] != prompt_len or calls[0, 1] != 0:
        raise TestFailure(
            f"{what}: expected one model.step(prompt) call and then one step per new token ({n} or {n + 1} calls "
            f"in all), got {len(calls)} calls."
        )
    later = calls[1:]
    expected_positions = prompt_len + np.arange(len(later))
    if np.any(later[:, 0] != 1) or np.any(later[:, 1] != expected_positions):
        raise TestFailure(f"{what}: after the prompt, each step() call must pass one new token [B, 1] and the state "
                          "returned by the previous call.")


def _restart_calls(prompt_len: int, n: int, context_length: int) -> list[list[int]]:
    """The step calls (new tokens, cached positions) of the handout's rule: the prompt cut to its last C tokens, then
    one token at a time, and when the cache holds C positions a fresh start from the last max(C // 2, 1) tokens.
    Only the n - 1 tokens that are fed back count: feeding the last token too is allowed separately."""
    cached = min(prompt_len, context_length)
    calls = [[cached, 0]]
    for _ in range(n - 1):
        if cached >= context_length:
            cached = max(context_length // 2, 1)
            calls.append([cached, 0])
        else:
            calls.append([1, cached])
            cached += 1
    return calls


@hidden_test("generate restarts the cache from the last context_length // 2 tokens when it is full", PART, 1.5)
def test_generate_restart(ctx) -> None:
    for case in ctx.hidden("cases", lambda: _generate_restart_cases(ctx.rng)):
        prompt = np.asarray(case["prompt"], dtype=np.int64)
        c, n = case["context_length"], case["n"]
        what = f"generate(model with context_length={c}, prompt of shape {list(prompt.shape)}, max_new_tokens={n})"
        reply = expect_dict(ctx.call(
            "samplers.generate", prompt=prompt.astype(np.int32), max_new_tokens=n, vocab_size=case["vocab_size"],
            shift=case["shift"], gap=case["gap"], temperature=case["temperature"], seed=case["seed"],
            context_length=c,
        ), ("ids", "calls"), what)
        _check_generation(reply["ids"], prompt, n, case["vocab_size"], case["shift"], what)
        calls = as_array(reply["calls"], what, "iu", (None, 2)).tolist()
        expected = _restart_calls(prompt.shape[-1], n, c)
        if calls != expected and calls[:-1] != expected:
            raise TestFailure(
                f"{what}: expected the step calls (new tokens, cached positions) {expected}, got {calls}. Cut the "
                f"prompt to its last context_length tokens; when the cache is full, restart it (state None) from the "
                f"last context_length // 2 tokens."
            )


@hidden_test("generate returns prompt + max_new_tokens ids and uses model.step with the carried state", PART,
             weight=1.5)
def test_generate(ctx) -> None:
    for case in ctx.hidden("cases", lambda: _generate_cases(ctx.rng)):
        prompt = np.asarray(case["prompt"], dtype=np.int64)
        what = f"generate(model, prompt of shape {list(prompt.shape)}, max_new_tokens={case['n']})"
        reply = expect_dict(ctx.call(
            "samplers.generate", prompt=prompt.astype(np.int32), max_new_tokens=case["n"],
            vocab_size=case["vocab_size"], shift=case["shift"], gap=case["gap"], temperature=case["temperature"],
            seed=case["seed"],
        ), ("ids", "calls"), what)
        if case["gap"] > 0:
            _check_generation(reply["ids"], prompt, case["n"], case["vocab_size"], case["shift"], what)
        else:
            _check_uniform_generation(reply["ids"], prompt, case["n"], case["vocab_size"], what)
        _check_calls(reply["calls"], prompt.shape[-1], case["n"], what)
    reply = ctx.call("samplers.generate_invalid")
    if not isinstance(reply, dict):
        raise TestFailure("the worker returned an unexpected reply.")
    for case, error in sorted(reply.items()):
        expect_error(error, "ValueError", f"generate with {case}")


@hidden_test("greedy and sample return int32 ids", PART, weight=0.25)
def test_ids_dtype(ctx) -> None:
    logits = ctx.hidden("logits", lambda: ctx.rng.normal(0.0, 1.0, (3, DESIGN_VOCAB)).astype(np.float32))
    reply = ctx.call("samplers.ids_dtypes", logits=logits)
    if not isinstance(reply, dict) or not reply:
        raise TestFailure("the worker returned an unexpected reply.")
    wrong = [f"{name} returned {dtype}" for name, dtype in sorted(reply.items()) if dtype != "int32"]
    if wrong:
        raise TestFailure(f"the ids must be int32 tensors (tf.argmax(..., output_type=tf.int32), "
                          f"stateless_categorical(..., dtype=tf.int32)): {'; '.join(wrong)}.")


COMBINED_VOCAB = 12
COMPILED_ROWS = 6
COMPILED_SEEDS = 4


def _combined_setting(rng: np.random.Generator, logits: np.ndarray) -> dict | None:
    """(temperature, top_k, top_p) for `logits` [V] whose top-k-then-top-p set differs from the top-k set, from the
    top-p set and from the top-p set of the unfiltered distribution intersected with the top-k set; None if none."""
    t = float(rng.uniform(0.7, 1.2))
    k = int(rng.integers(5, 9))
    x = logits.astype(np.float64) / t
    p = _mid_gap_p(np.where(oracles.top_k_kept(x, k), x, -np.inf), rng, 0.02)
    if p is None:
        return None
    both = oracles.sampling_distribution(logits, t, k, p) > 0
    wrong = (oracles.sampling_distribution(logits, t, k, None) > 0, oracles.sampling_distribution(logits, t, None, p)
             > 0, oracles.top_k_kept(x, k) & oracles.top_p_kept(x, p))
    if both.sum() < 3 or any(np.array_equal(both, w) for w in wrong):
        return None
    return {"temperature": t, "top_k": k, "top_p": p}


def _combined_design(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Logits [COMBINED_VOCAB] and a combined setting (with a seed) whose wrong readings (top-p skipped, top-k
    skipped, top-p on the unfiltered distribution) each pass the chi-square test with probability below 1e-9."""
    for _ in range(2000):
        logits = rng.normal(0.0, 1.3, COMBINED_VOCAB).astype(np.float32)
        setting = _combined_setting(rng, logits)
        if setting is None:
            continue
        t, k, p = setting["temperature"], setting["top_k"], setting["top_p"]
        probs = oracles.sampling_distribution(logits, t, k, p)
        x = logits.astype(np.float64) / t
        wrong = (oracles.sampling_distribution(logits, t, k, None), oracles.sampling_distribution(logits, t, None, p),
                 oracles.softmax(np.where(oracles.top_k_kept(x, k) & oracles.top_p_kept(x, p), x, -np.inf)))
        if max(oracles.miss_probability(probs, q, NUM_DRAWS, ALPHA, MIN_EXPECTED) for q in wrong) < 1e-9:
            return logits, {**setting, "seed": int(rng.integers(0, 2**31 - 1))}
    raise RuntimeError("no combined top-k and top-p design with enough power found: rebuild with another seed")


@hidden_test("sample with top_k and top_p applies top-k, then top-p on what is left (chi-square)", PART, weight=1.0)
def test_top_k_top_p(ctx) -> None:
    drawn: list = []

    def design() -> tuple[np.ndarray, dict]:
        if not drawn:
            drawn.extend(_combined_design(ctx.rng))
        return drawn[0], drawn[1]

    logits = ctx.hidden("logits", lambda: design()[0])
    settings = {"top_k_top_p": ctx.hidden("setting", lambda: design()[1])}
    _goodness_of_fit(ctx, logits, settings, "top_k_top_p",
                     "temperature, top_k and top_p: the nucleus of the renormalised top-k distribution")


def _compiled_case(rng: np.random.Generator) -> dict:
    """Logits [COMPILED_ROWS, COMBINED_VOCAB], a combined setting drawn for the first row (`_combined_setting`) and
    the seeds; p lies at least 1e-3 from the mass levels of every row's top-k tokens."""
    for _ in range(2000):
        logits = rng.normal(0.0, 1.5, (COMPILED_ROWS, COMBINED_VOCAB)).astype(np.float32)
        setting = _combined_setting(rng, logits[0])
        if setting is None:
            continue
        t, k, p = setting["temperature"], setting["top_k"], setting["top_p"]
        x = logits.astype(np.float64) / t
        filtered = np.where(oracles.top_k_kept(x, k), x, -np.inf)
        if min(_margin(row, p) for row in filtered) >= 1e-3:
            return {"logits": logits.tolist(), **setting,
                    "seeds": [int(s) for s in rng.integers(0, 2**31 - 1, COMPILED_SEEDS)]}
    raise RuntimeError("no compiled-sampler case with safe margins found: rebuild with another seed")


@hidden_test("compiled_sampler (sample in tf.function) with top_k and top_p draws as sample does, from the kept set",
             PART, weight=1.5)
def test_compiled_filters(ctx) -> None:
    case = ctx.hidden("case", lambda: _compiled_case(ctx.rng))
    logits = np.asarray(case["logits"], dtype=np.float32)
    t, k, p = case["temperature"], case["top_k"], case["top_p"]
    what = (f"compiled_sampler(temperature, top_k={k}, top_p)(logits [{COMPILED_ROWS}, {COMBINED_VOCAB}], seed) "
            "(the filters traced by tf.function: no .numpy() or Python conditions on tensors in them)")
    reply = expect_dict(ctx.call("samplers.compiled_draw", logits=logits, temperature=t, top_k=k, top_p=p,
                                 seeds=case["seeds"]), ("compiled", "eager"), what)
    shape = (len(case["seeds"]), COMPILED_ROWS)
    compiled = as_array(reply["compiled"], what, "iu", shape)
    eager = as_array(reply["eager"], "sample with the same arguments", "iu", shape)
    kept = np.stack([oracles.sampling_distribution(row, t, k, p) > 0 for row in logits])
    rows = np.broadcast_to(np.arange(COMPILED_ROWS), shape)
    if compiled.min() < 0 or compiled.max() >= COMBINED_VOCAB or not kept[rows, compiled].all():
        raise TestFailure(f"{what}: drew a token outside the kept set (top-k, then top-p on the renormalised rest).")
    if not np.array_equal(compiled, eager):
        raise TestFailure(f"{what}: the compiled draws differ from sample's eager draws with the same seeds.")


@hidden_test("generate draws step s with the seed [seed, s]", PART, weight=0.5)
def test_generate_seeds(ctx) -> None:
    case = ctx.hidden("case", lambda: {"prompt": ctx.rng.integers(0, GENERATE_VOCAB, (2, 3)).tolist(),
                                       "n": 12, "seed": int(ctx.rng.integers(0, 2**31 - 1)),
                                       "temperature": float(ctx.rng.uniform(0.8, 1.5))})
    prompt = np.asarray(case["prompt"], dtype=np.int32)
    n = case["n"]
    what = f"generate(model with uniform logits, prompt of shape {list(prompt.shape)}, max_new_tokens={n}, seed=...)"
    reply = expect_dict(ctx.call("samplers.generate_seeds", prompt=prompt, max_new_tokens=n,
                                 vocab_size=GENERATE_VOCAB, temperature=case["temperature"], seed=case["seed"]),
                        ("ids", "per_step"), what)
    new = _new_tokens(reply["ids"], prompt.astype(np.int64), n, what)
    per_step = as_array(reply["per_step"], "sample(uniform logits, seed=[seed, s]) for each s", "iu", (n, 2))
    if not np.array_equal(new, per_step.T):
        raise TestFailure(f"{what}: the new token of step s (0-based) must be sample(logits, ..., seed=[seed, s]) "
                          "(a shape-[2] seed tensor), as the handout prescribes.")
