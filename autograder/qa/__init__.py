"""Staff quality assurance, never shipped: the self-check, the mutant catalog and adversarial submissions (the
alternative correct solutions guard the fixtures build, so they live in `autograder.recording.alternatives`)."""
