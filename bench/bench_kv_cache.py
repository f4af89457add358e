"""Benchmark: generation with the transformer's key/value cache against recomputing the whole sequence every token.

    python bench/bench_kv_cache.py [--tokens 256] [--context-length 128] [--d-model 128] [--num-layers 4] [--batch 1]

Builds an untrained TransformerLanguageModel with the default training configuration (weights do not change the
cost), then times `samplers.generate` (one `model.step` per new token, cache restarted from the last
context_length - 1 tokens when full) against a loop that calls the model on the whole window for every new token.
Prints tokens/s of both and the speed-up, and checks that the first new tokens agree under greedy decoding.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="new tokens to generate")
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument("--batch", type=int, default=1)
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

    def recompute(n: int) -> np.ndarray:
        ids = prompt
        for _ in range(n):
            window = ids[:, -args.context_length :]
            logits = model(tf.constant(window))[:, -1]
            ids = np.concatenate([ids, samplers.greedy(logits).numpy()[:, None]], axis=1)
        return ids

    samplers.generate(model, prompt, 4, temperature=0.0)  # warm-up: trace the ops once
    recompute(4)
    start = time.perf_counter()
    cached = samplers.generate(model, prompt, args.tokens, temperature=0.0).numpy()
    cached_time = time.perf_counter() - start
    start = time.perf_counter()
    full = recompute(args.tokens)
    full_time = time.perf_counter() - start

    n = args.tokens * args.batch
    print(f"transformer d_model={args.d_model} layers={args.num_layers} heads={args.num_heads} "
          f"context={args.context_length}, batch {args.batch}, {args.tokens} new tokens (eager, CPU)")
    print(f"KV cache:  {n / cached_time:8.1f} tokens/s  ({cached_time:.2f} s)")
    print(f"recompute: {n / full_time:8.1f} tokens/s  ({full_time:.2f} s)   speed-up x{full_time / cached_time:.1f}")
    agree = min(args.context_length - prompt.shape[1], args.tokens)  # before the first cache restart
    print(f"greedy tokens agree over the first {agree}: {np.array_equal(cached[:, : 8 + agree], full[:, : 8 + agree])}")


if __name__ == "__main__":
    main()
