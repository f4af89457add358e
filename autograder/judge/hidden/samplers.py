"""Hidden tests of part 3 (samplers.py).

The goodness-of-fit tests draw NUM_DRAWS tokens from one set of logits (tiled to [NUM_DRAWS, V] and passed to the
student's `sample` in a single call with one seed) and compare the counts with the exact distribution by a Pearson
chi-square test at level ALPHA, after pooling cells with expected count below MIN_EXPECTED. Each test makes at most
two comparisons, so a correct sampler fails a test with probability below 2 * ALPHA = 2e-7 < 1e-6. The build step
(`autograder.build.fixtures`) only accepts hidden logits for which every classic bug (temperature multiplied instead of
divided, softmax before temperature, k + 1 tokens kept, crossing token dropped, top-p before temperature) is detected
with probability above 1 - 1e-9 at these sizes; the kit tests recompute that power.
"""

from __future__ import annotations

import numpy as np

from autograder.judge.hidden.common import as_array, close, expect_dict, expect_error, expect_errors, goodness_of_fit
from autograder.judge.registry import TestFailure, hidden_test

ALPHA = 1e-7
NUM_DRAWS = 20_000
MIN_EXPECTED = 50.0
SEED_DRAWS = 200

PART = "samplers"


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
    "crosses p is kept and ties are kept or dropped together)."
)


@hidden_test("greedy and sample(temperature=0) return the argmax (lowest index on ties)", PART, weight=1.0)
def test_greedy(ctx) -> None:
    logits = ctx.fixtures["samplers/greedy_logits"]
    expected = ctx.fixtures["samplers/greedy_expected"]
    reply = expect_dict(ctx.call("samplers.greedy", logits=logits), ("greedy", "sample_t0"), "greedy")
    for key, what in (("greedy", "greedy(logits)"), ("sample_t0", "sample(logits, temperature=0)")):
        ids = _ids(reply[key], len(logits), logits.shape[1], what)
        wrong = int((ids != expected).sum())
        if wrong:
            raise TestFailure(f"{what}: {wrong} of {len(ids)} hidden rows differ from the argmax (ties -> lowest "
                              "index).")


@hidden_test("apply_temperature divides the logits by the temperature", PART, weight=0.5)
def test_temperature_values(ctx) -> None:
    logits = ctx.fixtures["samplers/temperature_logits"]
    values = ctx.fixtures["samplers/temperature_values"]
    reply = ctx.call("samplers.filter", kind="temperature", logits=logits, values=values)
    reply = expect_dict(reply, ("filtered",), "apply_temperature")
    out = as_array(reply["filtered"], "apply_temperature(logits, t)", "f", logits.shape)
    close(out, logits.astype(np.float64) / np.asarray(values)[:, None], "apply_temperature(logits, t)", 1e-6, 1e-5)


@hidden_test("top_k_filter keeps exactly the top-k set (ties at the k-th logit kept)", PART, weight=1.0)
def test_top_k_kept_set(ctx) -> None:
    logits = ctx.fixtures["samplers/top_k_logits"]
    reply = ctx.call("samplers.filter", kind="top_k", logits=logits, values=ctx.fixtures["samplers/top_k_values"])
    kept = _kept(expect_dict(reply, ("filtered",), "top_k_filter")["filtered"], logits, "top_k_filter(logits, k)")
    _compare_kept(kept, ctx.fixtures["samplers/top_k_kept"], "top_k_filter(logits, k)", TOP_K_RULE)
    reply = ctx.call("samplers.filter_batch", kind="top_k", logits=logits, value=ctx.fixtures["samplers/batch_k"])
    kept = _kept(expect_dict(reply, ("filtered",), "top_k_filter")["filtered"], logits, "top_k_filter on a batch")
    _compare_kept(kept, ctx.fixtures["samplers/batch_k_kept"], "top_k_filter on a [B, V] batch (rows independent)",
                  TOP_K_RULE)


@hidden_test("top_p_filter keeps exactly the nucleus (crossing token kept, ties together)", PART, weight=1.0)
def test_top_p_kept_set(ctx) -> None:
    logits = ctx.fixtures["samplers/top_p_logits"]
    reply = ctx.call("samplers.filter", kind="top_p", logits=logits, values=ctx.fixtures["samplers/top_p_values"])
    kept = _kept(expect_dict(reply, ("filtered",), "top_p_filter")["filtered"], logits, "top_p_filter(logits, p)")
    _compare_kept(kept, ctx.fixtures["samplers/top_p_kept"], "top_p_filter(logits, p)", TOP_P_RULE)
    reply = ctx.call("samplers.filter_batch", kind="top_p", logits=logits, value=ctx.fixtures["samplers/batch_p"])
    kept = _kept(expect_dict(reply, ("filtered",), "top_p_filter")["filtered"], logits, "top_p_filter on a batch")
    _compare_kept(kept, ctx.fixtures["samplers/batch_p_kept"], "top_p_filter on a [B, V] batch (rows independent)",
                  TOP_P_RULE)


def _goodness_of_fit(ctx, config: str, description: str) -> None:
    """Draw NUM_DRAWS tokens with the hidden settings `config` and chi-square test them against the exact law."""
    logits = ctx.fixtures["samplers/draw_logits"]
    settings = ctx.fixtures["samplers/draw_settings"][config]
    probs = ctx.fixtures[f"samplers/draw_probs_{config}"]
    reply = ctx.call(
        "samplers.draw", logits=logits, num_samples=NUM_DRAWS, seed=settings["seed"],
        temperature=settings["temperature"], top_k=settings["top_k"], top_p=settings["top_p"],
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
    _goodness_of_fit(ctx, "low_temperature", "temperature < 1: expected softmax(logits / temperature)")
    _goodness_of_fit(ctx, "high_temperature", "temperature > 1: expected softmax(logits / temperature)")


@hidden_test("sample with top_k follows the renormalised top-k distribution (chi-square)", PART, weight=1.5)
def test_top_k_distribution(ctx) -> None:
    _goodness_of_fit(ctx, "top_k", "temperature then top_k: expected softmax over the k kept tokens")


@hidden_test("sample with top_p follows the renormalised nucleus distribution (chi-square)", PART, weight=1.5)
def test_top_p_distribution(ctx) -> None:
    _goodness_of_fit(ctx, "top_p", "top_p: expected softmax over the nucleus, crossing token included")
    _goodness_of_fit(ctx, "temperature_top_p", "temperature then top_p: nucleus of the tempered distribution")


@hidden_test("sample is reproducible: same seed gives the same tokens, different seeds differ", PART, weight=1.0)
def test_seed(ctx) -> None:
    logits = ctx.fixtures["samplers/draw_logits"]
    seed = ctx.fixtures["samplers/draw_settings"]["high_temperature"]["seed"]
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


@hidden_test("generate restarts the cache from the last context_length // 2 tokens when it is full", PART, 0.5)
def test_generate_restart(ctx) -> None:
    for case in ctx.fixtures["samplers/generate_restart_cases"]:
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
             weight=1.0)
def test_generate(ctx) -> None:
    for case in ctx.fixtures["samplers/generate_cases"]:
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
