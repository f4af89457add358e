"""What the command lines `python -m assignment.trainer` and `python -m assignment.generate` share (given)."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad command-line input; the command prints the message as one line and exits with status 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")
