"""Reference solution of the language-modeling assignment (course staff only)."""
