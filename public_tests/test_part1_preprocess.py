"""Part 1, visible tests: tokenizers and windows on tiny, hand-checkable inputs."""

import numpy as np


def test_char_tokenizer_ids_are_positions_in_the_sorted_vocabulary(preprocess):
    tokenizer = preprocess.CharTokenizer.train("hello")
    assert tokenizer.chars == ["e", "h", "l", "o"]
    assert tokenizer.encode("hello") == [1, 0, 2, 2, 3]
    assert tokenizer.decode([3, 2, 0]) == "ole"


def test_bpe_learns_the_only_repeated_pair(preprocess):
    tokenizer = preprocess.BPETokenizer.train("aaaa", vocab_size=257)
    assert tokenizer.merges == [(97, 97)]  # "a" is byte 97; the merge creates id 256
    assert tokenizer.vocab_size == 257


def test_bpe_encode_decode_round_trip(preprocess):
    tokenizer = preprocess.BPETokenizer.train("aaaa", vocab_size=257)
    assert tokenizer.encode("aaaa") == [256, 256]
    assert tokenizer.decode([256, 97]) == "aaa"


def test_windows_shift_the_labels_by_one(preprocess):
    inputs, labels = preprocess.make_windows(np.arange(10), context_length=3)
    np.testing.assert_array_equal(inputs, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    np.testing.assert_array_equal(labels, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert inputs.dtype == np.int32 and labels.dtype == np.int32


def test_dataset_yields_int32_batches(preprocess):
    inputs, labels = preprocess.make_windows(np.arange(20), context_length=4)
    batch_inputs, batch_labels = next(iter(preprocess.make_dataset(inputs, labels, batch_size=2, seed=0)))
    assert batch_inputs.shape == (2, 4) and batch_labels.shape == (2, 4)
    assert batch_inputs.dtype.name == "int32"
    np.testing.assert_array_equal(batch_labels.numpy()[:, :-1], batch_inputs.numpy()[:, 1:])
