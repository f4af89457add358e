"""Mutants of part 4 (transformer.py): mask, attention, positions, heads, blocks, tied output and the KV cache."""

from __future__ import annotations

from autograder.qa.mutants import Edit, Mutant

M = "transformer"
MASK = "transformer.causal_mask"
ATTENTION = "transformer.attention"
POSITIONS = "transformer.positional_encoding"
MHA = "transformer.mha_oracle"
MHA_CAUSAL = "transformer.mha_causality"
MODEL_CAUSAL = "transformer.model_causality"
TIED = "transformer.tied_embeddings"
KV = "transformer.kv_cache"
MODEL_ORACLE = "transformer.model_oracle"
TOO_LONG = "transformer.too_long"
POSITIONS_DTYPE = "transformer.positional_encoding_dtype"
DROPOUT = "transformer.dropout"
OUTPUT_BIAS = "transformer.output_bias"
GENERATE = "transformer.generate_past_context"

SCALE = " / tf.sqrt(tf.cast(tf.shape(k)[-1], q.dtype))"
MASKING = "scores = tf.where(tf.cast(mask, tf.bool), scores, tf.constant(MASKED_SCORE, scores.dtype))"
SOFTMAX = "weights = tf.nn.softmax(scores, axis=-1)"

TIED_LOGITS = 'tf.einsum("btd,vd->btv", h, self.token_embedding.embeddings) + self.output_bias'
STEP_LOGITS = 'tf.einsum("btd,vd->btv", self.final_norm(h), self.token_embedding.embeddings) + self.output_bias'

EMBED_POSITIONS = "h = self.token_embedding(tokens) + self.positions(0, tf.shape(tokens)[1])"
STEP_POSITIONS = "h = self.token_embedding(tokens) + self.positions(start, tf.shape(tokens)[1])"

PAIRS = "tf.stack([tf.sin(angle), tf.cos(angle)], axis=-1)"

