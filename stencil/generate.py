"""Generate text with a trained model (given).

    python -m stencil.generate --checkpoint runs/transformer --prompt "ROMEO:" --max-new-tokens 200 \\
        --temperature 0.8 --top-p 0.95 --seed 0

Reads the run directory's config.json and tokenizer, builds the model, restores the best checkpoint (else the latest)
and prints the prompt followed by the generated continuation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from .cli import OneLineErrorParser
from .runs import load_run


def generate_text(
    model: keras.Model,
    tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> str:
    """The prompt and `max_new_tokens` sampled tokens, decoded to text (`samplers.generate` on the prompt's ids)."""
    from .samplers import generate

    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("prompt must not be empty")
    out = generate(model, tf.constant(ids, tf.int32), max_new_tokens, temperature=temperature, top_k=top_k,
                   top_p=top_p, seed=seed)
    return tokenizer.decode(np.asarray(out))


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m stencil.generate`."""
    parser = OneLineErrorParser(prog="python -m stencil.generate", description="Sample text from a trained model.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory written by train (--out)")
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: greedy)")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, help="keep the nucleus of probability p")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m stencil.generate`: prints the text; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    if args.max_new_tokens < 0:
        print(f"error: --max-new-tokens must be >= 0, got {args.max_new_tokens}", file=sys.stderr)
        return 2
    try:
        model, tokenizer, _ = load_run(args.checkpoint)
        text = generate_text(model, tokenizer, args.prompt, args.max_new_tokens, temperature=args.temperature,
                             top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    except ValueError as exc:  # no run or checkpoint, a character the tokenizer lacks, a bad sampling argument
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
