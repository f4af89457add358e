"""Mutants of part 1 (preprocess.py): BPE training and encoding, decoding, character ids, windows, tf.data."""

from __future__ import annotations

from autograder.qa.mutants import Edit, Mutant

M = "preprocess"
BPE_MERGES = "preprocess.bpe_merges"
BPE_ENCODE = "preprocess.bpe_encode"
BPE_ROUND_TRIP = "preprocess.bpe_round_trip"
CHAR = "preprocess.char_tokenizer"
WINDOWS = "preprocess.windows"
BATCHES = "preprocess.dataset_batches"
SHUFFLE = "preprocess.dataset_shuffle"
SHUFFLE_BUFFER = "preprocess.dataset_shuffle_buffer"
SAVE_LOAD = "preprocess.bpe_save_load"
INVALID = "preprocess.invalid_inputs"
BPE_DECODE_INVALID = "preprocess.bpe_decode_invalid"

BATCH = "batch(batch_size, drop_remainder=drop_remainder)"
HEAP_POP = ("            negative_count, best = heapq.heappop(heap)\n"
            "            if pair_counts.get(best, 0) != -negative_count:\n"
            "                continue  # stale entry: the count changed since it was pushed\n")


def _pick_best(choice: str) -> tuple[tuple[str, str], ...]:
    """A patch of BPETokenizer.train that picks each merge with `choice` over pair_counts instead of the heap."""
    return (("while 256 + len(merges) < vocab_size and heap:", "while 256 + len(merges) < vocab_size and pair_counts:"),
            (HEAP_POP, f"            best = {choice}\n"))


