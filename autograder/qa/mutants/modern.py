"""Mutants of part 6: the modern decoder (modern.py: RMSNorm, RoPE, SwiGLU, grouped-query attention, the block and
the model) and its optimizer (optim.py: AdamW and the warmup-cosine schedule)."""

from __future__ import annotations

from autograder.qa.mutants import Edit, Mutant

M, OPT = "modern", "optim"
RMS = "modern.rms_norm"
HALF = "modern.half_precision"
ROTARY = "modern.rotary_embedding"
SWIGLU = "modern.swiglu"
GQA_ORACLE = "modern.gqa_oracle"
GQA_ROPE = "modern.gqa_rope"
GQA_CACHE = "modern.gqa_cache"
ARGUMENTS = "modern.argument_checks"
BLOCK = "modern.block"
MODEL_ORACLE = "modern.model_oracle"
STATE = "modern.model_state"
KV = "modern.model_kv_cache"
GENERATE = "modern.generate_past_context"
UNTIED = "modern.untied_output"
NO_BIASES = "modern.no_biases"
TOO_LONG = "modern.too_long"
ADAM = "optimizer.adam_steps"
FIRST_STEP = "optimizer.first_step"
DECAY = "optimizer.weight_decay"
COMPILED = "optimizer.compiled"
SCHEDULE = "optimizer.schedule_values"
SCHEDULE_GRAPH = "optimizer.schedule_graph"
SCHEDULE_ARGUMENTS = "optimizer.schedule_arguments"

MEAN_SQUARE = "tf.reduce_mean(tf.square(x32), axis=-1, keepdims=True)"
TO_FLOAT32 = "x32 = tf.cast(x, tf.float32)"
SPLIT = "first, second = tf.split(tf.cast(x, tf.float32), 2, axis=-1)"
ROTATED = "rotated = tf.concat([first * cos - second * sin, second * cos + first * sin], axis=-1)"
VALUES = 'v = split_heads(tf.einsum("btd,dhk->bthk", x, self.value_kernel))'
DEFAULT_POSITIONS = "positions = start + tf.range(tf.shape(x)[1])"
REPEATED = "tf.repeat(k, group, axis=1), tf.repeat(v, group, axis=1)"
LOGITS = "self.output_layer(self.final_norm(h))"
TIED_LOGITS = 'tf.einsum("btd,vd->btv", self.final_norm(h), self.token_embedding.embeddings)'
DECAY_STEP = "self.assign_sub(variable, variable * self.weight_decay_rate * lr)"
MATRICES_ONLY = "if len(variable.shape) >= 2:"
ALPHA = "alpha = lr * tf.sqrt(1.0 - tf.pow(self.beta_2, t)) / (1.0 - tf.pow(self.beta_1, t))"
ADAM_STEP = "self.assign_sub(variable, m * alpha / (tf.sqrt(v) + self.epsilon))"
T = "t = tf.cast(self.iterations + 1, variable.dtype)"

