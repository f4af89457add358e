"""The untrusted side of the autograder: imports the submission and runs probes on request.

Self-contained: nothing here imports the judge, the hidden tests, the fixtures or the reference solution.
"""