MUTANTS = [
    Mutant(
        "bpe-tie-largest-pair",
        "BPE training breaks count ties by the largest pair instead of the smallest",
        Edit(M, "BPETokenizer.train", patch=_pick_best("max(pair_counts, key=lambda p: (pair_counts[p], p))")),
        (BPE_MERGES,),
    ),
    Mutant(
        "bpe-tie-first-seen",
        "BPE training takes Counter.most_common(1), so ties go to the pair seen first in the text",
        Edit(M, "BPETokenizer.train", patch=_pick_best("pair_counts.most_common(1)[0][0]")),
        (BPE_MERGES,),
    ),
    Mutant(
        "bpe-unweighted-counts",
        "BPE pair counts ignore how often each chunk occurs (each distinct chunk counted once)",
        Edit(M, "BPETokenizer.train",
             patch=(("freqs = list(chunk_counts.values())", "freqs = [1] * len(chunk_counts)"),)),
        (BPE_MERGES,),
    ),
    Mutant(
        "bpe-no-pretokenize",
        "BPE training merges across chunk boundaries (the whole text is one byte sequence)",
        Edit(M, "BPETokenizer.train", patch=(("Counter(pretokenize(text))", "Counter([text])"),)),
        (BPE_MERGES,),
    ),
    Mutant(
        "bpe-counts-not-updated",
        "BPE takes the most frequent pairs of the initial count and never recounts after a merge",
        Edit(M, "BPETokenizer.train", patch=(
            ("                if pair_counts[pair] > 0:\n", "                if False:\n"),
        )),
        (BPE_MERGES,),
    ),
    Mutant(
        "bpe-encode-leftmost-pair",
        "BPE encode merges the leftmost mergeable pair instead of the one with the lowest merge rank",
        Edit(M, "BPETokenizer.encode", patch=((
            "pair = min(zip(ids, ids[1:], strict=False), key=lambda p: self.rank.get(p, len(self.rank)))",
            "pair = next((p for p in zip(ids, ids[1:], strict=False) if p in self.rank), None)"),
        )),
        (BPE_ENCODE,),
    ),
    Mutant(
        "bpe-encode-latest-merge-first",
        "BPE encode applies the most recently learned merge first (highest rank instead of lowest)",
        Edit(M, "BPETokenizer.encode", patch=((
            "pair = min(zip(ids, ids[1:], strict=False), key=lambda p: self.rank.get(p, len(self.rank)))",
            "pair = max(zip(ids, ids[1:], strict=False), key=lambda p: self.rank.get(p, -1))"),
        )),
        (BPE_ENCODE,),
    ),
    Mutant(
        "bpe-encode-no-pretokenize",
        "BPE encode works on the whole text at once, so merges apply across chunk boundaries",
        Edit(M, "BPETokenizer.encode", patch=(("for chunk in pretokenize(text):", "for chunk in [text]:"),)),
        # Caught only when a learned merge can straddle a chunk boundary; the fixtures look for such a text (best
        # effort: at the self-check seed there is one).
        (BPE_ENCODE,),
    ),
    Mutant(
        "bpe-decode-per-token",
        "BPE decode decodes each token's bytes on its own, breaking characters split across tokens",
        Edit(M, "BPETokenizer.decode", patch=((
            'b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")',
            '"".join(self.token_bytes[i].decode("utf-8", errors="replace") for i in ids)'),
        )),
        (BPE_ROUND_TRIP,),
    ),
    Mutant(
        "bpe-decode-latin1",
        "BPE decode reads the bytes as Latin-1, so every non-ASCII character comes back garbled",
        Edit(M, "BPETokenizer.decode", patch=(('.decode("utf-8", errors="replace")', '.decode("latin-1")'),)),
        (BPE_ROUND_TRIP,),
    ),
    Mutant(
        "char-ids-from-one",
        "character ids start at 1 (0 'reserved for padding'), so every id is one too large",
        Edit(M, "CharTokenizer.encode", patch=(("self.char_to_id[c] for c", "self.char_to_id[c] + 1 for c"),)),
        (CHAR,),
    ),
    Mutant(
        "char-decode-reversed",
        "character decode returns the characters in reverse order",
        Edit(M, "CharTokenizer.decode", patch=(("for i in ids)", "for i in reversed(ids))"),)),
        (CHAR,),
    ),
    Mutant(
        "windows-labels-not-shifted",
        "make_windows returns labels equal to the inputs (not shifted by one token)",
        Edit(M, "make_windows", patch=(("ids[positions + 1]", "ids[positions]"),)),
        (WINDOWS,),
    ),
    Mutant(
        "windows-labels-shifted-back",
        "make_windows shifts the labels the wrong way (the previous token instead of the next)",
        Edit(M, "make_windows", patch=(
            ("starts = np.arange(0, len(ids) - context_length, stride)",
             "starts = np.arange(1, len(ids) - context_length + 1, stride)"),
            ("return ids[positions], ids[positions + 1]", "return ids[positions], ids[positions - 1]"),
        )),
        (WINDOWS,),
    ),
    Mutant(
        "windows-stride-ignored",
        "make_windows always steps by one token (overlapping windows), ignoring the stride",
        Edit(M, "make_windows", patch=(("len(ids) - context_length, stride)", "len(ids) - context_length, 1)"),)),
        (WINDOWS,),
    ),
    Mutant(
        "windows-last-window-dropped",
        "make_windows stops one window early (off by one in the range of window starts)",
        Edit(M, "make_windows", patch=(("len(ids) - context_length, stride)", "len(ids) - context_length - 1, stride)"),
                                       )),
        (WINDOWS,),
    ),
    Mutant(
        "dataset-no-reshuffle",
        "make_dataset shuffles once, so every epoch repeats the first epoch's order",
        Edit(M, "make_dataset", patch=(("reshuffle_each_iteration=True", "reshuffle_each_iteration=False"),)),
        (SHUFFLE,),
    ),
    Mutant(
        "dataset-unseeded-shuffle",
        "make_dataset shuffles without the seed, so two runs with the same seed differ",
        Edit(M, "make_dataset", patch=(("len(inputs), seed=seed,", "len(inputs),"),)),
        (SHUFFLE,),
    ),
    Mutant(
        "dataset-remainder-always-dropped",
        "make_dataset always drops the last partial batch (drop_remainder ignored)",
        Edit(M, "make_dataset", patch=(("drop_remainder=drop_remainder)", "drop_remainder=True)"),)),
        (BATCHES,),
    ),
    Mutant(
        "dataset-labels-shuffled-separately",
        "make_dataset shuffles inputs and labels as two datasets, so label rows no longer match their inputs",
        Edit(M, "make_dataset", patch=(
            ("dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))",
             "xs, ys = tf.data.Dataset.from_tensor_slices(inputs), tf.data.Dataset.from_tensor_slices(labels)"),
            ("        dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)\n",
             "        xs = xs.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)\n"
             "        ys = ys.shuffle(len(inputs), seed=seed + 1, reshuffle_each_iteration=True)\n"
             "    dataset = tf.data.Dataset.zip((xs, ys))\n"),
        )),
        (SHUFFLE,),
    ),
    Mutant(
        "dataset-shuffle-after-batch",
        "make_dataset batches before shuffling, so it shuffles whole batches and windows never change batch",
        Edit(M, "make_dataset", patch=(
            ("from_tensor_slices((inputs, labels))", f"from_tensor_slices((inputs, labels)).{BATCH}"),
            (f"return dataset.{BATCH}.prefetch", "return dataset.prefetch"),
        )),
        (SHUFFLE,),
    ),
    Mutant(
        "bpe-encode-needs-training-state",
        "encode uses the chunk counts that only train sets, so a tokenizer made by load cannot encode",
        (Edit("preprocess", "BPETokenizer.train", patch=((
            "        return cls(merges)",
            "        tokenizer = cls(merges)\n"
            "        tokenizer.chunk_counts = chunk_counts\n"
            "        return tokenizer"),)),
         Edit("preprocess", "BPETokenizer.encode", patch=((
             "        for chunk in pretokenize(text):",
             "        assert self.chunk_counts is not None\n        for chunk in pretokenize(text):"),))),
        (SAVE_LOAD,),
    ),
    Mutant(
        "windows-need-one-more-id",
        "make_windows asks for more than T + 1 ids (a full window plus one), refusing the shortest valid stream",
        Edit("preprocess", "make_windows",
             patch=(("if len(ids) < context_length + 1:", "if len(ids) <= context_length + 1:"),)),
        (INVALID, WINDOWS),
    ),
    Mutant(
        "dataset-small-shuffle-buffer",
        "make_dataset shuffles with a buffer of one batch, so windows move only a few places from where they were",
        Edit(M, "make_dataset", patch=(("dataset.shuffle(len(inputs),", "dataset.shuffle(batch_size,"),)),
        (SHUFFLE_BUFFER,),
    ),
    Mutant(
        "bpe-decode-strict",
        "BPE decode decodes the bytes with errors='strict', so ids whose bytes are not valid UTF-8 (an early sample "
        "during BPE training) raise UnicodeDecodeError",
        Edit(M, "BPETokenizer.decode",
             patch=(('.decode("utf-8", errors="replace")', '.decode("utf-8", errors="strict")'),)),
        (BPE_DECODE_INVALID,),
    ),
]
