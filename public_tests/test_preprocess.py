"""Part 1, visible tests: tokenizers against the handout's rules (a naive BPE trainer written here), windows, datasets.

Every expected value comes from the handout: hand-checked examples, or a slow, obviously correct implementation of
the same rule written in this file.
"""

from collections import Counter

import numpy as np
import pytest

# Small texts for BPE: overlapping runs ("aaa"), ties between pairs, chunks that repeat, a pair that only occurs
# across chunk boundaries, non-ASCII characters (several bytes each).
BPE_TEXTS = [
    "aaa",
    "aaaa aaa aa",
    "abab cdcd",
    "the cat sat on the mat; the cat ate the rat",
    "a b a b a b a b",
    "low lower lowest slow slower newest widest",
    "héllo wörld héllo wörld ça va 123 1234",
]


def naive_bpe_merges(pretokenize, text: str, vocab_size: int) -> list[tuple[int, int]]:
    """The handout's training rule, recounting every pair from scratch after each merge.

    Chunks of `pretokenize(text)` counted; pairs counted over adjacent positions (overlapping: "aaa" has the pair
    (97, 97) twice), weighted by chunk frequency; the most frequent pair wins, ties go to the smallest pair; a merge
    replaces non-overlapping occurrences left to right.
    """
    chunks = Counter(pretokenize(text))
    words = {chunk: list(chunk.encode("utf-8")) for chunk in chunks}
    merges: list[tuple[int, int]] = []
    while 256 + len(merges) < vocab_size:
        counts: Counter = Counter()
        for chunk, ids in words.items():
            for i in range(len(ids) - 1):
                counts[(ids[i], ids[i + 1])] += chunks[chunk]
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        new_id = 255 + len(merges)
        for chunk, ids in words.items():
            merged, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(ids[i])
                    i += 1
            words[chunk] = merged
    return merges