MUTANTS = [
    Mutant(
        "mask-diagonal-excluded",
        "causal_mask uses j < i, so a position cannot attend to itself",
        Edit(M, "causal_mask", patch=(("positions[None, :] <= positions[:, None]",
                                       "positions[None, :] < positions[:, None]"),)),
        (MASK, MHA),
    ),
    Mutant(
        "mask-upper-triangle",
        "causal_mask is the upper triangle (j >= i): every position attends to the future",
        Edit(M, "causal_mask", patch=(("positions[None, :] <= positions[:, None]",
                                       "positions[None, :] >= positions[:, None]"),)),
        (MASK, MHA, MHA_CAUSAL, MODEL_CAUSAL),
    ),
    Mutant(
        "mask-after-softmax",
        "attention zeroes the masked weights after the softmax, so the rows no longer sum to 1",
        Edit(M, "scaled_dot_product_attention", patch=((
            f"    if mask is not None:\n        {MASKING}\n    {SOFTMAX}",
            f"    {SOFTMAX}\n    if mask is not None:\n"
            "        weights = tf.where(tf.cast(mask, tf.bool), weights, 0.0)"),)),
        (ATTENTION, MHA),
    ),
    Mutant(
        "mask-multiplies-scores",
        "attention multiplies the masked scores by 0 instead of setting them to a large negative value",
        Edit(M, "scaled_dot_product_attention", patch=((MASKING, "scores = scores * tf.cast(mask, scores.dtype)"),)),
        (ATTENTION, MHA, MHA_CAUSAL, MODEL_CAUSAL),
    ),
    Mutant(
        "attention-not-scaled",
        "attention forgets to divide the scores by sqrt(d_k)",
        Edit(M, "scaled_dot_product_attention", patch=((SCALE, ""),)),
        (ATTENTION, MHA),
    ),
    Mutant(
        "attention-scaled-by-dk",
        "attention divides the scores by d_k instead of sqrt(d_k)",
        Edit(M, "scaled_dot_product_attention", patch=((SCALE, " / tf.cast(tf.shape(k)[-1], q.dtype)"),)),
        (ATTENTION, MHA),
    ),
    Mutant(
        "softmax-over-queries",
        "attention takes the softmax over the query axis instead of the key axis",
        Edit(M, "scaled_dot_product_attention", patch=((SOFTMAX, SOFTMAX.replace("axis=-1", "axis=-2")),)),
        (ATTENTION, MHA),
    ),
    Mutant(
        "heads-split-without-transpose",
        "split_heads reshapes [B, T, H, hd] to [B, H, T, hd] instead of transposing, mixing time and heads",
        Edit(M, "split_heads", patch=(("return tf.transpose(x, [0, 2, 1, 3])",
                                       "return tf.reshape(x, tf.gather(tf.shape(x), [0, 2, 1, 3]))"),)),
        (MHA, MHA_CAUSAL),
    ),
    Mutant(
        "heads-merged-without-transpose",
        "merge_heads reshapes [B, H, T, hd] to [B, T, H, hd] instead of transposing",
        Edit(M, "merge_heads", patch=(("return tf.transpose(x, [0, 2, 1, 3])",
                                       "return tf.reshape(x, tf.gather(tf.shape(x), [0, 2, 1, 3]))"),)),
        (MHA, MHA_CAUSAL),
    ),
    Mutant(
        "pe-sin-cos-swapped",
        "positional_encoding puts cos on the even dimensions and sin on the odd ones",
        Edit(M, "positional_encoding", patch=((PAIRS, "tf.stack([tf.cos(angle), tf.sin(angle)], axis=-1)"),)),
        (POSITIONS,),
    ),
    Mutant(
        "pe-not-interleaved",
        "positional_encoding concatenates all sines then all cosines instead of interleaving them",
        Edit(M, "positional_encoding", patch=((PAIRS, "tf.concat([tf.sin(angle), tf.cos(angle)], axis=-1)"),)),
        (POSITIONS,),
    ),
    Mutant(
        "pe-exponent-i",
        "positional_encoding uses 10000^(i / d_model) instead of 10000^(2i / d_model)",
        Edit(M, "positional_encoding", patch=(("even_dims / d_model)", "even_dims / 2 / d_model)"),)),
        (POSITIONS,),
    ),
    Mutant(
        "positions-missing",
        "the model adds no positional information to the token embeddings (in call and in step)",
        (Edit(M, "TransformerLanguageModel.call", patch=((EMBED_POSITIONS, "h = self.token_embedding(tokens)"),)),
         Edit(M, "TransformerLanguageModel.cached_forward",
              patch=((STEP_POSITIONS, "h = self.token_embedding(tokens)"),))),
        (MODEL_ORACLE,),
    ),
    Mutant(
        "step-positions-restart",
        "step() gives the new tokens positions 0, 1, ... instead of continuing after the cached prefix",
        Edit(M, "TransformerLanguageModel.cached_forward",
             patch=((STEP_POSITIONS, "h = self.token_embedding(tokens) + self.positions(0, tf.shape(tokens)[1])"),)),
        (KV, GENERATE),
    ),
    Mutant(
        "post-layer-norm",
        "the block normalises after each residual sum (post-LN) instead of before each branch (pre-LN)",
        Edit(M, "TransformerBlock.call", patch=(
            ("self.attention(self.norm1(x),", "self.attention(x,"),
            ("x = x + self.dropout(attended, training=training)",
             "x = self.norm1(x + self.dropout(attended, training=training))"),
            ("x = x + self.dropout(self.mlp_output(self.mlp_hidden(self.norm2(x))), training=training)",
             "x = self.norm2(x + self.dropout(self.mlp_output(self.mlp_hidden(x)), training=training))"),
        )),
        (MODEL_ORACLE,),
    ),
    Mutant(
        "attention-residual-missing",
        "the block replaces x by the attention branch instead of adding it (no residual connection)",
        Edit(M, "TransformerBlock.call", patch=(("x = x + self.dropout(attended, training=training)",
                                                 "x = self.dropout(attended, training=training)"),)),
        (MODEL_ORACLE,),
    ),
    Mutant(
        "final-norm-missing",
        "the model skips the final LayerNorm before the output layer (in call and in step)",
        (Edit(M, "TransformerLanguageModel.call", patch=(("        h = self.final_norm(h)\n", ""),)),
         Edit(M, "TransformerLanguageModel.cached_forward", patch=(("self.final_norm(h)", "h"),))),
        (MODEL_ORACLE,),
    ),
    Mutant(
        "embeddings-not-tied",
        "the model's output layer is its own Dense(V) instead of the token embedding matrix",
        (Edit(M, "TransformerLanguageModel.__init__", patch=((
            '        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")',
            '        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")\n'
            '        self.lm_head = keras.layers.Dense(vocab_size, use_bias=False, name="lm_head")'),)),
         Edit(M, "TransformerLanguageModel.call",
              patch=(('tf.einsum("btd,vd->btv", h, self.token_embedding.embeddings)', "self.lm_head(h)"),)),
         Edit(M, "TransformerLanguageModel.cached_forward", patch=((
             'tf.einsum("btd,vd->btv", self.final_norm(h), self.token_embedding.embeddings)',
             "self.lm_head(self.final_norm(h))"),))),
        (TIED,),
    ),
    Mutant(
        "kv-cache-written-at-zero",
        "the attention layer writes the new keys and values at positions 0, 1, ... instead of after the cached ones",
        Edit(M, "MultiHeadSelfAttention.call", patch=(
            ('k = update_cache(cache["key"], k, start)', 'k = update_cache(cache["key"], k, 0)'),
            ('v = update_cache(cache["value"], v, start)', 'v = update_cache(cache["value"], v, 0)'),
        )),
        (KV,),
    ),
    Mutant(
        "kv-cache-not-updated",
        "the attention layer returns the cache it was given instead of the one with the new keys and values",
        Edit(M, "MultiHeadSelfAttention.call", patch=(
            ('return y if cache is None else (y, {"key": k, "value": v})', "return y if cache is None else (y, cache)"),
        )),
        (KV, GENERATE),
    ),
    Mutant(
        "kv-cache-mask-first-rows",
        "with a cache, the new queries take rows 0 .. T - 1 of the causal mask instead of rows start .. start + T - 1",
        Edit(M, "MultiHeadSelfAttention.call", patch=(
            ("start + tf.range(tf.shape(x)[1])", "tf.range(tf.shape(x)[1])"),
        )),
        (KV,),
    ),
    Mutant(
        "attention-unmasked",
        "the attention layer never passes the causal mask, so every position sees the future",
        Edit(M, "MultiHeadSelfAttention.call", patch=(
            ("attended, _ = scaled_dot_product_attention(q, k, v, mask)",
             "attended, _ = scaled_dot_product_attention(q, k, v)"),
        )),
        (MHA, MHA_CAUSAL, MODEL_CAUSAL),
    ),
    Mutant(
        "attention-ignores-mask",
        "scaled_dot_product_attention never applies its mask argument, so masked keys keep their weight",
        Edit(M, "scaled_dot_product_attention", patch=(("    if mask is not None:", "    if False:"),)),
        (ATTENTION, MHA, MHA_CAUSAL, MODEL_CAUSAL),
    ),
    Mutant(
        "attention-reads-backwards",
        "the attention layer runs on the time-reversed sequence (no cache), so later inputs reach earlier outputs",
        Edit(M, "MultiHeadSelfAttention.call", patch=(
            ("        q = split_heads(", "        x = x[:, ::-1] if cache is None else x\n        q = split_heads("),
            ("        return y if cache is None else", "        return y[:, ::-1] if cache is None else"),
        )),
        (MHA, MHA_CAUSAL, MODEL_CAUSAL),
    ),
    Mutant(
        "model-reads-backwards",
        "the language model's call reads the tokens in reverse order, so later tokens reach earlier logits",
        Edit(M, "TransformerLanguageModel.call", patch=(
            (EMBED_POSITIONS, EMBED_POSITIONS.replace("(tokens)", "(tokens[:, ::-1])", 1)),
            ("+ self.output_bias  # [B, T, V]", "+ self.output_bias  # [B, T, V]\n        return logits[:, ::-1]"),
            ('        return tf.einsum("btd,vd->btv"', '        logits = tf.einsum("btd,vd->btv"'),
        )),
        (MODEL_CAUSAL, MODEL_ORACLE),
    ),
    Mutant(
        "model-ignores-tokens",
        "the language model's call returns zero logits whatever the tokens",
        Edit(M, "TransformerLanguageModel.call", patch=(
            ('        return tf.einsum("btd,vd->btv", h, self.token_embedding.embeddings) + self.output_bias',
             '        return tf.zeros_like(tf.einsum("btd,vd->btv", h, self.token_embedding.embeddings))'),
        )),
        (MODEL_CAUSAL, TIED, MODEL_ORACLE),
    ),
    Mutant(
        "output-projects-first-head-only",
        "the attention layer projects only the first head with the output kernel",
        Edit(M, "MultiHeadSelfAttention.call", patch=(
            ('y = tf.einsum("bthk,hkd->btd", merge_heads(attended), self.output_kernel) + self.output_bias',
             'y = tf.einsum("btk,kd->btd", merge_heads(attended)[:, :, 0], self.output_kernel[0]) + self.output_bias'),
        )),
        (MHA,),
    ),
    Mutant(
        "model-skips-token-check",
        "the language model's call drops the given token check, so more than context_length tokens are not refused",
        Edit("transformer", "TransformerLanguageModel.call",
             patch=(("tokens = self._check_tokens(tokens)", "tokens = tf.cast(tokens, tf.int32)"),)),
        (TOO_LONG,),
    ),
    Mutant(
        "pe-float64",
        "positional_encoding computes in float64 and returns float64 (right values, but adding it to the float32 "
        "embeddings fails)",
        Edit(M, "positional_encoding",
             patch=(("return tf.cast(tf.reshape(pairs, [length, -1])[:, :d_model], tf.float32)",
                     "return tf.reshape(pairs, [length, -1])[:, :d_model]"),)),
        (POSITIONS_DTYPE,),
    ),
    Mutant(
        "output-bias-missing",
        "the model's logits leave out output_bias (h E^T only), in call and in step",
        (Edit(M, "TransformerLanguageModel.call",
              patch=((TIED_LOGITS, TIED_LOGITS.replace(" + self.output_bias", "")),)),
         Edit(M, "TransformerLanguageModel.cached_forward",
              patch=((STEP_LOGITS, STEP_LOGITS.replace(" + self.output_bias", "")),))),
        (OUTPUT_BIAS,),
    ),
    Mutant(
        "dropout-at-inference",
        "the attention layer calls its Dropout with training=True, so it drops units at inference too",
        Edit(M, "MultiHeadSelfAttention.call", patch=(("self.dropout(attended, training=training)",
                                                       "self.dropout(attended, training=True)"),)),
        (DROPOUT,),
    ),
    Mutant(
        "dropout-never-in-training",
        "the block and the attention layer call their Dropout with training=False, so nothing is dropped in training",
        (Edit(M, "MultiHeadSelfAttention.call", patch=(("self.dropout(attended, training=training)",
                                                        "self.dropout(attended, training=False)"),)),
         Edit(M, "TransformerBlock.call", patch=(("self.dropout(attended, training=training)",
                                                  "self.dropout(attended, training=False)"),
                                                 ("self.norm2(x))), training=training)",
                                                  "self.norm2(x))), training=False)"))),),
        (DROPOUT,),
    ),
    Mutant(
        "dropout-unscaled",
        "the attention layer drops attended values with its own mask but does not scale the kept ones by "
        "1 / (1 - rate), so training outputs are biased towards the bias",
        Edit(M, "MultiHeadSelfAttention.call", patch=(
            ("attended = self.dropout(attended, training=training)",
             "if training and self.dropout_rate > 0:\n"
             "            keep = tf.random.uniform(tf.shape(attended)) >= self.dropout_rate\n"
             "            attended = attended * tf.cast(keep, attended.dtype)"),)),
        (DROPOUT,),
    ),
]
