"""Benchmark: wall time for the transformer to reach a validation loss on a corpus (character level).

    python -m bench.bench_time_to_loss [--text FILE] [--target 1.88] [--lr 4e-3] [--warmup 50] [--decay-steps 1200]
        [--beta2 0.99] [--weight-decay 0.1] [--seed 0] [--eval-every 50] [--skip-modes [--jit-compile]]
        [--compare-modern]

The text is the whole default corpus (Shakespeare's plays, every play in (genre, name) order; see `bench.corpus`)
unless --text FILE is given. The configuration of nanoGPT's well-known character-level CPU run: first 90 % of the
text for training, last 10 % for validation, 4 layers, 4 heads, d_model 128, context 64, batch 12, dropout 0,
clipping at global norm 1. The optimiser is AdamW: peak learning rate --lr reached linearly over --warmup steps, then
cosine decay to lr / 10 at step --decay-steps and constant after it, beta2 --beta2, decoupled weight decay
--weight-decay on the kernels and embeddings only (the weights of rank >= 2; biases and layer norms are not decayed).
The defaults were chosen on tinyshakespeare.txt (1.1 MB) with --text: --target 1.88, and the fastest setting of a
small sweep (lr 3e-3 to 6e-3, cosine horizon 1000, 1200 or 1500, beta2 0.95 or 0.99); they are not tuned for the
default corpus. --seed seeds the initial weights (`keras.utils.set_random_seed`) and the order of the training
batches.

Unless --skip-modes, it first prints tokens/s of the train step run eagerly (5 timed steps), in `tf.function` and
with `jit_compile=True` (the fastest of 5 rounds of 20 steps, the two modes taking turns so that both see the same
load on a shared machine; 3 untimed steps first) and trains with the faster compiled mode; with
--skip-modes it trains with `tf.function` directly (with `jit_compile=True` when --jit-compile is also given). Every
--eval-every steps it evaluates the mean loss over the first 20 validation batches of 64 windows, and stops as soon
as that loss is <= --target, or after --max-steps steps, or once the training time exceeds --max-seconds.

TensorFlow's oneDNN kernels are switched on (TF_ENABLE_ONEDNN_OPTS=1) unless the environment already sets the
variable. TensorFlow leaves them off by default on some CPUs (it did on the AVX2-only CPU this was tuned on, where
they made the `jit_compile` step markedly faster). Run with TF_ENABLE_ONEDNN_OPTS=0 to compare.

The reported training time is the sum over steps 2, 3, ..., n of the wall time of fetching the batch and running
the compiled step until its loss is available on the host. It excludes building the model, step 1 (which traces
the step function), the evaluations and printing. The reported step n is the first evaluated step whose validation
loss is <= --target, so the true first step is resolved to --eval-every steps.

With --compare-modern it trains the 2019 transformer above and part 6's modern decoder (RMSNorm, rotary positions,
SwiGLU of the default hidden size, H_kv = H, untied output; same width, depth, heads and context) side by side with the
same optimiser, data order and initial seed, one step of each in turn (in `tf.function`), so that both see the same
load on a shared machine. At d_model 128 the two have equal parameter counts within 2 % (the SwiGLU's three
128 x 352 matrices against the MLP's two 128 x 512, the untied output against the learned positions); the table
prints both counts. Both are evaluated every --eval-every steps until both reached --target or --max-steps; the
table gives each model's ms/step, tokens/s, steps and seconds of training to --target, and the steps and seconds the
modern decoder took to reach the transformer's last validation loss.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench.corpus import add_text_option, load_text

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # must precede importing TensorFlow; see the module docstring
SPLIT = None  # the whole text: the benchmark cuts its own validation part
CONFIG = {"model": "transformer", "context_length": 64, "d_model": 128, "num_heads": 4, "num_layers": 4,
          "dropout": 0.0, "positional": "learned"}
MODERN_CONFIG = {"model": "modern", "context_length": 64, "d_model": 128, "num_heads": 4, "num_kv_heads": 4,
                 "num_layers": 4}
BATCH = 12
EVAL_BATCHES, EVAL_BATCH_SIZE = 20, 64
MODE_ROUNDS = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_time_to_loss", description=__doc__.splitlines()[0])
    add_text_option(parser, SPLIT)
    parser.add_argument("--target", type=float, default=1.88, help="validation loss to reach")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop once training took this long")
    parser.add_argument("--lr", type=float, default=4e-3, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=50, help="linear warmup steps")
    parser.add_argument("--decay-steps", type=int, default=1200,
                        help="step at which the cosine decay reaches lr / 10")
    parser.add_argument("--beta2", type=float, default=0.99, help="AdamW's beta_2")
    parser.add_argument("--weight-decay", type=float, default=0.1, help="AdamW's decoupled weight decay")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between validation evaluations")
    parser.add_argument("--skip-modes", action="store_true",
                        help="skip the eager / tf.function / jit_compile comparison and train with tf.function")
    parser.add_argument("--jit-compile", action="store_true", help="with --skip-modes: train with jit_compile=True")
    parser.add_argument("--compare-modern", action="store_true",
                        help="train the transformer and part 6's modern decoder side by side instead")
    args = parser.parse_args(argv)
    for name in ("max_steps", "decay_steps", "eval_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.warmup < args.decay_steps:
        parser.error("--warmup must be >= 0 and smaller than --decay-steps")
    if not args.lr > 0 or args.weight_decay < 0 or not 0 < args.beta2 < 1:
        parser.error("need --lr > 0, --weight-decay >= 0 and 0 < --beta2 < 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    text, source = load_text(args.text, SPLIT)
    import keras
    import numpy as np

    from assignment import loop, train
    from assignment.models import build_model
    from assignment.preprocess import CharTokenizer

    ids = np.asarray(CharTokenizer.train(text).encode(text), np.int32)
    cut = int(0.9 * len(ids))
    config = {**CONFIG, "vocab_size": int(ids.max()) + 1}
    print(f"{source}: {cut:,} training and {len(ids) - cut:,} validation characters")
    print(f"AdamW lr {args.lr:g}, warmup {args.warmup}, cosine to step {args.decay_steps}, beta2 {args.beta2:g}, "
          f"weight decay {args.weight_decay:g}, seed {args.seed}, evaluation every {args.eval_every} steps")

    def setup(jit: bool | None, model_config: dict = config):
        keras.utils.set_random_seed(args.seed)
        model = build_model(model_config)
        schedule = train.WarmupCosineSchedule(args.lr, args.warmup, args.decay_steps)
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=args.weight_decay, beta_2=args.beta2)
        optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) < 2])
        if jit is None:
            def step(x, y):
                return train.train_step(model, optimizer, x, y, clip_norm=1.0)
        else:
            step = train.make_train_step(model, optimizer, clip_norm=1.0, jit_compile=jit)
        return model, step, iter(loop.training_batches(ids[:cut], CONFIG["context_length"], BATCH, args.seed))

    valid = loop.validation_batches(ids[cut:], CONFIG["context_length"], EVAL_BATCH_SIZE)
    if args.compare_modern:
        modern = {**MODERN_CONFIG, "vocab_size": config["vocab_size"]}
        runs = {"transformer": setup(False), "modern": setup(False, modern)}
        compare(runs, args, lambda model: train.evaluate(model, valid, max_batches=EVAL_BATCHES)["loss"])
        return 0
    best = "jit_compile" if args.jit_compile else "tf.function"
    if not args.skip_modes:
        tokens = BATCH * CONFIG["context_length"]

        def seconds_per_step(step, batches, steps: int) -> float:
            start = time.perf_counter()
            for _ in range(steps):
                float(step(*next(batches))["loss"])
            return (time.perf_counter() - start) / steps

        modes = {name: setup(jit) for name, jit in (("eager", None), ("tf.function", False), ("jit_compile", True))}
        for _, step, batches in modes.values():
            seconds_per_step(step, batches, 3)  # tracing and compilation
        per_step = {"eager": seconds_per_step(*modes.pop("eager")[1:], 5)}
        for _ in range(MODE_ROUNDS):  # alternate, so that both compiled modes see the same load
            for name, (_, step, batches) in modes.items():
                per_step[name] = min(per_step.get(name, float("inf")), seconds_per_step(step, batches, 20))
        for name, value in per_step.items():
            print(f"{name:12s} {tokens / value:9,.0f} tokens/s")
        best = min(modes, key=per_step.get)
    model, step, batches = setup(best == "jit_compile")
    step(*next(batches))  # step 1 traces the function before the clock starts
    seconds, loss, n = 0.0, float("inf"), 1
    for n in range(2, args.max_steps + 1):
        start = time.perf_counter()
        float(step(*next(batches))["loss"])
        seconds += time.perf_counter() - start
        if n % args.eval_every == 0 or n == args.max_steps:
            loss = train.evaluate(model, valid, max_batches=EVAL_BATCHES)["loss"]
            print(f"step {n:5d}  {seconds:7.1f} s  validation loss {loss:.3f}", flush=True)
            if loss <= args.target or seconds > args.max_seconds:
                break
    reached = "reached" if loss <= args.target else "did not reach"
    print(f"{best}: {reached} validation loss {args.target} after {n} steps, {seconds:.1f} s of training, "
          f"{1000 * seconds / max(n - 1, 1):.1f} ms/step")
    return 0


def compare(runs: dict, args: argparse.Namespace, evaluate) -> None:
    """Train the (model, step, batches) of `runs` one step of each in turn; print the curves and the table."""
    import numpy as np

    names = list(runs)
    seconds = dict.fromkeys(names, 0.0)
    curves: dict[str, list[tuple[int, float, float]]] = {name: [] for name in names}  # (step, seconds, loss)
    for _, step, batches in runs.values():
        step(*next(batches))  # step 1 traces the function before the clock starts
    for n in range(2, args.max_steps + 1):
        for name, (_, step, batches) in runs.items():
            start = time.perf_counter()
            float(step(*next(batches))["loss"])
            seconds[name] += time.perf_counter() - start
        if n % args.eval_every == 0 or n == args.max_steps:
            for name, (model, _, _) in runs.items():
                curves[name].append((n, seconds[name], evaluate(model)))
            print(f"step {n:5d}  " + "  ".join(f"{name} {curves[name][-1][1]:6.1f} s loss {curves[name][-1][2]:.3f}"
                                              for name in names), flush=True)
            if all(curves[name][-1][2] <= args.target for name in names) or max(seconds.values()) > args.max_seconds:
                break

    def reach(name: str, target: float) -> str:
        hit = next(((step, s) for step, s, loss in curves[name] if loss <= target), None)
        return "not reached" if hit is None else f"{hit[0]:5d} steps {hit[1]:7.1f} s"

    tokens = BATCH * CONFIG["context_length"]
    last = curves[names[0]][-1][2]
    print(f"{'model':12s} {'params':>9s} {'ms/step':>8s} {'tokens/s':>9s} {'last loss':>9s}  "
          f"{'to loss ' + format(args.target, 'g'):>24s}  {f'to {names[0]} last loss {last:.3f}':>24s}")
    for name, (model, _, _) in runs.items():
        params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        per_step = seconds[name] / max(curves[name][-1][0] - 1, 1)
        print(f"{name:12s} {params:9,d} {1000 * per_step:8.1f} {tokens / per_step:9,.0f} {curves[name][-1][2]:9.3f}  "
              f"{reach(name, args.target):>24s}  {reach(name, last):>24s}")
    print(f"step time {names[1]} / {names[0]}: x{seconds[names[1]] / seconds[names[0]]:.2f} "
          f"(over the same {curves[names[0]][-1][0] - 1} steps, taken in turn)")


if __name__ == "__main__":
    sys.exit(main())
