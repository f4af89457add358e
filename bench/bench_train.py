"""Benchmark: training speed of each model kind at the command line's default configuration.

    python -m bench.bench_train [--text FILE] [--models rnn lstm transformer] [--steps N] [--jit]
        [--set --d-model 192 ...]

The text is the train split of the default corpus (Shakespeare's plays, see `bench.corpus`), the split
`python -m assignment.trainer` trains on, unless --text FILE is given. For each model kind: character tokenizer on the
text, the default batch size and context length of `python -m assignment.trainer`, AdamW with the default schedule and
clipping, `make_train_step` (tf.function, XLA with --jit). Prints the tracing time (first step), then steps/s and
tokens/s over N timed steps, the number of parameters and the steps that fit in ten minutes. Extra training options
after --set override the defaults (e.g. --set --d-model 192 --num-layers 6).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench.corpus import add_text_option, load_text

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SPLIT = "train"


def bench(kind: str, ids, steps: int, jit: bool, overrides: list[str]) -> dict:
    import keras
    import numpy as np

    from assignment import loop, train, trainer
    from assignment.models import build_model

    args = trainer.build_parser().parse_args(["--model", kind, *overrides])
    config = trainer.run_config(args)
    config["vocab_size"] = int(ids.max()) + 1
    keras.utils.set_random_seed(args.seed)
    model = build_model(config)
    optimizer = train.make_optimizer(args.lr, args.warmup_steps, args.steps, args.weight_decay)
    step_fn = train.make_train_step(model, optimizer, clip_norm=args.clip_norm or None, jit_compile=jit)
    batches = iter(loop.training_batches(ids, args.context_length, args.batch_size, args.seed))
    start = time.perf_counter()
    for _ in range(2):  # the first call traces, the second retraces once the optimizer has its variables
        first = float(step_fn(*next(batches))["loss"])
    traced = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = float(step_fn(*next(batches))["loss"])
    seconds = time.perf_counter() - start
    return {
        "model": kind, "params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "trace_s": traced, "steps_per_s": steps / seconds,
        "tokens_per_s": steps * args.batch_size * args.context_length / seconds,
        "steps_in_10_min": int(600 * steps / seconds), "default_steps": args.steps, "loss": (first, loss),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_train", description=__doc__.splitlines()[0])
    add_text_option(parser, SPLIT)
    parser.add_argument("--models", nargs="+", default=["rnn", "lstm", "transformer"], help="model kinds")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per model")
    parser.add_argument("--jit", action="store_true", help="compile the train step with XLA")
    parser.add_argument("--set", nargs=argparse.REMAINDER, default=[], help="train options overriding the defaults")
    args = parser.parse_args(argv)
    text, source = load_text(args.text, SPLIT)
    import numpy as np

    from assignment.preprocess import CharTokenizer

    ids = np.asarray(CharTokenizer.train(text).encode(text), np.int32)
    print(f"{source}: {len(ids):,} characters; jit={args.jit}; overrides {' '.join(args.set) or 'none'}")
    print(f"{'model':12s} {'params':>9s} {'trace s':>8s} {'steps/s':>8s} {'tokens/s':>9s} {'steps/10min':>11s} "
          f"{'default steps':>13s}  loss first -> last")
    for kind in args.models:
        r = bench(kind, ids, args.steps, args.jit, args.set)
        print(f"{r['model']:12s} {r['params']:9,d} {r['trace_s']:8.1f} {r['steps_per_s']:8.2f} "
              f"{r['tokens_per_s']:9,.0f} {r['steps_in_10_min']:11,d} {r['default_steps']:13,d}  "
              f"{r['loss'][0]:.3f} -> {r['loss'][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
