"""Starter code of the language-modeling assignment: implement every TODO (the handout, handout.md, says how)."""
