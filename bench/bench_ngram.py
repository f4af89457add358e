"""Part 7's n-gram models on the default corpus: counting time and memory per order, and validation perplexity with
epsilon chosen on the validation split.

    python -m bench.bench_ngram [--text FILE] [--orders 1 2 3 4 5] [--candidates 0.001 0.003 ...]

The splits are those of the training command (data/prepare.py's split of the default corpus, computed in memory, or of
--text), with its character tokenizer (the characters of all three splits). For each order n it prints the seconds
`NGramModel.fit` takes on the train split (a plain run), the peak memory of the same fit traced by tracemalloc (a
second run: tracing slows it down several times), the distinct n-grams stored against the V^n cells of a dense table,
the share of validation positions whose context never occurs in training, and the validation perplexity per character
for each candidate epsilon (`choose_epsilon`) with the best one. The last line sums the seconds and takes the largest
peak over the orders.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

from assignment.ngram import NGramModel, choose_epsilon
from assignment.preprocess import CharTokenizer
from data.prepare import shakespeare_plays, split_plays, split_text

CANDIDATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def splits(text_file: Path | None) -> dict[str, str]:
    """The train/valid/test texts of the default corpus (split by play) or of `text_file` (contiguous)."""
    if text_file is None:
        return split_plays(shakespeare_plays())
    return split_text(text_file.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ngram", description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, metavar="FILE", help="UTF-8 text file instead of the default corpus")
    parser.add_argument("--orders", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--candidates", type=float, nargs="+", default=list(CANDIDATES))
    args = parser.parse_args()
    texts = splits(args.text)
    tokenizer = CharTokenizer.train("".join(texts.values()))
    train = np.asarray(tokenizer.encode(texts["train"]), np.int64)
    valid = np.asarray(tokenizer.encode(texts["valid"]), np.int64)
    vocab = tokenizer.vocab_size
    print(f"train {len(train):,} characters, valid {len(valid):,}, V = {vocab}")
    print("n  fit s  peak MB  n-grams stored  dense V^n cells  unseen valid contexts  best eps  valid perplexity")
    total_seconds, peak_mb = 0.0, 0.0
    for order in args.orders:
        started = time.perf_counter()
        model = NGramModel(order, vocab).fit(train)
        seconds = time.perf_counter() - started
        del model
        tracemalloc.start()
        model = NGramModel(order, vocab).fit(train)
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        stored = sum(len(following) for following in model.counts.values())
        contexts = {tuple(valid[i - order + 1 : i].tolist()) for i in range(order - 1, len(valid))}
        unseen = sum(tuple(valid[i - order + 1 : i].tolist()) not in model.counts
                     for i in range(order - 1, len(valid))) / (len(valid) - order + 1)
        best, perplexities = choose_epsilon(model, valid, args.candidates)
        total_seconds, peak_mb = total_seconds + seconds, max(peak_mb, traced)
        print(f"{order}  {seconds:5.2f}  {traced:7.1f}  {stored:14,}  {float(vocab) ** order:15.3g}  "
              f"{unseen:20.1%}  {best:8g}  {min(perplexities):16.3f}   ({len(contexts):,} distinct valid contexts)")
        print("   " + "  ".join(f"eps {c:g}: {p:.3f}" for c, p in zip(args.candidates, perplexities, strict=True)))
    print(f"orders {args.orders}: {total_seconds:.1f} s in all, peak {peak_mb:.0f} MB (the largest order's)")


if __name__ == "__main__":
    main()
