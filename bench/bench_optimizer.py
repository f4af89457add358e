"""Benchmark: part 6's AdamW (`optim.AdamW` with `optim.WarmupCosineSchedule`) against keras.optimizers.AdamW.

    python -m bench.bench_optimizer [--text FILE] [--model transformer] [--steps 20] [--repeats 5] [--set ...]

The optimizers of `python -m assignment.trainer --optimizer own` and `--optimizer keras` (`trainer.make_optimizer`:
Keras's AdamW with train.py's schedule, decaying every variable, against the student's, which skips the vectors) on
the default model of --model at the training command's defaults (extra training options after --set override them,
e.g. --set --d-model 192), the text being the default corpus's train split unless --text FILE is given. Two
figures per optimizer, each under `tf.function` and after untimed warm-up calls that trace it:

- the whole train step (`train.make_train_step`: forward, backward, clipping and the update), ms per step;
- the update alone: `apply_gradients` of fixed gradients (those of one batch) to the model's variables, ms per call.

Each of --repeats rounds times --steps calls of every variant in turn, so that both optimizers see the same load on a
shared machine; a figure is the fastest round's mean, and the ratio own / keras is the median over rounds of each
round's ratio, with its range.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from bench.corpus import add_text_option, load_text

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SPLIT = "train"
OPTIMIZERS = ("keras", "own")


def make_update(optimizer, variables: list, gradients: list) -> Callable[[], int]:
    """A call that applies the fixed `gradients` to `variables` with `optimizer` in a tf.function, and waits for it."""
    import tensorflow as tf

    @tf.function
    def update() -> tf.Tensor:
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return optimizer.iterations

    return lambda: int(update())


def main(argv: list[str] | None = None) -> int:
    """Time both optimizers' train steps and updates in turn; print the table. Returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_optimizer", description=__doc__.splitlines()[0])
    add_text_option(parser, SPLIT)
    parser.add_argument("--model", default="transformer", help="model kind of the training command")
    parser.add_argument("--steps", type=int, default=20, help="timed calls of each variant per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds, each timing every variant in turn")
    parser.add_argument("--set", nargs=argparse.REMAINDER, default=[], help="train options overriding the defaults")
    args = parser.parse_args(argv)
    text, source = load_text(args.text, SPLIT)
    import keras
    import numpy as np
    import tensorflow as tf

    from assignment import loop, train, trainer
    from assignment.models import build_model
    from assignment.preprocess import CharTokenizer

    ids = np.asarray(CharTokenizer.train(text).encode(text), np.int32)
    variants = {}
    for name in OPTIMIZERS:
        options = trainer.build_parser().parse_args(["--model", args.model, "--optimizer", name, *args.set])
        config = {**trainer.run_config(options), "vocab_size": int(ids.max()) + 1}
        if config.get("num_kv_heads") is None:
            config["num_kv_heads"] = options.num_heads
        keras.utils.set_random_seed(options.seed)
        model = build_model(config)
        batches = iter(loop.training_batches(ids, options.context_length, options.batch_size, options.seed))
        step = train.make_train_step(model, trainer.make_optimizer(options), clip_norm=options.clip_norm or None)
        x, y = next(batches)
        with tf.GradientTape() as tape:
            loss = train.sequence_loss(y, model(x, training=True))
        variants[f"{name} train step"] = lambda step=step, batches=batches: float(step(*next(batches))["loss"])
        variants[f"{name} update"] = make_update(trainer.make_optimizer(options), model.trainable_variables,
                                                 tape.gradient(loss, model.trainable_variables))
    for call in variants.values():  # the first calls trace, the next retrace once the optimizer has its variables
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, call in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                call()
            times[name].append((time.perf_counter() - start) / args.steps)
    print(f"{source}: model {args.model}, overrides {' '.join(args.set) or 'none'}, {args.repeats} rounds of "
          f"{args.steps} calls, tf.function (CPU)")
    print(f"{'variant':18s} {'ms/call':>8s}   own / keras")
    for what in ("train step", "update"):
        own, ref = times[f"own {what}"], times[f"keras {what}"]
        ratios = sorted(o / k for o, k in zip(own, ref, strict=True))
        for name in OPTIMIZERS:
            print(f"{name + ' ' + what:18s} {1000 * min(times[f'{name} {what}']):8.2f}"
                  + (f"   x{ratios[len(ratios) // 2]:.2f} (x{ratios[0]:.2f} to x{ratios[-1]:.2f})" if name == "own"
                     else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
