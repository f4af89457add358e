"""Mutants of part 3 (samplers.py): greedy, temperature, top-k, top-p, seeded sampling and generation."""

from __future__ import annotations

from autograder.qa.mutants import Edit, Mutant

M = "samplers"
GREEDY = "samplers.greedy"
TEMPERATURE = "samplers.temperature_values"
TOP_K = "samplers.top_k_kept_set"
TOP_P = "samplers.top_p_kept_set"
TEMPERATURE_LAW = "samplers.temperature_distribution"
TOP_K_LAW = "samplers.top_k_distribution"
TOP_P_LAW = "samplers.top_p_distribution"
SEED = "samplers.seed"
INVALID = "samplers.invalid_arguments"
GENERATE = "samplers.generate"
RESTART = "samplers.generate_restart"
IDS_DTYPE = "samplers.ids_dtype"
COMBINED = "samplers.top_k_top_p"
COMPILED = "samplers.compiled_filters"
SEEDS = "samplers.generate_seeds"
TOP_P_AT_ONE = "samplers.top_p_at_one"

MASS_BEFORE = "mass_before = tf.cumsum(tf.nn.softmax(sorted_logits, axis=-1), axis=-1, exclusive=True)"
KEEP_ABOVE_THRESHOLD = "return tf.where(logits >= threshold, logits, -np.inf)"

