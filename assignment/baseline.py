"""The n-gram baseline on the command line (given): count, smooth, measure validation perplexity, sample.

    python -m assignment.baseline --order 3 --epsilon 0.1
    python -m assignment.baseline --order 5 --choose-epsilon 0.001 0.01 0.1 1 --sample 200 --temperature 0.8

It uses the data splits and tokenizers of the training command (data/prepare.py's splits of the default corpus or of
--text; the character vocabulary of all three splits, or BPE learned on the train split), counts the n-grams of the
train split with part 7's `NGramModel`, and prints the time and the memory the counting took, then the validation
perplexity per token and per character (the figure to compare with the neural models' validation perplexity).
--choose-epsilon measures each candidate on the validation split and keeps the best; --sample generates text
through part 3's samplers with the model's log-probabilities as logits.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from collections.abc import Sequence

import numpy as np

from .cli import OneLineErrorParser, UsageError
from .runs import TOKENIZER_KINDS, tokenizer_class


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m assignment.baseline`."""
    parser = OneLineErrorParser(
        prog="python -m assignment.baseline",
        description="Count an n-gram model with add-epsilon smoothing on the train split and print its validation "
                    "perplexity.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--order", type=int, default=3, help="n, the tokens of an n-gram (the context holds n - 1)")
    parser.add_argument("--epsilon", type=float, default=1.0, help="the pseudo-count of add-epsilon smoothing")
    parser.add_argument("--choose-epsilon", type=float, nargs="+", metavar="E",
                        help="candidate epsilons: keep the one of the lowest validation perplexity (instead of "
                             "--epsilon)")
    parser.add_argument("--tokenizer", default="char", choices=sorted(TOKENIZER_KINDS), help="tokenizer kind")
    parser.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size (with --tokenizer bpe)")
    parser.add_argument("--text", metavar="FILE", help="UTF-8 text file instead of the default corpus")
    parser.add_argument("--splits-dir", metavar="DIR",
                        help="where the train/valid/test splits live (default: data/prepare.py's default)")
    group = parser.add_argument_group("sampling")
    group.add_argument("--sample", type=int, default=0, metavar="N", help="generate N tokens after the prompt")
    group.add_argument("--prompt", help="text to continue (default: the first line of the validation split)")
    group.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: greedy)")
    group.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    group.add_argument("--top-p", type=float, default=None, help="keep the nucleus of probability p")
    group.add_argument("--seed", type=int, default=0, help="sampling seed")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    if args.order < 1:
        raise UsageError(f"--order must be >= 1, got {args.order}")
    if not 0 < args.epsilon < math.inf:
        raise UsageError(f"--epsilon must be a positive number, got {args.epsilon}")
    for epsilon in args.choose_epsilon or []:
        if not 0 < epsilon < math.inf:
            raise UsageError(f"--choose-epsilon must be positive numbers, got {epsilon}")
    if args.tokenizer == "bpe" and args.vocab_size < 256:
        raise UsageError(f"--vocab-size must be >= 256 (the byte vocabulary), got {args.vocab_size}")
    if args.sample < 0:
        raise UsageError(f"--sample must be >= 0, got {args.sample}")
    if not args.temperature >= 0:
        raise UsageError(f"--temperature must be >= 0 (0: greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must lie in (0, 1], got {args.top_p}")


def load_texts(text_file: str | None, splits_dir: str | None) -> dict[str, str]:
    """The train/valid/test texts the training command uses (data/prepare.py's `ensure_splits`)."""
    from data.prepare import CorpusError, ensure_splits

    try:
        paths = ensure_splits(splits_dir, text_file, option="--splits-dir")
        return {split: path.read_bytes().decode("utf-8") for split, path in paths.items()}
    except (CorpusError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(str(exc)) from None


def make_tokenizer(kind: str, vocab_size: int, texts: dict[str, str]):
    """The training command's tokenizer for these splits: characters of all three splits, or BPE on train."""
    if kind == "char":
        return tokenizer_class(kind).train("".join(texts.values()))
    return tokenizer_class(kind).train(texts["train"], vocab_size)


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dense_size(vocab_size: int, order: int) -> str:
    """What a dense table of V^n int32 counts would take, in readable units (B, KB, MB, GB, TB)."""
    size = 4 * float(vocab_size) ** order
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:,.0f} TB"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m assignment.baseline`: returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        _check_arguments(args)
        texts = load_texts(args.text, args.splits_dir)
        tokenizer = make_tokenizer(args.tokenizer, args.vocab_size, texts)
        train_ids = np.asarray(tokenizer.encode(texts["train"]), np.int64)
        valid_ids = np.asarray(tokenizer.encode(texts["valid"]), np.int64)
        if len(valid_ids) < args.order:
            raise UsageError(f"the validation split holds {len(valid_ids)} tokens, fewer than --order {args.order}")
        prompt_ids = tokenizer.encode(args.prompt if args.prompt is not None else texts["valid"].split("\n")[0] + "\n")
        if args.sample and not prompt_ids:
            raise UsageError("--prompt must not be empty")
    except (UsageError, ValueError) as exc:  # ValueError: a character of --prompt outside the vocabulary
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .ngram import NGramModel, choose_epsilon

    vocab_size = tokenizer.vocab_size
    before, started = peak_rss_mb(), time.perf_counter()
    model = NGramModel(args.order, vocab_size, args.epsilon).fit(train_ids)
    seconds, grown = time.perf_counter() - started, peak_rss_mb() - before
    print(f"{args.order}-gram model of {len(train_ids):,} {args.tokenizer} tokens (V = {vocab_size}): counted in "
          f"{seconds:.1f} s, peak memory +{grown:.0f} MB (a dense table of V^n int32 counts would take "
          f"{dense_size(vocab_size, args.order)})")
    if args.choose_epsilon:
        best, perplexities = choose_epsilon(model, valid_ids, args.choose_epsilon)
        for epsilon, perplexity in zip(args.choose_epsilon, perplexities, strict=True):
            print(f"  epsilon {epsilon:g}: validation perplexity {perplexity:.3f} per token")
        print(f"chose epsilon {best:g}")
    log_likelihood = model.log_likelihood(valid_ids)
    scored = len(valid_ids) - args.order + 1  # the first n - 1 tokens are not scored
    characters = len(texts["valid"]) - len(tokenizer.decode(valid_ids[: args.order - 1].tolist()))
    print(f"validation perplexity (epsilon {model.epsilon:g}): {math.exp(-log_likelihood / scored):.3f} per token, "
          f"{math.exp(-log_likelihood / characters):.3f} per character ({scored:,} tokens, {characters:,} characters)")
    if args.sample:
        from .samplers import generate

        ids = generate(model, np.asarray(prompt_ids, np.int32), args.sample, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        print(tokenizer.decode(np.asarray(ids).tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
