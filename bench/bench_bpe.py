"""BPE training and encoding speed on a real corpus, and the gain of incremental pair counts over a full recount.

    python -m bench.bench_bpe [--text FILE] [--vocab-size 1024] [--chars 300000] [--skip-naive]
    python -m bench.bench_bpe --chars 0 --skip-naive    # the whole train split of the default corpus

The text is the train split of the default corpus (Shakespeare's plays, see `bench.corpus`) unless --text FILE is
given; --chars keeps its first characters. Prints seconds for `BPETokenizer.train` (incremental pair counts, the
reference) and for a naive trainer that recounts every pair after each merge (the textbook version: the judge's oracle
`bpe_train_naive`), checks that both learn the same merges, then prints encode and decode throughput and the
compression (characters per token).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from assignment.preprocess import BPETokenizer, pretokenize  # noqa: E402
from autograder.judge.hidden.oracles import bpe_train_naive  # noqa: E402
from bench.corpus import add_text_option, load_text  # noqa: E402

SPLIT = "train"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_bpe", description=__doc__.splitlines()[0])
    add_text_option(parser, SPLIT)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--chars", type=int, default=300_000, help="train on the first CHARS characters (0: all)")
    parser.add_argument("--skip-naive", action="store_true", help="do not time the full-recount trainer")
    args = parser.parse_args()
    text, source = load_text(args.text, SPLIT)
    text = text[: args.chars] if args.chars else text
    print(f"corpus: {len(text):,} characters of {source}, vocab_size {args.vocab_size}")

    start = time.perf_counter()
    tokenizer = BPETokenizer.train(text, args.vocab_size)
    incremental = time.perf_counter() - start
    print(f"train (incremental counts): {incremental:7.2f} s")
    if not args.skip_naive:
        start = time.perf_counter()
        merges = bpe_train_naive(pretokenize(text), args.vocab_size)
        naive = time.perf_counter() - start
        print(f"train (full recount):       {naive:7.2f} s   speed-up x{naive / incremental:.1f}")
        print(f"same merges: {merges == tokenizer.merges}")

    start = time.perf_counter()
    ids = tokenizer.encode(text)
    encode = time.perf_counter() - start
    start = time.perf_counter()
    assert tokenizer.decode(ids) == text
    decode = time.perf_counter() - start
    print(f"encode: {len(text) / encode / 1e6:6.2f} M characters/s   "
          f"decode: {len(text) / decode / 1e6:6.2f} M characters/s")
    print(f"compression: {len(text) / len(ids):.2f} characters per token")


if __name__ == "__main__":
    main()
