"""Hidden tests of part 1 (preprocess.py): BPE and character tokenizers, windows and the tf.data pipeline.

Hidden inputs are drawn here (pseudo-words in several scripts with punctuation, numbers and odd spacing) and expected
values come from the naive oracles in `oracles.py`; both are recorded when the fixtures are built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from autograder.judge.hidden.common import as_array, expect_dict, expect_error, expect_errors
from autograder.judge.hidden.oracles import bpe_encode_leftmost, bpe_encode_naive, bpe_train_naive
from autograder.judge.registry import TestFailure, hidden_test

PART = "preprocess"


def _pretokenize(text: str) -> list[str]:
    """The given pre-tokenizer of the reference (build time only: it runs inside make functions)."""
    from assignment.preprocess import pretokenize

    return pretokenize(text)


# ---------------------------------------------------------------------------------------------------- hidden texts
SYLLABLES = ["ka", "lo", "mi", "re", "su", "ta", "né", "ü", "ß", "ol", "ar", "λο", "γα", "ми", "ра", "語", "の", "🙂",
             "th", "e", "an", "in", "ä", "ø", "ch"]
PUNCTUATION = [",", ".", "!", "?", " —", ";", ":"]
CONTRACTIONS = ["'s", "'ll", "'t", "'re", "'ve", "'d", "'m"]


def _corpus(rng: np.random.Generator, words: int, lexicon_size: int) -> str:
    """Zipf-distributed pseudo-words in several scripts with punctuation, numbers, contractions and odd spacing."""
    lexicon = ["".join(rng.choice(SYLLABLES, int(rng.integers(1, 4)))) for _ in range(lexicon_size)]
    weights = 1.0 / np.arange(1, lexicon_size + 1)
    weights /= weights.sum()
    parts = []
    for _ in range(words):
        word = str(rng.choice(lexicon, p=weights))
        r = rng.random()
        if r < 0.08:
            word += str(rng.choice(CONTRACTIONS))
        elif r < 0.2:
            word += str(rng.choice(PUNCTUATION))
        elif r < 0.25:
            word = str(int(rng.integers(0, 2000)))
        if rng.random() < 0.15:
            word = word.capitalize()
        parts.append(word + str(rng.choice([" "] * 12 + ["  ", "\n", "\n\n", "\t"])))
    return "".join(parts)


UNICODE_EXTRAS = ["e\u0301", "👩\u200d💻", "漢字かな", "Ωμέγα", "ﬁ", "\r\n", "  ", "\t", "😀!", "100%", "x²"]


def _encode_texts(rng: np.random.Generator, merges: list, pretokenize: Callable[[str], list[str]],
                  count: int = 4, tries: int = 300) -> list[str]:
    """`count` hidden Unicode texts (then "") for encode and round trips.

    Texts are redrawn until one tells the learned merge order from leftmost-first merging (a classic bug that short
    random texts do not always reveal). A text where encoding the whole text at once differs from per-chunk encoding
    is also sought, but exists only when some learned merge can straddle a chunk boundary (such as an apostrophe
    pair after punctuation), so that one is best effort.
    """
    def draw() -> str:
        pieces = _corpus(rng, 12, 10).split(" ") + list(rng.choice(UNICODE_EXTRAS, 5))
        return " ".join(str(p) for p in rng.permutation(pieces))

    def separates(text: str) -> tuple[bool, bool]:
        right = bpe_encode_naive(pretokenize(text), merges)
        return (bpe_encode_leftmost(pretokenize(text), merges) != right,
                bpe_encode_naive([text], merges) != right)

    texts = [draw() for _ in range(count)]
    flags = [separates(t) for t in texts]
    for _ in range(tries):
        found = [any(column) for column in zip(*flags, strict=True)]
        if all(found):
            break
        text = draw()
        new = separates(text)
        if any(f and not seen for f, seen in zip(new, found, strict=True)):
            plain = [i for i, f in enumerate(flags) if not any(f)]  # a text that separates nothing makes room
            if plain:
                texts[plain[0]], flags[plain[0]] = text, new
            else:
                texts.append(text)
                flags.append(new)
    if not any(leftmost for leftmost, _ in flags):
        text = next((t for t in _overlapping_merge_texts(merges) if separates(t)[0]), None)
        if text is None:
            raise RuntimeError("no hidden encode text separates the learned merge order from leftmost merging; "
                               "rebuild with another seed")
        texts.append(text)
    return texts + [""]


def _overlapping_merge_texts(merges: list) -> Iterator[str]:
    """Texts a + b + c for learned merges (a, b) and (b, c) where (b, c) was learned first: the learned order merges
    b with c, leftmost-first merging merges a with b. Only whole UTF-8 texts are yielded."""
    vocab = {i: bytes([i]) for i in range(256)}
    for rank, (left, right) in enumerate(merges):
        vocab[256 + rank] = vocab[left] + vocab[right]
    for first, (b, c) in enumerate(merges):
        for a, b2 in merges[first + 1:]:
            if b2 == b:
                try:
                    yield (vocab[a] + vocab[b] + vocab[c]).decode("utf-8")
                except UnicodeDecodeError:
                    continue


# ---------------------------------------------------------------------------------------------------- tests
def _id_list(value, what: str) -> np.ndarray:
    return as_array(value, what, "iu", (None,)).astype(np.int64)


def _lists(reply: dict, keys: tuple[str, ...], n: int, what: str) -> None:
    for key in keys:
        if not isinstance(reply.get(key), list) or len(reply[key]) != n:
            raise TestFailure(f"{what}: the worker returned an unexpected reply.")


def _bpe_cases(ctx) -> list[dict]:
    """Three hidden corpora with their vocabulary sizes (the last one too small to reach its vocab_size)."""
    return ctx.hidden("bpe_cases", lambda: [
        {"text": _corpus(ctx.rng, 260, 40), "vocab_size": 256 + int(ctx.rng.integers(40, 70))},
        {"text": _corpus(ctx.rng, 160, 25), "vocab_size": 256 + int(ctx.rng.integers(20, 40))},
        {"text": _corpus(ctx.rng, 12, 6), "vocab_size": 1000},
    ])


def _expected_merges(ctx, case: dict, key: str) -> np.ndarray:
    return ctx.expected(key, lambda: np.asarray(bpe_train_naive(_pretokenize(case["text"]), case["vocab_size"]),
                                                dtype=np.int64).reshape(-1, 2))


@hidden_test("BPETokenizer.train learns the reference merges on hidden corpora (ties -> smallest pair)", PART, 2.0)
def test_bpe_merges(ctx) -> None:
    for i, case in enumerate(_bpe_cases(ctx)):
        what = f"BPETokenizer.train(hidden corpus #{i + 1} of {len(case['text'])} characters, " \
               f"vocab_size={case['vocab_size']})"
        expected = _expected_merges(ctx, case, f"merges/{i}")
        reply = expect_dict(ctx.call("preprocess.bpe_train", text=case["text"], vocab_size=case["vocab_size"]),
                            ("merges", "vocab_size"), what)
        merges = as_array(reply["merges"], f"merges of {what}", "iu", (None, 2))
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


def _bpe_codec(ctx) -> tuple[dict, list, np.ndarray]:
    """Train on a hidden corpus, then encode hidden Unicode texts: (reply, texts, the corpus's merges)."""
    case = ctx.hidden("codec_case", lambda: {"text": _corpus(ctx.rng, 260, 40),
                                             "vocab_size": 256 + int(ctx.rng.integers(40, 70))})
    merges = _expected_merges(ctx, case, "codec_merges")
    texts = ctx.hidden("texts", lambda: _encode_texts(ctx.rng, [tuple(m) for m in merges.tolist()], _pretokenize))
    reply = expect_dict(ctx.call("preprocess.bpe_codec", train_text=case["text"], vocab_size=case["vocab_size"],
                                 texts=texts), ("ids", "decoded", "loaded_ids", "loaded_decoded"), "BPETokenizer")
    _lists(reply, ("ids", "decoded", "loaded_ids", "loaded_decoded"), len(texts), "BPETokenizer")
    return reply, texts, merges


@hidden_test("BPETokenizer decode(encode(text)) == text on hidden Unicode text (emoji, CJK, combining marks)", PART,
             1.0)
def test_bpe_round_trip(ctx) -> None:
    reply, texts, _ = _bpe_codec(ctx)
    for i, (text, decoded) in enumerate(zip(texts, reply["decoded"], strict=False)):
        if decoded != text:
            raise TestFailure(f"BPETokenizer: decode(encode(text)) differs from text for hidden text #{i + 1} "
                              f"({len(text)} characters); ids are UTF-8 bytes plus merges, decode joins the bytes.")


def _invalid_utf8_ids(rng: np.random.Generator) -> dict:
    """Merges and id lists whose bytes are not valid UTF-8: lone continuation bytes and bytes never valid in UTF-8,
    a multi-byte character cut short (also inside a merged token), each between ASCII letters."""
    euro = "\u20ac".encode()  # e2 82 ac
    merges = [[euro[0], euro[1]]]  # id 256 holds the first two bytes of the euro sign
    letters = rng.integers(ord("a"), ord("z") + 1, 8).tolist()
    return {"merges": merges, "ids": [
        [letters[0], int(rng.integers(0x80, 0xC0)), letters[1]],
        [letters[2], int(rng.choice([0xC0, 0xC1, 0xF5, 0xFE, 0xFF])), int(rng.integers(0x80, 0xC0)), letters[3]],
        [letters[4], 256, letters[5]],
        [letters[6], euro[0], euro[1], letters[7], 256, euro[2]],
    ]}


@hidden_test("BPETokenizer.decode turns bytes that are not valid UTF-8 into replacement characters", PART, 1.0)
def test_bpe_decode_invalid(ctx) -> None:
    case = ctx.hidden("case", lambda: _invalid_utf8_ids(ctx.rng))
    reply = expect_dict(ctx.call("preprocess.bpe_decode", merges=case["merges"], ids=case["ids"]), ("decoded",),
                        "BPETokenizer.decode")
    _lists(reply, ("decoded",), len(case["ids"]), "BPETokenizer.decode")
    tokens = {i: bytes([i]) for i in range(256)} | {256: bytes(case["merges"][0])}
    for i, (ids, decoded) in enumerate(zip(case["ids"], reply["decoded"], strict=True)):
        expected = b"".join(tokens[t] for t in ids).decode("utf-8", errors="replace")
        if decoded != expected:
            raise TestFailure(f"BPETokenizer.decode(hidden ids #{i + 1}, whose bytes are not valid UTF-8): expected "
                              "the text with U+FFFD for the invalid bytes (bytes.decode('utf-8', errors='replace'), "
                              "so that decoding a model's samples never raises).")


@hidden_test("BPETokenizer.encode gives the reference ids (merges applied by rank within each chunk)", PART, 1.5)
def test_bpe_encode(ctx) -> None:
    reply, texts, merges = _bpe_codec(ctx)
    pairs = [tuple(m) for m in merges.tolist()]
    for i, ids in enumerate(reply["ids"]):
        ids = _id_list(ids, f"BPETokenizer.encode(hidden text #{i + 1})")
        expected = ctx.expected(f"ids/{i}", lambda text=texts[i]: np.asarray(
            bpe_encode_naive(_pretokenize(text), pairs), dtype=np.int64))
        how = "apply merges in learned order (lowest rank first) inside each pre-tokenized chunk."
        if len(ids) != len(expected):
            raise TestFailure(f"BPETokenizer.encode(hidden text #{i + 1}): got {len(ids)} ids, expected "
                              f"{len(expected)}; {how}")
        if np.any(ids != expected):
            first = int(np.flatnonzero(ids != expected)[0])
            raise TestFailure(f"BPETokenizer.encode(hidden text #{i + 1}): the right number of ids ({len(ids)}), "
                              f"but they differ from id #{first + 1} on; {how}")


@hidden_test("BPETokenizer.save then BPETokenizer.load gives a tokenizer that encodes and decodes the same", PART, 0.5)
def test_bpe_save_load(ctx) -> None:
    reply, texts, _ = _bpe_codec(ctx)
    rows = zip(reply["ids"], reply["loaded_ids"], reply["loaded_decoded"], strict=True)
    for i, (ids, loaded, decoded) in enumerate(rows):
        same = np.array_equal(_id_list(ids, "ids"), _id_list(loaded, "ids after load"))
        if not same or decoded != texts[i]:
            raise TestFailure(f"BPETokenizer.load(path) after save(path) encodes or decodes hidden text #{i + 1} "
                              "differently from the original tokenizer.")


@hidden_test("CharTokenizer: vocabulary = sorted characters, exact ids, round trip, save/load, unknown -> ValueError",
             PART, 1.0)
def test_char_tokenizer(ctx) -> None:
    train = ctx.hidden("train", lambda: _corpus(ctx.rng, 80, 20) + "".join(UNICODE_EXTRAS))
    vocab = sorted(set(train))
    texts = ctx.hidden("texts", lambda: ["".join(ctx.rng.choice(vocab, int(n))) for n in (1, 17, 60)])
    unknown = texts[1] + "\u2603" + texts[0]  # a snowman: not in the training text
    reply = expect_dict(ctx.call("preprocess.char_codec", train_text=train, texts=texts, unknown_text=unknown),
                        ("vocab_size", "ids", "decoded", "loaded_ids", "unknown_error"), "CharTokenizer")
    _lists(reply, ("ids", "decoded", "loaded_ids"), len(texts), "CharTokenizer")
    if reply["vocab_size"] != len(vocab):
        raise TestFailure("CharTokenizer.vocab_size must be the number of distinct characters of the training text.")
    for i, text in enumerate(texts):
        ids = _id_list(reply["ids"][i], f"CharTokenizer.encode(hidden text #{i + 1})")
        if not np.array_equal(ids, [vocab.index(c) for c in text]):
            raise TestFailure(f"CharTokenizer.encode(hidden text #{i + 1}): ids must be the positions of the "
                              "characters in the sorted set of training characters.")
        if reply["decoded"][i] != text:
            raise TestFailure(f"CharTokenizer: decode(encode(text)) differs from text for hidden text #{i + 1}.")
        if not np.array_equal(_id_list(reply["loaded_ids"][i], "ids after load"), ids):
            raise TestFailure("CharTokenizer.load(path) after save(path) encodes differently from the original.")
    expect_error(reply["unknown_error"], "ValueError", "CharTokenizer.encode of a character outside the vocabulary")


@hidden_test("make_windows: int32 [N, T] inputs and labels shifted by one, stride, only full windows", PART, 3.0)
def test_windows(ctx) -> None:
    ids = ctx.hidden("ids", lambda: ctx.rng.integers(0, 500, 23).astype(np.int32))
    for t, stride in ((4, None), (5, 2), (3, 7), (22, None)):
        what = f"make_windows(ids of length {len(ids)}, context_length={t}, stride={stride})"
        reply = ctx.call("call", module="preprocess", function="make_windows", args=[ids, t, stride])
        pair = reply.get("value") if isinstance(reply, dict) else None
        if not isinstance(pair, list) or len(pair) != 2:
            raise TestFailure(f"{what}: expected a pair (inputs, labels).")
        starts = np.arange(0, len(ids) - t, stride or t)
        expected_pair = (np.stack([ids[s : s + t] for s in starts]), np.stack([ids[s + 1 : s + t + 1] for s in starts]))
        for key, got, expected in zip(("inputs", "labels"), pair, expected_pair, strict=True):
            got = as_array(got, f"{key} of {what}", "i", expected.shape)
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


def _dataset_rows(ctx) -> tuple[np.ndarray, np.ndarray]:
    """12 windows of 5 distinct hidden ids and their labels (shifted by one)."""
    stream = ctx.hidden("stream", lambda: ctx.rng.permutation(100_000)[:61].astype(np.int32))
    inputs = np.stack([stream[5 * n : 5 * n + 5] for n in range(12)])
    return inputs, np.stack([stream[5 * n + 1 : 5 * n + 6] for n in range(12)])


DATASET_BATCH_SIZE = 5


def _epochs(ctx, what: str, **kwargs) -> list:
    inputs, labels = _dataset_rows(ctx)
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
    inputs, labels = _dataset_rows(ctx)
    batch = DATASET_BATCH_SIZE
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
    inputs, labels = _dataset_rows(ctx)
    batch, seed = DATASET_BATCH_SIZE, ctx.hidden("seed", lambda: int(ctx.rng.integers(0, 2**31 - 1)))
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


SHUFFLE_ROWS = 60
SHUFFLE_MAX_CORRELATION = 0.6
"""A uniform shuffle of N = 60 windows gives a rank correlation between a window's place in the data and its place in
the epoch with standard deviation 1 / sqrt(N - 1) = 0.13: |rho| > 0.6 (4.6 standard deviations) has probability below
1e-5 per epoch, and the test fails only when both epochs exceed it (below 1e-10). A shuffle buffer of b windows keeps
every window close to its origin: with b = 6 (one batch) rho was above 0.89 in each of 2000 simulated epochs, with
b = 15 its mean is 0.76; a buffer of half the windows or more passes."""


@hidden_test("make_dataset shuffles all the windows (a small shuffle buffer keeps them nearly in order)", PART, 0.5)
def test_dataset_shuffle_buffer(ctx) -> None:
    stream = ctx.hidden("stream", lambda: ctx.rng.permutation(100_000)[: SHUFFLE_ROWS * 4 + 1].astype(np.int32))
    inputs = np.stack([stream[4 * n : 4 * n + 4] for n in range(SHUFFLE_ROWS)])
    labels = np.stack([stream[4 * n + 1 : 4 * n + 5] for n in range(SHUFFLE_ROWS)])
    seed = ctx.hidden("seed", lambda: int(ctx.rng.integers(0, 2**31 - 1)))
    what = f"make_dataset(inputs [{SHUFFLE_ROWS}, 4], batch_size=6, shuffle=True, seed=..., drop_remainder=False)"
    reply = expect_dict(ctx.call("preprocess.dataset", inputs=inputs, labels=labels, batch_size=6, shuffle=True,
                                 seed=seed, drop_remainder=False, epochs=2), ("epochs",), what)
    origin = {tuple(row): i for i, row in enumerate(inputs.tolist())}
    correlations = []
    for epoch in reply["epochs"] if isinstance(reply["epochs"], list) else []:
        rows = as_array(expect_dict(epoch, ("inputs",), what)["inputs"], f"inputs of {what}", "iu", (None, 4))
        places = [origin.get(tuple(row)) for row in rows.tolist()]
        if sorted(p for p in places if p is not None) != list(range(SHUFFLE_ROWS)):
            raise TestFailure(f"{what}: one epoch must contain every window exactly once.")
        correlations.append(np.corrcoef(places, np.arange(SHUFFLE_ROWS))[0, 1])
    if len(correlations) != 2:
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    if min(abs(c) for c in correlations) > SHUFFLE_MAX_CORRELATION:
        raise TestFailure(f"{what}: the windows came out close to their original order in both epochs (rank "
                          f"correlation {min(correlations):.2f}); shuffle with a buffer that holds all N windows.")