def naive_bpe_encode(pretokenize, merges: list[tuple[int, int]], text: str) -> list[int]:
    """The handout's encoding rule: per chunk, merge the adjacent pair of lowest merge rank until none applies."""
    rank = {pair: i for i, pair in enumerate(merges)}
    out: list[int] = []
    for chunk in pretokenize(text):
        ids = list(chunk.encode("utf-8"))
        while True:
            ranked = [(rank[(a, b)], i) for i, (a, b) in enumerate(zip(ids, ids[1:], strict=False)) if (a, b) in rank]
            if not ranked:
                break
            best_rank = min(ranked)[0]
            pair, merged, i = merges[best_rank], [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                    merged.append(256 + best_rank)
                    i += 2
                else:
                    merged.append(ids[i])
                    i += 1
            ids = merged
        out.extend(ids)
    return out


# ---------------------------------------------------------------------------------------------------- characters
def test_char_tokenizer_ids_are_positions_in_the_sorted_vocabulary(preprocess):
    tokenizer = preprocess.CharTokenizer.train("hello")
    assert tokenizer.chars == ["e", "h", "l", "o"]
    assert tokenizer.encode("hello") == [1, 0, 2, 2, 3]
    assert tokenizer.decode([3, 2, 0]) == "ole"


def test_char_tokenizer_round_trip_and_unknown_character(preprocess):
    text = "the quick brown fox, ça va? 42!"
    tokenizer = preprocess.CharTokenizer.train(text)
    ids = tokenizer.encode(text)
    assert ids == [sorted(set(text)).index(c) for c in text]
    assert tokenizer.decode(ids) == text
    with pytest.raises(ValueError):
        tokenizer.encode("Z")


# ---------------------------------------------------------------------------------------------------- BPE
def test_bpe_learns_the_only_repeated_pair(preprocess):
    tokenizer = preprocess.BPETokenizer.train("aaaa", vocab_size=257)
    assert tokenizer.merges == [(97, 97)]  # "a" is byte 97; the merge creates id 256
    assert tokenizer.vocab_size == 257


@pytest.mark.parametrize("text", BPE_TEXTS)
def test_bpe_training_matches_a_naive_trainer(preprocess, text):
    vocab_size = 256 + 12
    expected = naive_bpe_merges(preprocess.pretokenize, text, vocab_size)
    tokenizer = preprocess.BPETokenizer.train(text, vocab_size=vocab_size)
    assert [tuple(m) for m in tokenizer.merges] == expected
    assert tokenizer.vocab_size == 256 + len(expected)


def test_bpe_ties_go_to_the_smallest_pair(preprocess):
    # "ba" and "dc" each occur twice: (98, 97) < (100, 99), whatever comes first in the text.
    assert preprocess.BPETokenizer.train("dcdc baba", vocab_size=257).merges == [(98, 97)]


def test_bpe_counts_are_weighted_by_chunk_frequency(preprocess):
    # The chunk " xy" occurs three times: (32, 120) and (120, 121) count 3 each (the tie goes to the smaller), more
    # than (97, 98), which occurs twice in the single chunk "abab".
    assert preprocess.BPETokenizer.train("abab xy xy xy", vocab_size=257).merges == [(32, 120)]


def test_bpe_vocab_size_256_learns_nothing_and_below_raises(preprocess):
    assert preprocess.BPETokenizer.train("abab", vocab_size=256).merges == []
    with pytest.raises(ValueError):
        preprocess.BPETokenizer.train("abc", vocab_size=255)


def test_bpe_encode_applies_the_lowest_rank_merge_first(preprocess):
    # Merge 0 is "bc" (id 256), merge 1 is "ab" (id 257): "abc" must become a + (bc), not (ab) + c.
    tokenizer = preprocess.BPETokenizer([(98, 99), (97, 98)])
    assert tokenizer.encode("abc") == [97, 256]
    assert tokenizer.encode("ab") == [257]


def test_bpe_encode_never_merges_across_chunks(preprocess):
    tokenizer = preprocess.BPETokenizer([(97, 32)])  # "a " would straddle the chunks "a" and " b"
    assert tokenizer.encode("a b") == [97, 32, 98]


@pytest.mark.parametrize("text", BPE_TEXTS[1:])
def test_bpe_encode_matches_a_naive_encoder_and_round_trips(preprocess, text):
    tokenizer = preprocess.BPETokenizer.train(text, vocab_size=256 + 12)
    other = "the slowest cat ate héllo aaaaa 12345 " + text[::-1]
    merges = [tuple(m) for m in tokenizer.merges]
    for sample in (text, other):
        ids = tokenizer.encode(sample)
        assert ids == naive_bpe_encode(preprocess.pretokenize, merges, sample)
        assert tokenizer.decode(ids) == sample


def test_bpe_decode_joins_bytes_before_decoding(preprocess):
    tokenizer = preprocess.BPETokenizer()
    assert tokenizer.decode(list("é€".encode())) == "é€"  # one byte per token: characters span tokens
    assert tokenizer.decode([0xC3]) == "\ufffd"  # an incomplete character becomes the replacement character


def test_bpe_loaded_tokenizer_encodes_as_the_trained_one(preprocess, tmp_path):
    text = "low lower lowest slow slower"
    tokenizer = preprocess.BPETokenizer.train(text, vocab_size=260)
    tokenizer.save(tmp_path / "bpe.json")
    loaded = preprocess.BPETokenizer.load(tmp_path / "bpe.json")
    assert loaded.encode(text) == tokenizer.encode(text)


# ---------------------------------------------------------------------------------------------------- windows
def test_windows_shift_the_labels_by_one(preprocess):
    inputs, labels = preprocess.make_windows(np.arange(10), context_length=3)
    np.testing.assert_array_equal(inputs, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    np.testing.assert_array_equal(labels, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert inputs.dtype == np.int32 and labels.dtype == np.int32


@pytest.mark.parametrize("length, context_length, stride", [(10, 3, 2), (11, 4, 1), (4, 3, None), (17, 4, 3)])
def test_windows_follow_the_formula(preprocess, length, context_length, stride):
    ids = np.arange(100, 100 + length)
    inputs, labels = preprocess.make_windows(ids, context_length, stride)
    s = context_length if stride is None else stride
    starts = [n * s for n in range(length) if n * s + context_length + 1 <= length]  # every full window
    np.testing.assert_array_equal(inputs, [ids[i:i + context_length] for i in starts])
    np.testing.assert_array_equal(labels, [ids[i + 1:i + context_length + 1] for i in starts])


def test_windows_need_context_length_plus_one_ids(preprocess):
    inputs, labels = preprocess.make_windows(np.arange(4), context_length=3)  # the shortest stream: one window
    np.testing.assert_array_equal(inputs, [[0, 1, 2]])
    np.testing.assert_array_equal(labels, [[1, 2, 3]])
    with pytest.raises(ValueError):
        preprocess.make_windows(np.arange(3), context_length=3)


# ---------------------------------------------------------------------------------------------------- datasets
def _epoch(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = list(dataset)
    return (np.concatenate([x.numpy() for x, _ in batches]), np.concatenate([y.numpy() for _, y in batches]))


def test_dataset_yields_int32_batches(preprocess):
    inputs, labels = preprocess.make_windows(np.arange(20), context_length=4)
    batch_inputs, batch_labels = next(iter(preprocess.make_dataset(inputs, labels, batch_size=2, seed=0)))
    assert batch_inputs.shape == (2, 4) and batch_labels.shape == (2, 4)
    assert batch_inputs.dtype.name == "int32"
    np.testing.assert_array_equal(batch_labels.numpy()[:, :-1], batch_inputs.numpy()[:, 1:])


def test_dataset_keeps_the_last_partial_batch_unless_dropped(preprocess):
    inputs, labels = preprocess.make_windows(np.arange(23), context_length=2)  # 11 windows
    kept = [len(x) for x, _ in preprocess.make_dataset(inputs, labels, 4, shuffle=False, drop_remainder=False)]
    dropped = [len(x) for x, _ in preprocess.make_dataset(inputs, labels, 4, shuffle=False, drop_remainder=True)]
    assert kept == [4, 4, 3] and dropped == [4, 4]


def test_dataset_shuffles_every_window_with_its_label(preprocess):
    n = 256
    inputs, labels = preprocess.make_windows(np.arange(2 * n + 1), context_length=2)
    dataset = preprocess.make_dataset(inputs, labels, batch_size=4, seed=3)
    first, first_labels = _epoch(dataset)
    second, _ = _epoch(dataset)
    again, _ = _epoch(preprocess.make_dataset(inputs, labels, batch_size=4, seed=3))
    np.testing.assert_array_equal(first_labels, first + 1)  # each label row still belongs to its window
    np.testing.assert_array_equal(np.sort(first[:, 0]), inputs[:, 0])  # every window exactly once
    np.testing.assert_array_equal(again, first)  # the same seed gives the same order
    assert not np.array_equal(second, first), "each epoch must have a new order"  # P(equal) = 1 / 256!
    order = first[:, 0] // 2
    # A shuffle over all N windows: the rank correlation of (new position, old position) is about N(0, 1/(N - 1)),
    # so |r| > 0.35 has probability about 2e-8 (z = 5.6) for N = 256; a small buffer keeps r near 1.
    assert abs(np.corrcoef(order, np.arange(n))[0, 1]) < 0.35, "shuffle with a buffer that holds all N windows"
    blocks = [set(order[i:i + 4] // 4) for i in range(0, n, 4)]
    assert any(len(b) > 1 for b in blocks), "shuffle the windows before batching them"
