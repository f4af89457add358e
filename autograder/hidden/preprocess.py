"""Hidden tests of part 1 (preprocess.py): BPE and character tokenizers, windows and the tf.data pipeline."""

from __future__ import annotations

import numpy as np

from ..registry import TestFailure, hidden_test
from .common import as_array, expect_dict, expect_error, expect_errors

PART = "preprocess"


def _id_list(value, what: str) -> np.ndarray:
    return as_array(value, what, "iu", (None,)).astype(np.int64)


def _lists(reply: dict, keys: tuple[str, ...], n: int, what: str) -> None:
    for key in keys:
        if not isinstance(reply.get(key), list) or len(reply[key]) != n:
            raise TestFailure(f"{what}: the worker returned an unexpected reply.")


@hidden_test("BPETokenizer.train learns the reference merges on hidden corpora (ties -> smallest pair)", PART, 2.0)
def test_bpe_merges(ctx) -> None:
    for i, case in enumerate(ctx.fixtures["preprocess/bpe_cases"]):
        what = f"BPETokenizer.train(hidden corpus #{i + 1} of {len(case['text'])} characters, " \
               f"vocab_size={case['vocab_size']})"
        reply = expect_dict(ctx.call("preprocess.bpe_train", text=case["text"], vocab_size=case["vocab_size"]),
                            ("merges", "vocab_size"), what)
        merges = as_array(reply["merges"], f"merges of {what}", "iu", (None, 2))
        expected = ctx.fixtures[f"preprocess/bpe_merges/{i}"]
        if len(merges) != len(expected):
            raise TestFailure(f"{what}: learned {len(merges)} merges, expected {len(expected)} (merge until "
                              "vocab_size is reached or no adjacent pair is left).")
        wrong = np.flatnonzero((merges != expected).any(axis=1))
        if wrong.size:
            raise TestFailure(
                f"{what}: merge #{int(wrong[0])} (0-based) differs from the expected one; each merge must take the "
                "most frequent adjacent pair within pre-tokenized chunks (counts weighted by chunk frequency, ties "
                "broken by the smallest (left, right) pair) and pair counts must be updated after every merge."
            )
        if reply["vocab_size"] != 256 + len(expected):
            raise TestFailure(f"{what}: vocab_size must be 256 + number of merges.")


def _bpe_codec(ctx) -> tuple[dict, list]:
    texts = ctx.fixtures["preprocess/unicode_texts"]
    case = ctx.fixtures["preprocess/bpe_cases"][0]
    reply = expect_dict(ctx.call("preprocess.bpe_codec", train_text=case["text"], vocab_size=case["vocab_size"],
                                 texts=texts), ("ids", "decoded", "loaded_ids", "loaded_decoded"), "BPETokenizer")
    _lists(reply, ("ids", "decoded", "loaded_ids", "loaded_decoded"), len(texts), "BPETokenizer")
    return reply, texts


@hidden_test("BPETokenizer decode(encode(text)) == text on hidden Unicode text (emoji, CJK, combining marks)", PART,
             1.0)
def test_bpe_round_trip(ctx) -> None:
    reply, texts = _bpe_codec(ctx)
    for i, (text, decoded) in enumerate(zip(texts, reply["decoded"], strict=False)):
        if decoded != text:
            raise TestFailure(f"BPETokenizer: decode(encode(text)) differs from text for hidden text #{i + 1} "
                              f"({len(text)} characters); ids are UTF-8 bytes plus merges, decode joins the bytes.")


@hidden_test("BPETokenizer.encode gives the reference ids (merges applied by rank within each chunk)", PART, 1.5)
def test_bpe_encode(ctx) -> None:
    reply, texts = _bpe_codec(ctx)
    for i, ids in enumerate(reply["ids"]):
        ids = _id_list(ids, f"BPETokenizer.encode(hidden text #{i + 1})")
        expected = ctx.fixtures[f"preprocess/bpe_ids/{i}"]
        if len(ids) != len(expected) or np.any(ids != expected):
            raise TestFailure(f"BPETokenizer.encode(hidden text #{i + 1}): got {len(ids)} ids, expected "
                              f"{len(expected)}, or different ids; apply merges in learned order (lowest rank first) "
                              "inside each pre-tokenized chunk.")


@hidden_test("BPETokenizer.save then BPETokenizer.load gives a tokenizer that encodes and decodes the same", PART, 0.5)
def test_bpe_save_load(ctx) -> None:
    reply, texts = _bpe_codec(ctx)
    rows = zip(reply["ids"], reply["loaded_ids"], reply["loaded_decoded"], strict=True)
    for i, (ids, loaded, decoded) in enumerate(rows):
        same = np.array_equal(_id_list(ids, "ids"), _id_list(loaded, "ids after load"))
        if not same or decoded != texts[i]:
            raise TestFailure(f"BPETokenizer.load(path) after save(path) encodes or decodes hidden text #{i + 1} "
                              "differently from the original tokenizer.")


