"""Reference solution of the language-modeling assignment (course staff only)."""

from . import quiet_tensorflow  # noqa: F401 - first: it keeps TensorFlow's start-up banner off the console
