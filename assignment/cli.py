"""What the command lines `python -m assignment.trainer`, `python -m assignment.finetuner` and
`python -m assignment.generate` share (given)."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad command-line input; the command prints the message as one line and exits with status 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_logging_arguments(parser: argparse.ArgumentParser, eval_every: int, checkpoint_every: int) -> None:
    """The "logging and checkpoints" options of a training command (trainer, finetuner), with the command's own
    intervals between evaluations and between checkpoints as defaults."""
    group = parser.add_argument_group("logging and checkpoints")
    group.add_argument("--log-every", type=int, default=10, help="steps between TensorBoard train scalars")
    group.add_argument("--eval-every", type=int, default=eval_every, help="steps between evaluations")
    group.add_argument("--eval-batches", type=int, default=20, help="validation batches per evaluation (0: all)")
    group.add_argument("--sample-tokens", type=int, default=200, help="length of the text sample in TensorBoard")
    group.add_argument("--checkpoint-every", type=int, default=checkpoint_every, help="steps between checkpoints")
    group.add_argument("--checkpoint-minutes", type=float, default=10.0, help="minutes between checkpoints")
    group.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
