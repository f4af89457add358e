"""Autograder of the language-modeling assignment: a trusted judge and an untrusted worker process.

This package initialiser imports nothing, because the worker (`python -m autograder.worker`) runs as
`autograder.worker` in a sandbox that holds only `autograder/__init__.py` and `autograder/worker/`. The judge's entry
point is `autograder.judge.grade`; the command line is `python -m autograder --help`.
"""