MUTANTS = [
    Mutant(
        "greedy-returns-probability",
        "greedy returns the largest probability of each row instead of its index",
        Edit(M, "greedy", patch=(("return tf.argmax(logits, axis=-1, output_type=tf.int32)",
                                  "return tf.reduce_max(tf.nn.softmax(logits), axis=-1)"),)),
        (GREEDY,),
    ),
    Mutant(
        "greedy-ties-to-last",
        "greedy breaks ties towards the highest index (argmax of the reversed row)",
        Edit(M, "greedy", patch=(("return tf.argmax(logits, axis=-1, output_type=tf.int32)",
                                  "return tf.shape(logits)[-1] - 1 - tf.argmax(logits[:, ::-1], axis=-1, "
                                  "output_type=tf.int32)"),)),
        (GREEDY,),
    ),
    Mutant(
        "temperature-multiplied",
        "apply_temperature multiplies the logits by the temperature",
        Edit(M, "apply_temperature", patch=(("return logits / temperature", "return logits * temperature"),)),
        (TEMPERATURE, TEMPERATURE_LAW),
    ),
    Mutant(
        "temperature-ignored-in-sample",
        "sample never applies the temperature (only uses it to detect greedy)",
        Edit(M, "sample", patch=(("    logits = apply_temperature(logits, temperature)\n", ""),)),
        (TEMPERATURE_LAW,),
    ),
    Mutant(
        "softmax-before-temperature",
        "sample divides the probabilities, not the logits, by the temperature",
        Edit(M, "sample", patch=(("logits = apply_temperature(logits, temperature)",
                                  "logits = apply_temperature(tf.nn.softmax(logits), temperature)"),)),
        (TEMPERATURE_LAW,),
    ),
    Mutant(
        "top-k-keeps-k-plus-1",
        "top_k_filter keeps the k + 1 largest logits (off by one in the threshold index)",
        Edit(M, "top_k_filter", patch=(("k = tf.minimum(int(k), tf.shape(logits)[-1])",
                                        "k = tf.minimum(int(k) + 1, tf.shape(logits)[-1])"),)),
        (TOP_K, TOP_K_LAW),
    ),
    Mutant(
        "top-k-keeps-k-minus-1",
        "top_k_filter uses a strict > against the k-th largest logit, so only k - 1 tokens survive",
        Edit(M, "top_k_filter", patch=(("tf.where(logits >= kth_largest", "tf.where(logits > kth_largest"),)),
        (TOP_K, TOP_K_LAW),
    ),
    Mutant(
        "top-k-ties-dropped",
        "top_k_filter keeps exactly the k indices of tf.math.top_k, dropping tokens tied with the k-th",
        Edit(M, "top_k_filter", patch=((
            "kth_largest = tf.math.top_k(logits, k=k).values[:, -1:]\n"
            "    return tf.where(logits >= kth_largest, logits, -np.inf)",
            "indices = tf.math.top_k(logits, k=k).indices\n"
            "    keep = tf.reduce_max(tf.one_hot(indices, tf.shape(logits)[-1]), axis=1) > 0\n"
            "    return tf.where(keep, logits, -np.inf)"),)),
        (TOP_K,),
    ),
    Mutant(
        "top-p-drops-crossing-token",
        "top_p_filter keeps only the tokens whose cumulative mass, themselves included, is < p",
        Edit(M, "top_p_filter", patch=((MASS_BEFORE, MASS_BEFORE.replace(", exclusive=True", "")),)),
        (TOP_P, TOP_P_LAW),
    ),
    Mutant(
        "top-p-one-past-crossing",
        "top_p_filter keeps one token too many (the one after the token that crosses p)",
        Edit(M, "top_p_filter", patch=((
            MASS_BEFORE, f"{MASS_BEFORE}\n    mass_before = tf.pad(mass_before[:, :-1], [[0, 0], [1, 0]])"),)),
        (TOP_P, TOP_P_LAW),
    ),
    Mutant(
        "top-p-ties-split",
        "top_p_filter keeps a prefix of the sorted tokens, so tied tokens can be split at the boundary",
        Edit(M, "top_p_filter", patch=((
            "threshold = tf.reduce_min(tf.where(mass_before < p, sorted_logits, np.inf), axis=-1, keepdims=True)\n"
            f"    {KEEP_ABOVE_THRESHOLD}",
            'order = tf.argsort(logits, axis=-1, direction="DESCENDING", stable=True)\n'
            "    keep = tf.gather(mass_before < p, tf.argsort(order, axis=-1), batch_dims=1)\n"
            "    return tf.where(keep, logits, -np.inf)"),)),
        (TOP_P,),
    ),
    Mutant(
        "top-p-left-sorted",
        "top_p_filter returns the filtered logits in sorted order instead of the vocabulary order",
        Edit(M, "top_p_filter", patch=((KEEP_ABOVE_THRESHOLD,
                                        "return tf.where(sorted_logits >= threshold, sorted_logits, -np.inf)"),)),
        (TOP_P, TOP_P_LAW),
    ),
    Mutant(
        "top-p-before-temperature",
        "sample applies the top-p filter to the raw logits and the temperature afterwards",
        Edit(M, "sample", patch=(
            ("    logits = apply_temperature(logits, temperature)\n", ""),
            ("        logits = top_p_filter(logits, top_p)\n",
             "        logits = top_p_filter(logits, top_p)\n    logits = apply_temperature(logits, temperature)\n"),
        )),
        (TOP_P_LAW,),
    ),
    Mutant(
        "sample-ignores-seed",
        "sample draws with the global random generator (tf.random.categorical), ignoring the seed",
        Edit(M, "sample", patch=(("tf.random.stateless_categorical(logits, 1, seed=seed, dtype=tf.int32)",
                                  "tf.random.categorical(logits, 1, dtype=tf.int32)"),)),
        (SEED,),
    ),
    Mutant(
        "sample-t0-divides",
        "sample(temperature=0) divides by the temperature instead of falling back to greedy",
        Edit(M, "sample", patch=(("if temperature == 0.0:", "if temperature is None:"),)),
        (GREEDY,),
    ),
    Mutant(
        "temperature-zero-accepted",
        "apply_temperature accepts temperature 0 (no ValueError) and divides by it",
        Edit(M, "apply_temperature", patch=(("if not temperature > 0.0:", "if temperature < 0.0:"),)),
        (INVALID,),
    ),
    Mutant(
        "generate-recomputes-sequence",
        "generate calls model.step on the whole sequence for every new token (no state, no cache)",
        Edit(M, "generate", patch=((
            "logits, state = model.step(tf.expand_dims(new_ids[-1], 1), state)",
            "logits, state = model.step(tf.concat([ids, tf.stack(new_ids, axis=1)], axis=1))",
        ),)),
        (GENERATE,),
    ),
    Mutant(
        "generate-state-dropped",
        "generate passes each new token to model.step without the state it returned",
        Edit(M, "generate", patch=(("logits, state = model.step(tf.expand_dims(new_ids[-1], 1), state)",
                                    "logits, state = model.step(tf.expand_dims(new_ids[-1], 1))"),)),
        (GENERATE,),
    ),
    Mutant(
        "generate-one-token-short",
        "generate stops one token early (max_new_tokens - 1 new ids)",
        Edit(M, "generate", patch=(("for s in range(int(max_new_tokens)):", "for s in range(int(max_new_tokens) - 1):"),
                                   ("if s + 1 == max_new_tokens:", "if s + 2 == max_new_tokens:"))),
        (GENERATE,),
    ),
    Mutant(
        "generate-drops-prompt",
        "generate returns only the new tokens, without the prompt",
        Edit(M, "generate", patch=(("    return ids[0] if unbatched else ids",
                                    "    ids = ids[:, int(tf.shape(prompt)[-1]):]\n"
                                    "    return ids[0] if unbatched else ids"),)),
        (GENERATE,),
    ),
    Mutant(
        "generate-restart-keeps-all-but-one",
        "when the cache is full, generate restarts it from the last context_length - 1 tokens (a restart every token)",
        Edit(M, "generate", patch=(("keep = max(context_length // 2, 1)", "keep = max(context_length - 1, 1)"),)),
        (RESTART,),
    ),
    Mutant(
        "generate-never-restarts",
        "generate keeps feeding one token at a time past the model's context_length",
        Edit(M, "generate", patch=(("if context_length is not None and cached >= context_length:",
                                    "if False:"),)),
        (RESTART,),
    ),
    Mutant(
        "generate-same-seed-every-step",
        "generate draws every token with the same seed [seed, 0] instead of [seed, s]",
        Edit(M, "generate", patch=(("seed=tf.constant([seed, s], tf.int64)",
                                    "seed=tf.constant([seed, 0], tf.int64)"),)),
        (GENERATE,),
    ),
    Mutant(
        "greedy-int64",
        "greedy returns tf.argmax's default int64 ids (generate then cannot join them to the int32 prompt)",
        Edit(M, "greedy", patch=(("tf.argmax(logits, axis=-1, output_type=tf.int32)", "tf.argmax(logits, axis=-1)"),)),
        (IDS_DTYPE,),
    ),
    Mutant(
        "top-k-numpy-threshold",
        "top_k_filter finds the k-th largest logit with numpy on logits.numpy(): right eagerly, a crash in "
        "compiled_sampler's tf.function",
        Edit(M, "top_k_filter", patch=(("kth_largest = tf.math.top_k(logits, k=k).values[:, -1:]",
                                        "kth_largest = np.sort(logits.numpy(), axis=-1)[:, ::-1][:, int(k) - 1 : "
                                        "int(k)]"),)),
        (COMPILED,),
    ),
    Mutant(
        "sample-top-p-skipped-with-top-k",
        "sample applies top_p only when top_k is not given (elif), so with both only top-k filters",
        Edit(M, "sample", patch=(("    if top_p is not None:\n        logits = top_p_filter",
                                  "    elif top_p is not None:\n        logits = top_p_filter"),)),
        (COMBINED,),
    ),
    Mutant(
        "generate-seed-plus-step",
        "generate draws step s with the seed [seed + s, 0] instead of [seed, s]",
        Edit(M, "generate", patch=(("seed=tf.constant([seed, s], tf.int64)",
                                    "seed=tf.constant([seed + s, 0], tf.int64)"),)),
        (SEEDS,),
    ),
    Mutant(
        "top-p-drops-at-one",
        "top_p_filter has no case for p = 1 and compares the float32 mass above each token with p, which drops the "
        "tokens whose mass above rounds to 1",
        Edit(M, "top_p_filter", patch=(
            ("    if p == 1.0:  # the mass above any token is < 1 in exact arithmetic; rounding must not drop the "
             "tail\n        return logits\n", ""),)),
        (TOP_P_AT_ONE,),
    ),
]
