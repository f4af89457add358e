"""Benchmark: generation with the transformer's key/value cache against recomputing the whole sequence every token.

    python -m bench.bench_kv_cache [--tokens 256] [--context-length 128] [--d-model 128] [--num-layers 4] [--batch 1]
        [--repeats 5] [--num-heads 8 --kv-heads 8 2 1]

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

With --kv-heads it times part 6's modern decoder instead (untrained, same width, depth, heads and context): for each
number of key/value heads H_kv given, the bytes of the key/value cache of `initial_state` (every block's key and
value [B, H_kv, C, hd] in float32) and the tokens/s of `samplers.generate`, greedy, over --repeats rounds that take
the H_kv values in turn (the fastest round's tokens/s; the ratio to the first H_kv is the median over rounds of each
round's ratio). Query heads H_kv = H is multi-head attention, H_kv = 1 multi-query attention.
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
    parser.add_argument("--kv-heads", type=int, nargs="+",
                        help="time the modern decoder's cached generation for each of these key/value head counts")
    args = parser.parse_args()
    if args.kv_heads:
        compare_kv_heads(args)
        return

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


def compare_kv_heads(args: argparse.Namespace) -> None:
    """Print the cache bytes and generation tokens/s of the modern decoder for each H_kv in args.kv_heads."""
    import keras
    import numpy as np

    from assignment import samplers
    from assignment.modern import ModernLanguageModel

    prompt = np.random.default_rng(0).integers(0, args.vocab_size, (args.batch, 8)).astype(np.int32)
    models = {}
    for kv_heads in args.kv_heads:
        keras.utils.set_random_seed(0)
        models[kv_heads] = ModernLanguageModel(args.vocab_size, args.context_length, args.d_model, args.num_heads,
                                               kv_heads, args.num_layers)
        samplers.generate(models[kv_heads], prompt, args.tokens, temperature=0.0)  # builds, traces and compiles
    times: dict[int, list[float]] = {kv_heads: [] for kv_heads in models}
    for _ in range(args.repeats):  # the H_kv values take turns, so that all see the same load
        for kv_heads, model in models.items():
            start = time.perf_counter()
            np.asarray(samplers.generate(model, prompt, args.tokens, temperature=0.0))
            times[kv_heads].append(time.perf_counter() - start)
    n = args.tokens * args.batch
    first = args.kv_heads[0]
    print(f"modern d_model={args.d_model} layers={args.num_layers} heads H={args.num_heads} "
          f"context={args.context_length}, batch {args.batch}, {args.tokens} new tokens, greedy (CPU)")
    print(f"{'H_kv':>4s} {'params':>9s} {'cache bytes':>12s} {'cache / H_kv=' + str(first):>16s} "
          f"{'tokens/s':>9s} {'tokens/s / H_kv=' + str(first):>26s}")
    cache_bytes = {}
    for kv_heads, model in models.items():
        state = model.initial_state(args.batch)
        cache_bytes[kv_heads] = sum(int(np.prod(t.shape)) * t.dtype.size for c in state["caches"] for t in c.values())
        params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        ratios = sorted(b / a for a, b in zip(times[kv_heads], times[first], strict=True))
        print(f"{kv_heads:4d} {params:9,d} {cache_bytes[kv_heads]:12,d} "
              f"{cache_bytes[kv_heads] / cache_bytes[first]:16.3f} {n / min(times[kv_heads]):9.1f} "
              f"{f'x{ratios[len(ratios) // 2]:.2f} (x{ratios[0]:.2f} to x{ratios[-1]:.2f})':>26s}")


if __name__ == "__main__":
    main()
