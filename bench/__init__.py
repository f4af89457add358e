"""Benchmarks that print speed and memory figures (not run by the tests), each run from the repository root as
``python -m bench.NAME``: `bench_bpe` (BPE training and encoding speed), `bench_train` (training speed of each model
kind), `bench_time_to_loss` (wall time for the transformer to reach a validation loss), `bench_kv_cache` (generation
with the key/value cache against recomputing), `bench_autograder` (CPU and memory of a full grade),
`bench_gradescope` (Gradescope's set-up and grade, as root) and `bench_repeatability` (the statistical sampler tests'
false-failure rate). The ones that read a corpus take ``--text FILE`` and otherwise read the kit's default corpus
(see `bench.corpus`).
"""