@hidden_test("CharTokenizer: vocabulary = sorted characters, exact ids, round trip, save/load, unknown -> ValueError",
             PART, 1.0)
def test_char_tokenizer(ctx) -> None:
    texts = ctx.fixtures["preprocess/char_texts"]
    reply = expect_dict(ctx.call("preprocess.char_codec", train_text=ctx.fixtures["preprocess/char_train"],
                                 texts=texts, unknown_text=ctx.fixtures["preprocess/char_unknown"]),
                        ("vocab_size", "ids", "decoded", "loaded_ids", "unknown_error"), "CharTokenizer")
    _lists(reply, ("ids", "decoded", "loaded_ids"), len(texts), "CharTokenizer")
    if reply["vocab_size"] != ctx.fixtures["preprocess/char_vocab_size"]:
        raise TestFailure("CharTokenizer.vocab_size must be the number of distinct characters of the training text.")
    for i, text in enumerate(texts):
        ids = _id_list(reply["ids"][i], f"CharTokenizer.encode(hidden text #{i + 1})")
        if not np.array_equal(ids, ctx.fixtures[f"preprocess/char_ids/{i}"]):
            raise TestFailure(f"CharTokenizer.encode(hidden text #{i + 1}): ids must be the positions of the "
                              "characters in the sorted set of training characters.")
        if reply["decoded"][i] != text:
            raise TestFailure(f"CharTokenizer: decode(encode(text)) differs from text for hidden text #{i + 1}.")
        if not np.array_equal(_id_list(reply["loaded_ids"][i], "ids after load"), ids):
            raise TestFailure("CharTokenizer.load(path) after save(path) encodes differently from the original.")
    expect_error(reply["unknown_error"], "ValueError", "CharTokenizer.encode of a character outside the vocabulary")


@hidden_test("make_windows: int32 [N, T] inputs and labels shifted by one, stride, only full windows", PART, 1.5)
def test_windows(ctx) -> None:
    ids = ctx.fixtures["preprocess/window_ids"]
    for i, case in enumerate(ctx.fixtures["preprocess/window_cases"]):
        t, stride = case["context_length"], case["stride"]
        what = f"make_windows(ids of length {len(ids)}, context_length={t}, stride={stride})"
        reply = ctx.call("preprocess.windows", ids=ids, context_length=t, stride=stride)
        if not isinstance(reply, dict):
            raise TestFailure(f"{what}: the worker returned an unexpected reply.")
        if "error" in reply:
            raise TestFailure(f"{what} raised {reply['error']}.")
        expected_inputs = ctx.fixtures[f"preprocess/window_inputs/{i}"]
        for key, expected in (("inputs", expected_inputs), ("labels", ctx.fixtures[f"preprocess/window_labels/{i}"])):
            got = as_array(reply.get(key), f"{key} of {what}", "i", expected.shape)
            if got.dtype != np.int32:
                raise TestFailure(f"{key} of {what}: expected dtype int32, got {got.dtype}.")
            if not np.array_equal(got, expected):
                raise TestFailure(
                    f"{key} of {what}: wrong values; inputs[n] = ids[n*stride : n*stride + T] and labels[n] = "
                    "ids[n*stride + 1 : n*stride + T + 1] (labels are the inputs shifted by one token)."
                )


@hidden_test("preprocess rejects invalid input with ValueError (vocab_size < 256, fewer than T + 1 ids)", PART, 0.5)
def test_invalid_inputs(ctx) -> None:
    expect_errors(ctx.call("preprocess.invalid_inputs"), "preprocess argument checks")


def _epochs(ctx, what: str, **kwargs) -> list:
    inputs, labels = ctx.fixtures["preprocess/dataset_inputs"], ctx.fixtures["preprocess/dataset_labels"]
    reply = expect_dict(ctx.call("preprocess.dataset", inputs=inputs, labels=labels, **kwargs), ("epochs",), what)
    epochs = reply["epochs"]
    if not isinstance(epochs, list) or len(epochs) != kwargs["epochs"]:
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    t = inputs.shape[1]
    for epoch in epochs:
        epoch = expect_dict(epoch, ("inputs", "labels", "batch_sizes", "dtypes", "ranks"), what)
        if epoch["ranks"] != ["2,2"]:
            raise TestFailure(f"{what}: every element must be a pair (inputs [B, T], labels [B, T]).")
        if epoch["dtypes"] != ["int32,int32"]:
            raise TestFailure(f"{what}: inputs and labels must be int32 tensors.")
        as_array(epoch["inputs"], f"inputs of {what}", "iu", (None, t))
        as_array(epoch["labels"], f"labels of {what}", "iu", (None, t))
    return epochs


