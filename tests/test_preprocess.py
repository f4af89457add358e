"""Part 1 reference: tokenizers against brute-force BPE, windows against numpy slices, the tf.data pipeline."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from assignment.preprocess import (  # noqa: E402
    BPETokenizer,
    CharTokenizer,
    make_dataset,
    make_windows,
    merge_pair,
    pretokenize,
)
from autograder.judge.hidden.oracles import bpe_encode_naive, bpe_train_naive  # noqa: E402

ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "éèêàçñöüßøåÉ",
    "漢字語日本中文かなの",
    "😀🙂🚀👩\u200d💻🇫🇷",
    "0123456789",
    ".,;:!?'\"-()_*#",
    " \t\n\r",
    "e\u0301\u0301",
]


def random_text(rng: np.random.Generator, length: int) -> str:
    """Random words from mixed alphabets (ASCII, accents, CJK, emoji, digits, symbols) with odd whitespace."""
    pieces = []
    while sum(map(len, pieces)) < length:
        alphabet = ALPHABETS[rng.integers(len(ALPHABETS))]
        pieces.append("".join(rng.choice(list(alphabet), int(rng.integers(1, 6)))))
        pieces.append(str(rng.choice([" ", " ", " ", "  ", "\n", "\n\n", "\t", ""])))
    return "".join(pieces)


def zipf_corpus(rng: np.random.Generator, words: int) -> str:
    """Words of a small Zipf lexicon, so that pairs repeat and frequencies tie."""
    lexicon = ["".join(rng.choice(list("abcdeéxyz語"), int(rng.integers(1, 5)))) for _ in range(30)]
    weights = 1.0 / np.arange(1, 31)
    picks = rng.choice(lexicon, words, p=weights / weights.sum())
    return "".join(w + str(rng.choice([" ", " ", "\n", ", ", "'s "])) for w in picks)


# ---------------------------------------------------------------------------------------------------- pretokenize
def test_pretokenize_follows_the_gpt2_pattern():
    assert pretokenize("Hello world's  end") == ["Hello", " world", "'s", " ", " end"]
    assert pretokenize("abc123 45!!  x\n\n") == ["abc", "123", " 45", "!!", " ", " x", "\n\n"]
    assert pretokenize("don't I'll") == ["don", "'t", " I", "'ll"]
    assert pretokenize("naïve 東京") == ["naïve", " 東京"]
    assert pretokenize("") == []


def test_pretokenize_covers_arbitrary_text():
    rng = np.random.default_rng(0)
    for _ in range(20):
        text = random_text(rng, 200)
        assert "".join(pretokenize(text)) == text


def test_merge_pair_is_left_to_right_and_non_overlapping():
    assert merge_pair([97, 97, 97], (97, 97), 256) == [256, 97]
    assert merge_pair([1, 2, 1, 2, 3], (1, 2), 300) == [300, 300, 3]
    assert merge_pair([], (1, 2), 300) == []


# ---------------------------------------------------------------------------------------------------- BPE
@pytest.mark.parametrize(
    "text, vocab_size",
    [
        ("aaaaaa", 300),
        ("abababab ab ab ba", 270),
        ("the cat sat on the mat; the end. The END!", 290),
        ("Ünïcödé 漢字漢字 🙂🙂🙂 e\u0301e\u0301", 300),
        ("", 300),
    ],
)
def test_bpe_merges_equal_brute_force_on_fixed_texts(text, vocab_size):
    tokenizer = BPETokenizer.train(text, vocab_size)
    assert tokenizer.merges == bpe_train_naive(pretokenize(text), vocab_size)
    assert tokenizer.vocab_size == 256 + len(tokenizer.merges)


@pytest.mark.parametrize("seed", range(4))
def test_bpe_merges_equal_brute_force_on_random_corpora(seed):
    rng = np.random.default_rng(seed)
    text = zipf_corpus(rng, 300) if seed % 2 == 0 else random_text(rng, 1500)
    vocab_size = 256 + int(rng.integers(30, 120))
    expected = bpe_train_naive(pretokenize(text), vocab_size)
    assert BPETokenizer.train(text, vocab_size).merges == expected


def test_bpe_counts_first_then_smallest_pair_then_stops():
    # chunks "ba", " ba", " ba", " ab": (b, a) occurs 3 times and beats the smaller pair (a, b) seen once.
    tokenizer = BPETokenizer.train("ba ba ba ab", 1000)
    b, a, space = ord("b"), ord("a"), ord(" ")
    assert tokenizer.merges == [
        (b, a),  # 256 = "ba", count 3
        (space, 256),  # 257 = " ba", count 2
        (space, a),  # count 1 tie with (a, b): (32, 97) < (97, 98)
        (258, b),  # 259 = " ab"
    ]  # then no adjacent pair is left, well before vocab_size
    assert tokenizer.vocab_size == 260


def test_bpe_tie_breaks_on_the_smallest_pair():
    # Every pair occurs once: (32, 99) " c" < (97, 98) "ab" < (99, 100) "cd".
    assert BPETokenizer.train("ab cd", 258).merges == [(32, 99), (97, 98)]


def test_bpe_merges_never_cross_chunks():
    assert BPETokenizer.train("a.a.a.a.a.", 300).merges == []  # every chunk is one byte
    text = zipf_corpus(np.random.default_rng(5), 400)
    chunks = set(pretokenize(text))
    tokenizer = BPETokenizer.train(text, 400)
    for token in tokenizer.token_bytes[256:]:
        assert any(token in chunk.encode("utf-8") for chunk in chunks), token


def test_bpe_encode_equals_brute_force_and_round_trips_unicode():
    rng = np.random.default_rng(1)
    tokenizer = BPETokenizer.train(zipf_corpus(rng, 300) + random_text(rng, 800), 420)
    for _ in range(15):
        text = random_text(rng, int(rng.integers(0, 300)))
        ids = tokenizer.encode(text)
        assert ids == bpe_encode_naive(pretokenize(text), tokenizer.merges)
        assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for i in ids)
        assert tokenizer.decode(ids) == text
        assert tokenizer.decode(np.asarray(ids, dtype=np.int32)) == text


def test_bpe_encode_applies_merges_by_rank():
    tokenizer = BPETokenizer([(98, 99), (97, 98)])  # 256 = "bc" learned before 257 = "ab"
    assert tokenizer.encode("abc") == [97, 256]
    assert tokenizer.encode("ab") == [257]
    assert tokenizer.decode([97, 256]) == "abc"


def test_bpe_decode_replaces_invalid_utf8():
    tokenizer = BPETokenizer()
    assert tokenizer.decode([0xFF, 104, 105]) == "\ufffdhi"
    assert tokenizer.decode(list("é".encode())) == "é"
    with pytest.raises(ValueError, match="ids"):
        tokenizer.decode([256])


def test_bpe_save_load_round_trip(tmp_path):
    text = zipf_corpus(np.random.default_rng(2), 200)
    tokenizer = BPETokenizer.train(text, 300)
    path = tmp_path / "bpe.json"
    tokenizer.save(path)
    assert json.loads(path.read_text(encoding="utf-8"))["merges"] == [list(m) for m in tokenizer.merges]
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tokenizer.merges and loaded.vocab_size == tokenizer.vocab_size
    assert loaded.encode(text) == tokenizer.encode(text)
    CharTokenizer.train("abc").save(tmp_path / "char.json")
    with pytest.raises(ValueError, match="bpe"):
        BPETokenizer.load(tmp_path / "char.json")


def test_bpe_rejects_a_vocabulary_smaller_than_the_bytes():
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train("ab ab", 255)
    assert BPETokenizer.train("ab ab", 256).merges == []


# ---------------------------------------------------------------------------------------------------- characters
def test_char_tokenizer_vocabulary_and_round_trip(tmp_path):
    text = "hello, wörld 🙂\n"
    tokenizer = CharTokenizer.train(text)
    vocab = sorted(set(text))
    assert tokenizer.vocab_size == len(vocab)
    assert tokenizer.encode("low 🙂") == [vocab.index(c) for c in "low 🙂"]
    assert tokenizer.decode(tokenizer.encode(text)) == text
    tokenizer.save(tmp_path / "char.json")
    loaded = CharTokenizer.load(tmp_path / "char.json")
    assert loaded.encode(text) == tokenizer.encode(text) and loaded.decode([0, 1]) == tokenizer.decode([0, 1])


def test_char_tokenizer_rejects_unknown_characters():
    tokenizer = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match="'z'"):
        tokenizer.encode("abz")
    with pytest.raises(ValueError, match="ids"):
        tokenizer.decode([3])
    with pytest.raises(ValueError, match="text"):
        CharTokenizer.train("")


# ---------------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize("length, context_length, stride", [(10, 3, None), (23, 5, 2), (23, 3, 7), (23, 22, None)])
def test_windows_are_slices_shifted_by_one(length, context_length, stride):
    ids = np.random.default_rng(length).integers(0, 1000, length)
    inputs, labels = make_windows(ids, context_length, stride)
    step = stride or context_length
    starts = [s for s in range(0, length, step) if s + context_length + 1 <= length]
    assert inputs.shape == labels.shape == (len(starts), context_length)
    assert inputs.dtype == labels.dtype == np.int32
    for n, s in enumerate(starts):
        np.testing.assert_array_equal(inputs[n], ids[s : s + context_length])
        np.testing.assert_array_equal(labels[n], ids[s + 1 : s + context_length + 1])


def test_windows_accept_lists_and_reject_bad_arguments():
    inputs, labels = make_windows([5, 6, 7, 8, 9], 2, stride=1)
    np.testing.assert_array_equal(inputs, [[5, 6], [6, 7], [7, 8]])
    np.testing.assert_array_equal(labels, [[6, 7], [7, 8], [8, 9]])
    with pytest.raises(ValueError, match="context_length"):
        make_windows(np.arange(4), 4)
    with pytest.raises(ValueError, match="context_length"):
        make_windows(np.arange(4), 0)
    with pytest.raises(ValueError, match="stride"):
        make_windows(np.arange(10), 3, stride=0)
    with pytest.raises(ValueError, match="ids"):
        make_windows(np.zeros((3, 4), dtype=np.int32), 2)


# ---------------------------------------------------------------------------------------------------- dataset
def windows_of(n: int, t: int = 4) -> tuple[np.ndarray, np.ndarray]:
    stream = np.random.default_rng(n).permutation(10_000)[: n * t + 1]
    return make_windows(stream, t)


def epoch(dataset) -> tuple[np.ndarray, np.ndarray, list[int]]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys), [len(x) for x in xs]


def test_dataset_batches_in_order_without_shuffle():
    inputs, labels = windows_of(11)
    for drop, sizes in ((True, [4, 4]), (False, [4, 4, 3])):
        dataset = make_dataset(inputs, labels, 4, shuffle=False, drop_remainder=drop)
        assert dataset.element_spec[0].dtype.name == "int32" and dataset.element_spec[1].dtype.name == "int32"
        x, y, got_sizes = epoch(dataset)
        assert got_sizes == sizes
        np.testing.assert_array_equal(x, inputs[: sum(sizes)])
        np.testing.assert_array_equal(y, labels[: sum(sizes)])


def test_dataset_shuffle_is_seeded_keeps_pairs_and_changes_each_epoch():
    inputs, labels = windows_of(24)
    dataset = make_dataset(inputs, labels, 5, seed=7, drop_remainder=False)
    first, second = epoch(dataset), epoch(dataset)
    again = epoch(make_dataset(inputs, labels, 5, seed=7, drop_remainder=False))
    rows = sorted(map(tuple, np.concatenate([inputs, labels], axis=1).tolist()))
    for x, y, _ in (first, second):
        assert sorted(map(tuple, np.concatenate([x, y], axis=1).tolist())) == rows
        np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    assert not np.array_equal(first[0], inputs)
    assert not np.array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[0], again[0])
    other_seed = epoch(make_dataset(inputs, labels, 5, seed=8, drop_remainder=False))
    assert not np.array_equal(first[0], other_seed[0])


def test_dataset_rejects_bad_arguments():
    inputs, labels = windows_of(3)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(inputs, labels, 0)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(inputs, labels, 4)  # drop_remainder would leave no batch
    with pytest.raises(ValueError, match="shape"):
        make_dataset(inputs, labels[:, :-1], 2)
