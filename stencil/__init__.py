"""Starter code of the language-modeling assignment: implement every TODO (the handout, handout.md, says how)."""

from . import quiet_tensorflow  # noqa: F401 - first: it keeps TensorFlow's start-up banner off the console
