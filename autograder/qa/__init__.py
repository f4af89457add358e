"""Staff quality assurance, never shipped: the self-check, the mutant catalog, alternative correct solutions and
adversarial submissions."""
