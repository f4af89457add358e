"""Mutants of part 7: n-gram language models (ngram.py: ngram_counts, NGramModel, choose_epsilon)."""

from __future__ import annotations

from autograder.qa.mutants import Edit, Mutant

M = "ngram"
COUNTS = "ngram.counts"
SPARSE = "ngram.counts_sparse"
PROBABILITIES = "ngram.probabilities"
UNSEEN = "ngram.unseen_contexts"
FIRST = "ngram.first_positions"
LIKELIHOOD = "ngram.log_likelihood"
PERPLEXITY = "ngram.perplexity"
EPSILON = "ngram.epsilon_choice"
STEP = "ngram.step"
GENERATE = "ngram.generate"
ARGUMENTS = "ngram.bad_arguments"
DTYPES = "ngram.dtypes"

DENOMINATOR = "(total + self.epsilon * self.vocab_size)"
STREAM_DENOMINATOR = "(self.totals.get(context, 0) + self.epsilon * self.vocab_size)"
KEY = "context[max(len(context) - (self.order - 1), 0) :]"
AVERAGE = "/ (len(ids) - self.order + 1)"

MUTANTS = [
    # ------------------------------------------------------------------------------------------------ counts
    Mutant(
        "counts-drop-last-window",
        "ngram_counts stops one window early (T - n windows instead of T - n + 1)",
        Edit(M, "ngram_counts", patch=(("rows = len(view) - order + 1", "rows = len(view) - order"),)),
        (COUNTS,),
    ),
    Mutant(
        "counts-token-first",
        "ngram_counts keys each n-gram by its last n - 1 tokens and counts its first (the token before the context)",
        Edit(M, "ngram_counts", patch=(("counts.setdefault(gram[:-1], {})[gram[-1]] = count",
                                        "counts.setdefault(gram[1:], {})[gram[0]] = count"),)),
        (COUNTS,),
    ),
    Mutant(
        "counts-dense-table",
        "ngram_counts fills a dense table of (max id + 1)^n counts, then reads the nonzero cells",
        Edit(M, "ngram_counts", patch=((
            "grams = Counter(zip(*(view[j : j + rows] for j in range(order)), strict=True)) if rows > 0 else Counter()",
            "dense = np.zeros([int(tokens.max(initial=0)) + 1] * order, np.int64)  # [V] * n\n"
            "    for j in range(max(rows, 0)):\n"
            "        dense[tuple(tokens[j : j + order])] += 1\n"
            "    grams = Counter({tuple(int(t) for t in g): int(dense[tuple(g)]) for g in np.argwhere(dense)})",
        ),)),
        (SPARSE,),
    ),
    Mutant(
        "totals-distinct-followers",
        "count(ctx) is the number of distinct tokens seen after the context, not the number of times it was followed",
        Edit(M, "NGramModel.fit", patch=(("sum(following.values())", "len(following)"),)),
        (PROBABILITIES, LIKELIHOOD),
    ),
    # ------------------------------------------------------------------------------------------------ smoothing
    Mutant(
        "epsilon-numerator-only",
        "epsilon is added to the count of (ctx, x) only: p = (count(ctx, x) + eps) / count(ctx)",
        (Edit(M, "NGramModel.log_probs", patch=((DENOMINATOR, "total"),)),
         Edit(M, "NGramModel.log_likelihood", patch=((STREAM_DENOMINATOR, "self.totals.get(context, 0)"),))),
        (PROBABILITIES, UNSEEN, LIKELIHOOD),
    ),
    Mutant(
        "epsilon-once-in-denominator",
        "the denominator adds epsilon once instead of epsilon V: count(ctx) + eps",
        (Edit(M, "NGramModel.log_probs", patch=((DENOMINATOR, "(total + self.epsilon)"),)),
         Edit(M, "NGramModel.log_likelihood", patch=((STREAM_DENOMINATOR,
                                                      "(self.totals.get(context, 0) + self.epsilon)"),))),
        (PROBABILITIES, UNSEEN, LIKELIHOOD),
    ),
    Mutant(
        "vocabulary-plus-unk",
        "V counts one more token than the vocabulary (an <UNK> as NLTK's vocabulary adds): count(ctx) + eps (V + 1)",
        (Edit(M, "NGramModel.log_probs", patch=((DENOMINATOR, "(total + self.epsilon * (self.vocab_size + 1))"),)),
         Edit(M, "NGramModel.log_likelihood", patch=((
             STREAM_DENOMINATOR, "(self.totals.get(context, 0) + self.epsilon * (self.vocab_size + 1))"),))),
        (PROBABILITIES, UNSEEN, LIKELIHOOD),
    ),
    Mutant(
        "vocabulary-seen-after-context",
        "V is the number of distinct tokens seen after the context instead of the vocabulary size",
        (Edit(M, "NGramModel.log_probs", patch=((DENOMINATOR, "(total + self.epsilon * len(following))"),)),
         Edit(M, "NGramModel.log_likelihood", patch=((
             STREAM_DENOMINATOR, "(self.totals.get(context, 0) + self.epsilon * len(self.counts.get(context, {})))"),
         ))),
        (PROBABILITIES, UNSEEN, LIKELIHOOD),
    ),
    Mutant(
        "context-of-n-tokens",
        "the context is the last n tokens instead of the last n - 1",
        (Edit(M, "NGramModel.log_probs", patch=((KEY, "context[max(len(context) - self.order, 0) :]"),)),
         Edit(M, "NGramModel.log_likelihood", patch=(("self.order - 1, 0.0", "self.order, 0.0"),))),
        (LIKELIHOOD, STEP),  # log_probs of exactly n - 1 ids is right; longer histories (step) are not
    ),
    Mutant(
        "context-first-ids",
        "log_probs looks up the first n - 1 ids of a longer context instead of the last",
        Edit(M, "NGramModel.log_probs", patch=((KEY, "context[: self.order - 1]"),)),
        (UNSEEN, STEP, GENERATE),
    ),
    Mutant(
        "log-base-2",
        "log-probabilities and the likelihood in bits (log base 2) instead of natural logs",
        (Edit(M, "NGramModel.log_probs", patch=(("np.log(", "np.log2("),)),
         Edit(M, "NGramModel.log_likelihood", patch=(("math.log(", "math.log2("),))),
        (PROBABILITIES, UNSEEN, LIKELIHOOD),
    ),
    Mutant(
        "log-probs-probabilities",
        "log_probs returns the probabilities, not their logs",
        Edit(M, "NGramModel.log_probs", patch=(("return np.log((counts", "return ((counts"),)),
        (PROBABILITIES, UNSEEN),
    ),
    Mutant(
        "log-probs-float64",
        "log_probs returns float64 log-probabilities",
        Edit(M, "NGramModel.log_probs", patch=((".astype(np.float32)", ""),)),
        (DTYPES,),
    ),
    # ------------------------------------------------------------------------------------------------ first positions
    Mutant(
        "short-context-refused",
        "log_probs raises for a context shorter than n - 1 instead of treating it as unseen (uniform)",
        Edit(M, "NGramModel.log_probs", patch=((
            "        key = tuple(",
            "        if len(context) < self.order - 1:\n"
            "            raise ValueError('the context needs n - 1 ids')\n"
            "        key = tuple("),)),
        (FIRST,),
    ),
    Mutant(
        "likelihood-scores-first-positions",
        "the likelihood also scores the first n - 1 positions (as unseen contexts) and perplexity averages over T",
        (Edit(M, "NGramModel.log_likelihood", patch=(("for i in range(width, len(stream)):",
                                                      "for i in range(len(stream)):"),
                                                     ("tuple(stream[i - width : i])",
                                                      "tuple(stream[max(i - width, 0) : i])"))),
         Edit(M, "NGramModel.perplexity", patch=((AVERAGE, "/ len(ids)"),))),
        (FIRST, LIKELIHOOD, PERPLEXITY),
    ),
    # ------------------------------------------------------------------------------------------------ perplexity
    Mutant(
        "perplexity-over-all-tokens",
        "perplexity divides the log-likelihood by T instead of the T - n + 1 scored positions",
        Edit(M, "NGramModel.perplexity", patch=((AVERAGE, "/ len(ids)"),)),
        (PERPLEXITY,),
    ),
    Mutant(
        "perplexity-sign",
        "perplexity is exp(+log_likelihood / (T - n + 1)) (the minus sign is missing)",
        Edit(M, "NGramModel.perplexity", patch=(("math.exp(-self.log_likelihood", "math.exp(self.log_likelihood"),)),
        (PERPLEXITY, EPSILON),
    ),
    Mutant(
        "perplexity-checks-empty-only",
        "perplexity refuses only an empty stream, so one shorter than n divides by zero instead of raising ValueError",
        Edit(M, "NGramModel.perplexity", patch=((
            "if len(ids) < self.order:", "if len(ids) < 1:"),)),
        (ARGUMENTS,),
    ),
    # ------------------------------------------------------------------------------------------------ epsilon
    Mutant(
        "choose-epsilon-highest",
        "choose_epsilon keeps the candidate of the highest validation perplexity",
        Edit(M, "choose_epsilon", patch=(("np.argmin(perplexities)", "np.argmax(perplexities)"),)),
        (EPSILON,),
    ),
    Mutant(
        "choose-epsilon-not-kept",
        "choose_epsilon leaves model.epsilon at the last candidate tried instead of the chosen one",
        Edit(M, "choose_epsilon", patch=(("    model.epsilon = best\n", ""),)),
        (EPSILON,),
    ),
    # ------------------------------------------------------------------------------------------------ generation
    Mutant(
        "step-drops-state",
        "step ignores the state: the context of each call is its new tokens only",
        Edit(M, "NGramModel.step", patch=(("history = np.concatenate([past, new], axis=1)", "history = new"),
                                          ("start = past.shape[1]", "start = 0"))),
        (STEP, GENERATE),
    ),
    Mutant(
        "step-logits-before-token",
        "step's logits at new position t come from the history before token t instead of after it",
        Edit(M, "NGramModel.step", patch=(("row[: start + t + 1]", "row[: start + t]"),)),
        (STEP, GENERATE),
    ),
]
