"""Reference solution of the language-modeling assignment (course staff only)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up log lines off the console