def _expected_sizes(n: int, batch_size: int, drop_remainder: bool) -> list[int]:
    sizes = [batch_size] * (n // batch_size)
    return sizes if drop_remainder or n % batch_size == 0 else sizes + [n % batch_size]


@hidden_test("make_dataset without shuffle yields int32 (inputs [B, T], labels [B, T]) batches in order", PART, 1.0)
def test_dataset_batches(ctx) -> None:
    inputs, labels = ctx.fixtures["preprocess/dataset_inputs"], ctx.fixtures["preprocess/dataset_labels"]
    batch = ctx.fixtures["preprocess/dataset_batch_size"]
    for drop in (True, False):
        what = f"make_dataset(inputs [{len(inputs)}, T], batch_size={batch}, shuffle=False, drop_remainder={drop})"
        (epoch,) = _epochs(ctx, what, batch_size=batch, shuffle=False, seed=0, drop_remainder=drop, epochs=1)
        sizes = _expected_sizes(len(inputs), batch, drop)
        if epoch["batch_sizes"] != sizes:
            raise TestFailure(f"{what}: expected batch sizes {sizes}, got {epoch['batch_sizes']}.")
        n = sum(sizes)
        if not (np.array_equal(epoch["inputs"], inputs[:n]) and np.array_equal(epoch["labels"], labels[:n])):
            raise TestFailure(f"{what}: batches must contain the (inputs, labels) rows in their original order.")


@hidden_test("make_dataset shuffles with the seed: pairs kept, same seed same order, new order each epoch", PART, 1.0)
def test_dataset_shuffle(ctx) -> None:
    inputs, labels = ctx.fixtures["preprocess/dataset_inputs"], ctx.fixtures["preprocess/dataset_labels"]
    batch, seed = ctx.fixtures["preprocess/dataset_batch_size"], ctx.fixtures["preprocess/dataset_seed"]
    what = f"make_dataset(inputs [{len(inputs)}, T], batch_size={batch}, shuffle=True, seed=..., drop_remainder=False)"
    kwargs = dict(batch_size=batch, shuffle=True, seed=seed, drop_remainder=False)
    first, second = _epochs(ctx, what, epochs=2, **kwargs)
    (again,) = _epochs(ctx, what, epochs=1, **kwargs)
    rows = {tuple(x) + tuple(y) for x, y in zip(inputs.tolist(), labels.tolist(), strict=False)}
    for epoch in (first, second):
        got = [tuple(x) + tuple(y) for x, y in zip(epoch["inputs"].tolist(), epoch["labels"].tolist(), strict=False)]
        if len(got) != len(rows) or set(got) != rows:
            raise TestFailure(f"{what}: one epoch must contain every (inputs, labels) pair exactly once, with each "
                              "label row still next to its input row.")
    if np.array_equal(first["inputs"], inputs):
        raise TestFailure(f"{what}: the rows came out in their original order; shuffle them.")
    if not np.array_equal(first["inputs"], again["inputs"]):
        raise TestFailure(f"{what}: two datasets built with the same seed gave different orders.")
    if np.array_equal(first["inputs"], second["inputs"]):
        raise TestFailure(f"{what}: the second epoch repeated the first epoch's order (reshuffle each iteration).")
    sizes = _expected_sizes(len(inputs), batch, False)
    if any(epoch["batch_sizes"] != sizes for epoch in (first, second)):
        raise TestFailure(f"{what}: expected batches of sizes {sizes} in every epoch (shuffle windows, then batch).")
    # Shuffling windows (not whole batches) mixes rows of different unshuffled batches into one batch. A uniform
    # shuffle of the 12 rows keeps the three batches intact with probability 5! 5! 2! 2 / 12! < 1.3e-4 per epoch, so
    # both epochs do so with probability < 2e-8.
    home = {row: i // batch for i, row in enumerate(map(tuple, inputs.tolist()))}

    def mixes(epoch: dict) -> bool:
        rows = [home[tuple(row)] for row in epoch["inputs"].tolist()]
        starts = np.cumsum([0] + sizes)
        return any(len(set(rows[a:b])) > 1 for a, b in zip(starts[:-1], starts[1:], strict=True))

    if not (mixes(first) or mixes(second)):
        raise TestFailure(f"{what}: every batch holds the windows of one unshuffled batch: shuffle the windows before "
                          "batching, not the batches.")
