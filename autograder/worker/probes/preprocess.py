"""Probes for part 1 (preprocess.py): tokenizers, windows and the tf.data pipeline."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from .common import error_name, to_numpy
from .registry import probe


def _ids(ids) -> np.ndarray:
    return np.asarray(list(ids), dtype=np.int64)


@probe("preprocess.bpe_train")
def bpe_train(sub, text: str, vocab_size: int) -> dict:
    """{"merges": int [M, 2] in learned order, "vocab_size": int} of BPETokenizer.train(text, vocab_size)."""
    tokenizer = sub.module("preprocess").BPETokenizer.train(text, int(vocab_size))
    merges = np.asarray([[int(a), int(b)] for a, b in tokenizer.merges], dtype=np.int64).reshape(-1, 2)
    return {"merges": merges, "vocab_size": int(tokenizer.vocab_size)}


def _save_load(tokenizer, cls):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokenizer.json")
        tokenizer.save(path)
        return cls.load(path)


@probe("preprocess.bpe_codec")
def bpe_codec(sub, train_text: str, vocab_size: int, texts: list) -> dict:
    """Train on train_text, then encode and decode each text, also with a saved-and-loaded copy.

    Returns {"ids": [int array per text], "decoded": [str], "loaded_ids": [int array], "loaded_decoded": [str]}.
    """
    cls = sub.module("preprocess").BPETokenizer
    tokenizer = cls.train(train_text, int(vocab_size))
    ids = [_ids(tokenizer.encode(t)) for t in texts]
    loaded = _save_load(tokenizer, cls)
    loaded_ids = [_ids(loaded.encode(t)) for t in texts]
    return {
        "ids": ids,
        "decoded": [tokenizer.decode([int(i) for i in x]) for x in ids],
        "loaded_ids": loaded_ids,
        "loaded_decoded": [loaded.decode([int(i) for i in x]) for x in ids],
    }


@probe("preprocess.char_codec")
def char_codec(sub, train_text: str, texts: list, unknown_text: str) -> dict:
    """CharTokenizer.train(train_text): vocab_size, ids and decoded texts, a saved-and-loaded copy's ids, and the
    exception raised when encoding a character outside the vocabulary."""
    cls = sub.module("preprocess").CharTokenizer
    tokenizer = cls.train(train_text)
    ids = [_ids(tokenizer.encode(t)) for t in texts]
    loaded = _save_load(tokenizer, cls)
    return {
        "vocab_size": int(tokenizer.vocab_size),
        "ids": ids,
        "decoded": [tokenizer.decode([int(i) for i in x]) for x in ids],
        "loaded_ids": [_ids(loaded.encode(t)) for t in texts],
        "unknown_error": error_name(lambda: tokenizer.encode(unknown_text)),
    }


@probe("preprocess.invalid_inputs")
def invalid_inputs(sub) -> dict:
    """Name of the exception raised by each invalid call (None when nothing was raised).

    The "valid:" cases are correct calls that must not raise: argument checks are given code, so they only earn points
    together with a working implementation.
    """
    preprocess = sub.module("preprocess")
    return {
        "valid: BPETokenizer.train, vocab_size 260": error_name(lambda: preprocess.BPETokenizer.train("ab ab", 260)),
        "valid: make_windows with T + 1 ids": error_name(lambda: preprocess.make_windows(np.arange(5), 4)),
        "BPETokenizer.train with vocab_size < 256": error_name(lambda: preprocess.BPETokenizer.train("ab ab", 200)),
        "make_windows with fewer than T + 1 ids": error_name(lambda: preprocess.make_windows(np.arange(4), 4)),
    }


@probe("preprocess.dataset")
def dataset(sub, inputs: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool, seed: int,
            drop_remainder: bool, epochs: int) -> dict:
    """Iterate make_dataset(...) `epochs` times; per epoch the concatenated batches, batch sizes and dtypes."""
    preprocess = sub.module("preprocess")
    ds = preprocess.make_dataset(inputs, labels, int(batch_size), shuffle=bool(shuffle), seed=int(seed),
                                 drop_remainder=bool(drop_remainder))
    out = []
    for _ in range(int(epochs)):
        xs, ys, sizes, dtypes, ranks = [], [], [], set(), set()
        for x, y in ds:
            x, y = to_numpy(x), to_numpy(y)
            xs.append(x)
            ys.append(y)
            sizes.append(int(x.shape[0]) if x.ndim else 0)
            dtypes.add(f"{x.dtype.name},{y.dtype.name}")
            ranks.add(f"{x.ndim},{y.ndim}")
        out.append({
            "inputs": np.concatenate(xs).astype(np.int64) if xs else np.zeros((0, 0), np.int64),
            "labels": np.concatenate(ys).astype(np.int64) if ys else np.zeros((0, 0), np.int64),
            "batch_sizes": sizes,
            "dtypes": sorted(dtypes),
            "ranks": sorted(ranks),
        })
    return {"epochs": out}


@probe("preprocess.bpe_decode")
def bpe_decode(sub, merges: list, ids: list) -> dict:
    """{"decoded": [str]}: BPETokenizer(merges).decode(ids[i]) for each id list, as the worker returns it."""
    tokenizer = sub.module("preprocess").BPETokenizer([tuple(int(i) for i in m) for m in merges])
    return {"decoded": [tokenizer.decode([int(i) for i in row]) for row in ids]}
