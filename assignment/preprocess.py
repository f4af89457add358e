"""Part 1: tokenizers (characters and byte-level BPE), training windows and the tf.data input pipeline.

Text becomes a stream of integer token ids, the stream becomes (inputs [N, T], labels [N, T]) windows whose labels are
the inputs shifted by one token, and the windows become shuffled int32 batches for training.
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

PRETOKENIZE_PATTERN = re.compile(
    r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
)
"""GPT-2's pre-tokenization regex written for Python's `re`: contractions, runs of letters, runs of digits and runs
of other symbols (each with at most one leading space), then whitespace. Letters are `[^\\W\\d_]` (word characters
that are neither digits nor underscore) in place of GPT-2's `\\p{L}`. Every character falls in one alternative, so the
chunks always join back to the text."""


def pretokenize(text: str) -> list[str]:
    """Split text into the chunks BPE works within; `"".join(pretokenize(text)) == text`.

    `pretokenize("Hello world's  end")` is `["Hello", " world", "'s", " ", " end"]`: a space before a word stays
    with the word, and a run of spaces gives its last space to the word that follows.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return PRETOKENIZE_PATTERN.findall(text)


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` in `ids`, scanning left to right, by `new_id`.

    `merge_pair([97, 97, 97], (97, 97), 256)` is `[256, 97]`.
    """
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def _check_ids(ids: Sequence[int], vocab_size: int) -> list[int]:
    """ids (list, numpy array or tensor) as a list of ints; ValueError unless 1-D integers in [0, vocab_size)."""
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"ids must be a 1-D sequence of integer token ids, got shape {array.shape} and {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        raise ValueError(f"ids must be in [0, vocab_size={vocab_size}), got values in [{array.min()}, {array.max()}]")
    return array.astype(np.int64).tolist()


def _read_json(path: str | os.PathLike, kind: str) -> dict:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get("type") != kind:
        raise ValueError(f"{os.fspath(path)!r} is not a saved {kind} tokenizer")
    return data


def _write_json(path: str | os.PathLike, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of the training text's characters.

    Attributes:
        chars: list[str], the vocabulary; id = position in this list.
        vocab_size: int, len(chars).
    """

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be a non-empty sequence of distinct single characters")
        self.chars = chars
        self.vocab_size = len(chars)
        self.char_to_id = {c: i for i, c in enumerate(chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is `sorted(set(text))`."""
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty str")
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        """text -> list of ids, one per character; a character outside the vocabulary raises ValueError."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        unknown = set(text) - self.char_to_id.keys()
        if unknown:
            raise ValueError(f"character {min(unknown)!r} is not in the tokenizer's vocabulary")
        # BEGIN SOLUTION (part preprocess): Map each character of `text` to its id with `self.char_to_id`.
        return [self.char_to_id[c] for c in text]
        # END SOLUTION

    def decode(self, ids: Sequence[int]) -> str:
        """Sequence of ids (list, numpy or tensor values) -> the text they stand for."""
        ids = _check_ids(ids, self.vocab_size)
        # BEGIN SOLUTION (part preprocess): Join the characters `self.chars[i]` of the ids into one string.
        return "".join(self.chars[i] for i in ids)
        # END SOLUTION

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary to a JSON file."""
        _write_json(path, {"type": "char", "chars": self.chars})

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """The tokenizer saved at `path` by `save`."""
        return cls(_read_json(path, "char")["chars"])


class BPETokenizer:
    """Byte-level BPE: ids 0..255 are the bytes of the UTF-8 text, merge number i creates id 256 + i.

    Attributes:
        merges: list[tuple[int, int]], the learned merges in order; merge i replaces the pair by id 256 + i.
        vocab_size: int, 256 + len(merges).
        token_bytes: list[bytes], the bytes each id stands for.
    """

    def __init__(self, merges: Sequence[tuple[int, int]] = ()):
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.vocab_size = 256 + len(self.merges)
        self.token_bytes = [bytes([i]) for i in range(256)]
        for new_id, (a, b) in enumerate(self.merges, start=256):
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merge {new_id - 256} uses an id that does not exist yet: {(a, b)}")
            self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
        self.rank = {pair: i for i, pair in enumerate(self.merges)}

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        """Learn merges on `text` until the vocabulary has `vocab_size` ids or no adjacent pair is left.

        Pre-tokenizes the text, counts how often each distinct chunk occurs, and represents each distinct chunk as its
        list of byte ids. Each step merges the most frequent adjacent pair (counts weighted by chunk frequency, every
        position counted, so "aaa" counts (a, a) twice; ties -> the smallest (left_id, right_id)) into a new id in
        every chunk. Pair counts are updated incrementally: only the
        chunks that contain the merged pair are touched, through an index pair -> chunks that contain it.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 256:
            raise ValueError(f"vocab_size must be an int >= 256 (the byte vocabulary), got {vocab_size!r}")
        # BEGIN SOLUTION (part preprocess): Learn `merges` with incremental pair counts and return `cls(merges)`.
        chunk_counts = Counter(pretokenize(text))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        freqs = list(chunk_counts.values())
        pair_counts: Counter = Counter()
        where = defaultdict(set)  # pair -> indices of the words that contain it
        for w, (ids, freq) in enumerate(zip(words, freqs, strict=True)):
            for pair in zip(ids, ids[1:], strict=False):
                pair_counts[pair] += freq
                where[pair].add(w)
        heap = [(-count, pair) for pair, count in pair_counts.items()]  # max count first, then smallest pair
        heapq.heapify(heap)

        merges: list[tuple[int, int]] = []
        while 256 + len(merges) < vocab_size and heap:
            negative_count, best = heapq.heappop(heap)
            if pair_counts.get(best, 0) != -negative_count:
                continue  # stale entry: the count changed since it was pushed
            new_id = 256 + len(merges)
            merges.append(best)
            changed = set()
            for w in where.pop(best):
                old, freq = words[w], freqs[w]
                new = merge_pair(old, best, new_id)
                words[w] = new
                for pair in zip(old, old[1:], strict=False):
                    pair_counts[pair] -= freq
                    changed.add(pair)
                for pair in zip(new, new[1:], strict=False):
                    pair_counts[pair] += freq
                    changed.add(pair)
                for pair in set(zip(old, old[1:], strict=False)) - set(zip(new, new[1:], strict=False)):
                    where[pair].discard(w)
                for pair in zip(new, new[1:], strict=False):
                    where[pair].add(w)
            for pair in changed:
                if pair_counts[pair] > 0:
                    heapq.heappush(heap, (-pair_counts[pair], pair))
                else:
                    del pair_counts[pair]
                    where.pop(pair, None)
        return cls(merges)
        # END SOLUTION

    def encode(self, text: str) -> list[int]:
        """text -> ids: pre-tokenize, then in each chunk repeatedly merge the adjacent pair of lowest merge rank."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        # BEGIN SOLUTION (part preprocess): Encode each chunk of `pretokenize(text)` by applying `self.rank`-lowest merges first.
        encoded: dict[str, list[int]] = {}  # chunks repeat a lot: encode each distinct chunk once
        out: list[int] = []
        for chunk in pretokenize(text):
            if chunk not in encoded:
                ids = list(chunk.encode("utf-8"))
                while len(ids) > 1:
                    pair = min(zip(ids, ids[1:], strict=False), key=lambda p: self.rank.get(p, len(self.rank)))
                    if pair not in self.rank:
                        break
                    ids = merge_pair(ids, pair, 256 + self.rank[pair])
                encoded[chunk] = ids
            out.extend(encoded[chunk])
        return out
        # END SOLUTION

    def decode(self, ids: Sequence[int]) -> str:
        """ids -> text: the bytes of the ids joined, decoded as UTF-8 with errors="replace"."""
        ids = _check_ids(ids, self.vocab_size)
        # BEGIN SOLUTION (part preprocess): Join `self.token_bytes` of the ids and decode them as UTF-8 (errors="replace").
        return b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")
        # END SOLUTION

    def save(self, path: str | os.PathLike) -> None:
        """Write the merges to a JSON file."""
        _write_json(path, {"type": "bpe", "merges": [list(pair) for pair in self.merges]})

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """The tokenizer saved at `path` by `save`."""
        return cls([tuple(pair) for pair in _read_json(path, "bpe")["merges"]])


def make_windows(
    ids: Sequence[int] | np.ndarray, context_length: int, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a token stream into training windows.

    Args:
        ids: 1-D token ids, length L >= context_length + 1.
        context_length: T, the window length.
        stride: S, offset between consecutive windows; default T (windows do not overlap).

    Returns:
        (inputs, labels), int32 arrays [N, T] with N = (L - T - 1) // S + 1 full windows:
        inputs[n] = ids[n*S : n*S + T] and labels[n] = ids[n*S + 1 : n*S + T + 1].
    """
    if isinstance(context_length, bool) or not isinstance(context_length, (int, np.integer)) or context_length < 1:
        raise ValueError(f"context_length must be an int >= 1, got {context_length!r}")
    stride = context_length if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an int >= 1 or None, got {stride!r}")
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise ValueError(f"ids must be a 1-D sequence of integer token ids, got shape {ids.shape} and {ids.dtype}")
    if len(ids) < context_length + 1:
        raise ValueError(f"ids has {len(ids)} tokens, context_length={context_length} needs at least "
                         f"{context_length + 1}")
    if ids.min() < 0 or ids.max() > np.iinfo(np.int32).max:
        raise ValueError("ids must be non-negative and fit in int32")
    ids = ids.astype(np.int32)
    # BEGIN SOLUTION (part preprocess): Build int32 `inputs` and `labels` [N, T] from the window starts 0, S, 2S, ...
    starts = np.arange(0, len(ids) - context_length, stride)
    positions = starts[:, None] + np.arange(context_length)[None, :]  # [N, T]
    return ids[positions], ids[positions + 1]
    # END SOLUTION


def make_dataset(
    inputs: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """The tf.data pipeline over windows: optional seeded shuffle (a new order each epoch), batch, prefetch.

    Args:
        inputs, labels: int arrays [N, T] from `make_windows`.
        batch_size: B.
        shuffle: shuffle the N windows (buffer of all N) with `seed`, reshuffling every iteration.
        seed: the shuffle seed; the same seed gives the same sequence of epoch orders.
        drop_remainder: drop the last batch when it has fewer than B windows.

    Returns:
        A dataset of (inputs [B, T] int32, labels [B, T] int32).
    """
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    if inputs.ndim != 2 or inputs.shape != labels.shape:
        raise ValueError(f"inputs and labels must both have shape [N, T], got {inputs.shape} and {labels.shape}")
    if inputs.size and (inputs.dtype.kind not in "iu" or labels.dtype.kind not in "iu"):
        raise ValueError(f"inputs and labels must hold integer token ids, got {inputs.dtype} and {labels.dtype}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if drop_remainder and len(inputs) < batch_size:
        raise ValueError(f"only {len(inputs)} windows: with drop_remainder=True, batch_size={batch_size} "
                         "would give no batch")
    inputs, labels = inputs.astype(np.int32), labels.astype(np.int32)
    # BEGIN SOLUTION (part preprocess): Slice (inputs, labels) into a Dataset, shuffle with `seed` if asked, batch, prefetch.
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle:
        dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    # END SOLUTION