MUTANTS = [
    # ------------------------------------------------------------------------------------------------ RMSNorm
    Mutant(
        "rms-epsilon-outside-sqrt",
        "RMSNorm adds epsilon to the root mean square instead of to the mean square under the square root",
        Edit(M, "RMSNorm.call", patch=((f"tf.math.rsqrt({MEAN_SQUARE} + self.epsilon)",
                                        f"1.0 / (tf.sqrt({MEAN_SQUARE}) + self.epsilon)"),)),
        (RMS,),
    ),
    Mutant(
        "rms-mean-over-time",
        "RMSNorm takes the mean square over axis 1 (time, for [B, T, d]) instead of the last axis",
        Edit(M, "RMSNorm.call", patch=((MEAN_SQUARE, MEAN_SQUARE.replace("axis=-1", "axis=1")),)),
        (RMS, MODEL_ORACLE),
    ),
    Mutant(
        "rms-subtracts-mean",
        "RMSNorm subtracts the mean first, as LayerNorm does (dividing by the standard deviation)",
        Edit(M, "RMSNorm.call", patch=((TO_FLOAT32, f"{TO_FLOAT32}\n"
                                        "        x32 = x32 - tf.reduce_mean(x32, axis=-1, keepdims=True)"),)),
        (RMS, MODEL_ORACLE),
    ),
    Mutant(
        "rms-statistics-in-input-dtype",
        "RMSNorm computes the mean square in the input's dtype, so float16 squares overflow",
        Edit(M, "RMSNorm.call", patch=((TO_FLOAT32, "x32 = x"),
                                       ("tf.cast(self.scale, tf.float32)", "tf.cast(self.scale, x.dtype)"))),
        (HALF,),
    ),
    # ------------------------------------------------------------------------------------------------ RoPE
    Mutant(
        "rope-adjacent-pairs",
        "rotary_embedding pairs adjacent features (2i, 2i + 1) instead of the halves (i, i + hd/2)",
        Edit(M, "rotary_embedding", patch=(
            (SPLIT, "first, second = tf.cast(x, tf.float32)[..., 0::2], tf.cast(x, tf.float32)[..., 1::2]"),
            (ROTATED, "rotated = tf.reshape(tf.stack([first * cos - second * sin, second * cos + first * sin], "
                      "axis=-1), tf.shape(x))"),
        )),
        (ROTARY, MODEL_ORACLE),
    ),
    Mutant(
        "rope-exponent-i",
        "rotary_embedding uses the frequencies theta^(-i/hd) instead of theta^(-2i/hd)",
        Edit(M, "rotary_embedding", patch=(("-2.0 * tf.range(head_dim // 2", "-1.0 * tf.range(head_dim // 2"),)),
        (ROTARY, MODEL_ORACLE),
    ),
    Mutant(
        "rope-float32-output",
        "rotary_embedding returns its float32 result without casting it back to x's dtype",
        Edit(M, "rotary_embedding", patch=(("return tf.cast(rotated, x.dtype)", "return rotated"),)),
        (HALF,),
    ),
    Mutant(
        "rope-odd-check-missing",
        "rotary_embedding drops the given check of an odd head size (tf.split then fails with another error)",
        Edit(M, "rotary_embedding", patch=(("    if head_dim is None or head_dim % 2:\n"
                                            '        raise ValueError(f"hd (the last axis of x) must be even for the '
                                            'rotary embedding, got shape {x.shape}")\n', ""),)),
        (ARGUMENTS,),
    ),
    # ------------------------------------------------------------------------------------------------ SwiGLU
    Mutant(
        "swiglu-gate-up-swapped",
        "SwiGLU applies silu to the up branch and multiplies by the gate branch",
        Edit(M, "SwiGLU.call", patch=(("tf.nn.silu(self.gate(x)) * self.up(x)",
                                       "tf.nn.silu(self.up(x)) * self.gate(x)"),)),
        (SWIGLU, MODEL_ORACLE),
    ),
    # ------------------------------------------------------------------------------------------------ attention
    Mutant(
        "rope-on-values",
        "the attention layer rotates the values too, not only the queries and keys",
        Edit(M, "GroupedQueryAttention.call", patch=((
            VALUES, "v = rotary_embedding(split_heads(tf.einsum(\"btd,dhk->bthk\", x, self.value_kernel)), "
                    "positions, self.theta)"),)),
        (GQA_ROPE, GQA_CACHE, MODEL_ORACLE),
    ),
    Mutant(
        "rope-positions-restart-in-cache",
        "with a cache, the attention layer rotates the new tokens at 0, 1, ... instead of at start, start + 1, ...",
        Edit(M, "GroupedQueryAttention.call", patch=((DEFAULT_POSITIONS, "positions = tf.range(tf.shape(x)[1])"),)),
        (GQA_CACHE, KV, GENERATE),
    ),
    Mutant(
        "rope-ignores-given-positions",
        "the attention layer always rotates at start + range(T), ignoring the positions argument",
        Edit(M, "GroupedQueryAttention.call", patch=((f"        if positions is None:\n            {DEFAULT_POSITIONS}",
                                                      f"        {DEFAULT_POSITIONS}"),)),
        (GQA_ROPE,),
    ),
    Mutant(
        "kv-heads-tiled",
        "the attention layer tiles the key/value heads (query head j meets head j % H_kv) instead of repeating them",
        Edit(M, "GroupedQueryAttention.call", patch=((REPEATED, "tf.tile(k, [1, group, 1, 1]), "
                                                                "tf.tile(v, [1, group, 1, 1])"),)),
        (GQA_ORACLE,),
    ),
    Mutant(
        "kv-heads-not-repeated",
        "the attention layer leaves the key/value heads unrepeated, which only broadcasts for one key/value head",
        Edit(M, "GroupedQueryAttention.call", patch=((REPEATED, "k, v"),)),
        (GQA_ORACLE, GQA_ROPE, GQA_CACHE, KV),
    ),
    Mutant(
        "kv-cache-repeated-heads",
        "the attention layer repeats the key/value heads before writing them into the cache, which then needs H heads",
        Edit(M, "GroupedQueryAttention.call", patch=(
            ("        if cache is None:\n            mask",
             "        k, v = tf.repeat(k, self.num_heads // self.num_kv_heads, axis=1), "
             "tf.repeat(v, self.num_heads // self.num_kv_heads, axis=1)\n        if cache is None:\n            mask"),
            (REPEATED, "k, v"),
        )),
        (GQA_CACHE, STATE, KV),
    ),
    Mutant(
        "gqa-head-division-unchecked",
        "GroupedQueryAttention drops the given check that num_kv_heads divides num_heads",
        Edit(M, "GroupedQueryAttention.__init__", patch=((
            "        if num_heads % num_kv_heads:\n            raise ValueError(f\"num_heads ({num_heads}) must be "
            "divisible by num_kv_heads ({num_kv_heads})\")\n", ""),)),
        (ARGUMENTS,),
    ),
    # ------------------------------------------------------------------------------------------------ block, model
    Mutant(
        "mlp-norm-skipped",
        "the block feeds the MLP branch h instead of mlp_norm(h)",
        Edit(M, "ModernBlock.call", patch=(("self.mlp(self.mlp_norm(h))", "self.mlp(h)"),)),
        (BLOCK, MODEL_ORACLE),
    ),
    Mutant(
        "attention-residual-normed",
        "the block adds the attention branch to attention_norm(x) instead of to x",
        Edit(M, "ModernBlock.call", patch=(
            ("attended = self.attention(self.attention_norm(x), cache=cache, start=start)",
             "x = self.attention_norm(x)\n        attended = self.attention(x, cache=cache, start=start)"),)),
        (BLOCK, MODEL_ORACLE),
    ),
    Mutant(
        "modern-final-norm-missing",
        "the model skips the final RMSNorm before the output layer (in call and in cached_forward)",
        (Edit(M, "ModernLanguageModel.call", patch=((LOGITS, "self.output_layer(h)"),)),
         Edit(M, "ModernLanguageModel.cached_forward", patch=((LOGITS, "self.output_layer(h)"),))),
        (MODEL_ORACLE,),
    ),
    Mutant(
        "output-tied-to-embedding",
        "the model's logits are final_norm(h) E^T with the embedding matrix, as in part 4, not its output layer",
        (Edit(M, "ModernLanguageModel.call", patch=((LOGITS, TIED_LOGITS),)),
         Edit(M, "ModernLanguageModel.cached_forward", patch=((LOGITS, TIED_LOGITS),))),
        (UNTIED, MODEL_ORACLE),
    ),
    Mutant(
        "output-layer-bias",
        "the model's output layer is a Dense with a bias (the default use_bias=True)",
        Edit(M, "ModernLanguageModel.__init__", patch=(("keras.layers.Dense(vocab_size, use_bias=False, ",
                                                        "keras.layers.Dense(vocab_size, "),)),
        (NO_BIASES,),
    ),
    Mutant(
        "modern-skips-token-check",
        "the model's call drops the given token check, so more than context_length tokens are not refused",
        Edit(M, "ModernLanguageModel.call", patch=(("tokens = self._check_tokens(tokens)",
                                                    "tokens = tf.cast(tokens, tf.int32)"),)),
        (TOO_LONG,),
    ),
    # ------------------------------------------------------------------------------------------------ AdamW
    Mutant(
        "adamw-coupled-l2",
        "AdamW adds weight_decay * p to the gradient (L2 regularisation inside Adam) instead of decaying p itself",
        Edit(OPT, "AdamW.update_step",
             patch=((DECAY_STEP, "gradient = gradient + self.weight_decay_rate * variable"),)),
        (DECAY,),
    ),
    Mutant(
        "adamw-decays-vectors",
        "AdamW decays every variable, the vectors (norm scales, biases) too",
        Edit(OPT, "AdamW.update_step", patch=((MATRICES_ONLY, "if len(variable.shape) >= 1:"),)),
        (DECAY,),
    ),
    Mutant(
        "adamw-decay-after-step",
        "AdamW decays the matrices after the Adam step instead of before it",
        Edit(OPT, "AdamW.update_step", patch=((f"        {MATRICES_ONLY}\n            {DECAY_STEP}\n", ""),
                                            (ADAM_STEP, f"{ADAM_STEP}\n        {MATRICES_ONLY}\n"
                                                        f"            {DECAY_STEP}"))),
        (DECAY,),
    ),
    Mutant(
        "adamw-decay-without-lr",
        "AdamW decays by weight_decay * p, not scaled by the learning rate",
        Edit(OPT, "AdamW.update_step", patch=((DECAY_STEP, DECAY_STEP.replace(" * lr)", ")")),)),
        (DECAY,),
    ),
    Mutant(
        "adam-no-bias-correction",
        "AdamW steps by lr m / (sqrt(v) + epsilon), without the bias corrections of m and v",
        Edit(OPT, "AdamW.update_step", patch=((ALPHA, "alpha = lr"),)),
        (ADAM, FIRST_STEP),
    ),
    Mutant(
        "adam-epsilon-inside-sqrt",
        "AdamW divides by sqrt(v + epsilon) instead of sqrt(v) + epsilon",
        Edit(OPT, "AdamW.update_step", patch=(("(tf.sqrt(v) + self.epsilon)", "tf.sqrt(v + self.epsilon)"),)),
        (ADAM, FIRST_STEP),
    ),
    Mutant(
        "adam-step-count-from-zero",
        "AdamW takes t = iterations (0 at the first update) instead of iterations + 1",
        Edit(OPT, "AdamW.update_step", patch=((T, "t = tf.cast(self.iterations, variable.dtype)"),)),
        (ADAM, FIRST_STEP),
    ),
    Mutant(
        "adam-python-step-count",
        "AdamW reads the step count as a Python number (int(self.iterations)), which fails inside tf.function",
        Edit(OPT, "AdamW.update_step", patch=((T, "t = float(int(self.iterations) + 1)"),)),
        (COMPILED,),
    ),
    # ------------------------------------------------------------------------------------------------ schedule
    Mutant(
        "schedule-warmup-off-by-one",
        "the warmup counts steps from 1 (peak * (s + 1) / warmup_steps), so the first update is not at 0",
        Edit(OPT, "WarmupCosineSchedule.__call__", patch=(("warmup = self.peak * step / ",
                                                         "warmup = self.peak * (step + 1) / "),)),
        (SCHEDULE,),
    ),
    Mutant(
        "schedule-cosine-past-the-end",
        "the schedule keeps following the cosine after total_steps (back up) instead of staying at final_lr",
        Edit(OPT, "WarmupCosineSchedule.__call__", patch=(("tf.where(step < self.total_steps, cosine, self.final_lr)",
                                                         "cosine"),)),
        (SCHEDULE,),
    ),
    Mutant(
        "schedule-math-cos",
        "the schedule takes math.cos of the progress, which works on eager steps but fails inside tf.function",
        Edit(OPT, "WarmupCosineSchedule.__call__", patch=(("tf.cos(math.pi * progress)",
                                                         "math.cos(math.pi * progress)"),)),
        (SCHEDULE_GRAPH,),
    ),
    Mutant(
        "schedule-warmup-unchecked",
        "the schedule drops the given check that warmup_steps <= total_steps",
        Edit(OPT, "WarmupCosineSchedule.__init__", patch=((
            "        if warmup_steps > total_steps:\n"
            '            raise ValueError(f"warmup_steps ({warmup_steps}) must be <= total_steps ({total_steps}): a '
            'schedule with "\n                             "warmup longer than the run")\n', ""),)),
        (SCHEDULE_ARGUMENTS,),
    ),
]
