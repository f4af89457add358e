"""Hidden tests (judge side). Importing this package registers every test with the registry, part by part in the
order of PARTS (the order of the report)."""

import importlib

PARTS = ("preprocess", "rnn", "lstm", "samplers", "transformer", "train", "quality")

for _part in PARTS:
    importlib.import_module(f"{__name__}.{_part}")
