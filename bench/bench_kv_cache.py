"""Benchmark: generation with the transformer's key/value cache against recomputing the whole sequence every token.

    python -m bench.bench_kv_cache [--tokens 256] [--context-length 128] [--d-model 128] [--num-layers 4] [--batch 1]
        [--repeats 5]

Builds an untrained TransformerLanguageModel with the default training configuration (weights do not change the
cost), then times `samplers.generate` (one `model.step` per new token: the cache has a fixed capacity of
context_length positions and the one-token step is compiled by XLA; when the cache is full it restarts from the last
context_length // 2 tokens) against a loop that calls the model on the last context_length tokens for every new
token, both eagerly and compiled with tf.function. Both decode greedily; the cache is also timed with sampling
(temperature 0.8, top-k 40, top-p 0.95). Every variant runs once untimed first, so tracing and XLA compilation are
left out. Then --repeats rounds each time the cache (greedy and sampling) and the compiled recompute back to back,
so that both see the same load on a shared machine: tokens/s are the fastest round's, and the compiled speed-up is
the median over rounds of each round's ratio, with its range (the eager recompute, at over 20 s, runs once). Checks
that the new tokens agree until the first cache restart.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_kv_cache", description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="new tokens to generate")
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5,
                        help="rounds of timing the cache and the compiled recompute back to back")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from assignment import samplers
    from assignment.transformer import TransformerLanguageModel

    keras.utils.set_random_seed(0)
    model = TransformerLanguageModel(args.vocab_size, args.context_length, args.d_model, args.num_heads,
                                     args.num_layers)
    prompt = np.random.default_rng(0).integers(0, args.vocab_size, (args.batch, 8)).astype(np.int32)
    model(tf.constant(prompt))

    compiled_call = tf.function(model.call, reduce_retracing=True)

    def recompute(n: int, forward) -> np.ndarray:
        ids = prompt
        for _ in range(n):
            logits = forward(tf.constant(ids[:, -args.context_length :]))[:, -1]
            ids = np.concatenate([ids, samplers.greedy(logits).numpy()[:, None]], axis=1)
        return ids

    def timed(fn):
        """(result, wall time in seconds) of one run of fn."""
        start = time.perf_counter()
        result = np.asarray(fn())
        return result, time.perf_counter() - start

    sampling = {"temperature": 0.8, "top_k": 40, "top_p": 0.95}
    # Warm-up outside the clock: trace the graphs and compile the XLA step.
    samplers.generate(model, prompt, args.tokens, temperature=0.0)
    samplers.generate(model, prompt, 8, **sampling)
    recompute(8, compiled_call)
    recompute(args.context_length, compiled_call)
    cached_times, sampled_times, compiled_times = [], [], []
    for _ in range(args.repeats):
        cached, seconds = timed(lambda: samplers.generate(model, prompt, args.tokens, temperature=0.0))
        cached_times.append(seconds)
        sampled_times.append(timed(lambda: samplers.generate(model, prompt, args.tokens, **sampling))[1])
        compiled, seconds = timed(lambda: recompute(args.tokens, compiled_call))
        compiled_times.append(seconds)
    eager, eager_time = timed(lambda: recompute(args.tokens, model))
    ratios = sorted(c / k for c, k in zip(compiled_times, cached_times, strict=True))
    cached_time, sampled_time, compiled_time = min(cached_times), min(sampled_times), min(compiled_times)

    n = args.tokens * args.batch
    print(f"transformer d_model={args.d_model} layers={args.num_layers} heads={args.num_heads} "
          f"context={args.context_length}, batch {args.batch}, {args.tokens} new tokens (CPU)")
    print(f"KV cache (generate):          {n / cached_time:8.1f} tokens/s  ({cached_time:.2f} s)")
    print(f"KV cache, sampling:           {n / sampled_time:8.1f} tokens/s  ({sampled_time:.2f} s)")
    print(f"recompute, tf.function:       {n / compiled_time:8.1f} tokens/s  ({compiled_time:.2f} s)   "
          f"cache speed-up x{ratios[len(ratios) // 2]:.1f} (median of {len(ratios)} rounds; "
          f"x{ratios[0]:.1f} to x{ratios[-1]:.1f})")
    print(f"recompute, eager:             {n / eager_time:8.1f} tokens/s  ({eager_time:.2f} s)   "
          f"cache speed-up x{eager_time / cached_time:.1f}")
    agree = min(args.context_length - prompt.shape[1], args.tokens)  # before the first cache restart
    same = np.array_equal(cached[:, : 8 + agree], compiled[:, : 8 + agree]) and np.array_equal(compiled, eager)
    print(f"greedy tokens agree over the first {agree} (and both recomputes everywhere): {same}")


if __name__ == "__main__":
    main()
