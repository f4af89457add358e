"""Part 3, visible tests: each sampler on a two-row example."""

import numpy as np

LOGITS = np.log(np.array([[0.5, 0.3, 0.2, 1e-9], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32))


def test_greedy_picks_the_largest_logit(samplers):
    ids = samplers.greedy(LOGITS)
    np.testing.assert_array_equal(ids, [0, 3])
    assert ids.dtype.name == "int32"


def test_temperature_divides_the_logits(samplers):
    np.testing.assert_allclose(samplers.apply_temperature(LOGITS, 2.0), LOGITS / 2.0, rtol=1e-6)


def test_top_k_keeps_the_k_largest(samplers):
    filtered = np.asarray(samplers.top_k_filter(LOGITS, 2))
    np.testing.assert_array_equal(np.isfinite(filtered), [[True, True, False, False], [False, False, True, True]])


def test_top_p_keeps_the_token_that_crosses_p(samplers):
    filtered = np.asarray(samplers.top_p_filter(LOGITS, 0.6))
    # Row 0: 0.5 < 0.6 so the second token is kept too; row 1: 0.4 + 0.3 >= 0.6 stops after two tokens.
    np.testing.assert_array_equal(np.isfinite(filtered), [[True, True, False, False], [False, False, True, True]])


def test_sample_at_temperature_zero_is_greedy(samplers):
    np.testing.assert_array_equal(samplers.sample(LOGITS, temperature=0.0), [0, 3])


def test_sample_is_reproducible_with_a_seed(samplers):
    first = samplers.sample(LOGITS, temperature=1.0, seed=7)
    np.testing.assert_array_equal(first, samplers.sample(LOGITS, temperature=1.0, seed=7))


def test_generate_returns_prompt_plus_new_tokens(samplers, lstm):
    model = lstm.LSTMLanguageModel(vocab_size=5, embed_dim=4, hidden_dim=4)
    ids = samplers.generate(model, [1, 2, 3], max_new_tokens=4, temperature=0.0)
    assert ids.shape == (7,) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids[:3], [1, 2, 3])
