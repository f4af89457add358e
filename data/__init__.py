"""Corpus preparation: plain-text train/valid/test splits for the language models (`python -m data.prepare`)."""
