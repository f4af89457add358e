"""Benchmark: wall time for the transformer to reach a validation loss on Tiny Shakespeare (character level).

    python bench/bench_time_to_loss.py [TEXT] [--target 1.88] [--max-steps 3000] [--max-seconds 600]

The configuration of nanoGPT's well-known character-level CPU run: first 90 % of TEXT for training, last 10 % for
validation, 4 layers, 4 heads, d_model 128, context 64, batch 12, dropout 0, AdamW (lr 1e-3 with 100 warmup steps
and cosine decay over --max-steps), clipping at 1. First prints tokens/s of the train step run eagerly, in
`tf.function` and with `jit_compile=True` (20 timed steps each), then trains with the fastest compiled mode,
evaluating 20 validation batches every 100 steps, until the validation loss is <= --target or a limit is hit. The
wall time excludes evaluation and tracing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEXT = ROOT.parent / "shared" / "bench" / "tinyshakespeare.txt"
CONFIG = {"model": "transformer", "context_length": 64, "d_model": 128, "num_heads": 4, "num_layers": 4,
          "dropout": 0.0, "positional": "learned"}
BATCH = 12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--target", type=float, default=1.88)
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    if not args.text.is_file():
        print(f"error: no text file {args.text}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import keras
    import numpy as np

    from assignment import train
    from assignment.models import build_model
    from assignment.preprocess import CharTokenizer

    text = args.text.read_text(encoding="utf-8")
    ids = np.asarray(CharTokenizer.train(text).encode(text), np.int32)
    cut = int(0.9 * len(ids))
    config = {**CONFIG, "vocab_size": int(ids.max()) + 1}

    def setup(jit: bool | None):
        keras.utils.set_random_seed(0)
        model = build_model(config)
        optimizer = train.make_optimizer(1e-3, 100, args.max_steps, weight_decay=0.1)
        if jit is None:
            def step(x, y):
                return train.train_step(model, optimizer, x, y, clip_norm=1.0)
        else:
            step = train.make_train_step(model, optimizer, clip_norm=1.0, jit_compile=jit)
        return model, step, iter(train.training_batches(ids[:cut], CONFIG["context_length"], BATCH, 0))

    speeds = {}
    for name, jit in (("eager", None), ("tf.function", False), ("jit_compile", True)):
        model, step, batches = setup(jit)
        for _ in range(3):
            step(*next(batches))
        start = time.perf_counter()
        for _ in range(20):
            float(step(*next(batches))["loss"])
        speeds[name] = 20 * BATCH * CONFIG["context_length"] / (time.perf_counter() - start)
        print(f"{name:12s} {speeds[name]:9,.0f} tokens/s")
    best = max(("tf.function", "jit_compile"), key=speeds.get)
    model, step, batches = setup(best == "jit_compile")
    valid = train.validation_batches(ids[cut:], CONFIG["context_length"], 64)
    step(*next(batches))  # trace before the clock starts
    seconds, loss = 0.0, float("inf")
    for n in range(2, args.max_steps + 1):
        start = time.perf_counter()
        step(*next(batches))
        seconds += time.perf_counter() - start
        if n % 100 == 0:
            loss = train.evaluate(model, valid, max_batches=20)["loss"]
            print(f"step {n:5d}  {seconds:7.1f} s  validation loss {loss:.3f}", flush=True)
            if loss <= args.target or seconds > args.max_seconds:
                break
    reached = "reached" if loss <= args.target else "did not reach"
    print(f"{best}: {reached} validation loss {args.target} after {n} steps, {seconds:.1f} s of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
