"""The command line `python -m stencil.trainer` (given): it puts every part together.

    python -m stencil.trainer --model transformer --out runs/transformer
    tensorboard --logdir runs

It prepares the train/valid/test splits (data/prepare.py), trains or loads the tokenizer, sets up the run directory
DIR (--out, laid out as runs.py describes), builds the model (models.py) and trains it with `loop.fit`: part 5's train
step, evaluation and checkpoint policy. Ctrl-C stops training after the current step and saves a checkpoint of it;
running the same command again resumes from the latest checkpoint and trains exactly as an uninterrupted run would.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import runs, train
from .cli import OneLineErrorParser, UsageError, add_logging_arguments
from .console import Progress, StopRequest, report_interrupt
from .loop import fit, training_batches, validation_batches
from .models import MODEL_KINDS, build_model

RESUME_FIELDS = ("model", "tokenizer", "bpe_vocab_size", "text", "context_length", "batch_size", "seed", "embed_dim",
                 "hidden_dim", "d_model", "num_heads", "num_kv_heads", "num_layers", "dropout", "positional")
"""config.json fields that a resumed run must share with the command line (the model, the data and their order)."""

OPTIMIZERS = ("keras", "own") if importlib.util.find_spec(".optim", __package__) is not None else ("keras",)
"""--optimizer: keras.optimizers.AdamW with train.py's schedule, or part 6's optim.py (when the assignment has it)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m stencil.trainer`."""
    parser = OneLineErrorParser(
        prog="python -m stencil.trainer",
        description="Train a language model; run the same command again to resume from the latest checkpoint in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, choices=sorted(MODEL_KINDS), help="model kind")
    parser.add_argument("--tokenizer", default="char", choices=sorted(runs.TOKENIZER_KINDS), help="tokenizer kind")
    parser.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size (with --tokenizer bpe)")
    parser.add_argument("--text", metavar="FILE", help="UTF-8 text file to train on instead of the default corpus")
    parser.add_argument("--splits-dir", metavar="DIR",
                        help="where the train/valid/test splits live (default: data/prepare.py's default)")
    parser.add_argument("--out", metavar="DIR", help="run directory (default runs/MODEL)")
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=int, default=1000, help="total number of training steps")
    group.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    group.add_argument("--context-length", type=int, default=128, help="tokens per window")
    group.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, warmup + cosine decay)")
    group.add_argument("--warmup-steps", type=int, default=100, help="linear warmup steps")
    group.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    group.add_argument("--optimizer", default="keras", choices=OPTIMIZERS,
                       help="keras: keras.optimizers.AdamW with train.py's schedule" + (
                           "; own: optim.py's AdamW and WarmupCosineSchedule" if "own" in OPTIMIZERS else ""))
    group.add_argument("--clip-norm", type=float, default=1.0, help="clip gradients to this global norm (0: off)")
    group.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the data order")
    group.add_argument("--jit", action="store_true", help="compile the train step with XLA")
    group = parser.add_argument_group("model (rnn, lstm)")
    group.add_argument("--embed-dim", type=int, default=64, help="embedding size D")
    group.add_argument("--hidden-dim", type=int, default=512, help="hidden size D_h")
    group = parser.add_argument_group("model (transformer, modern)")
    group.add_argument("--d-model", type=int, default=128, help="model width")
    group.add_argument("--num-heads", type=int, default=4, help="attention heads")
    group.add_argument("--kv-heads", type=int, dest="num_kv_heads",
                       help="key/value heads of the modern model's grouped-query attention, dividing --num-heads "
                            "(default: --num-heads; 1: multi-query attention)")
    group.add_argument("--num-layers", type=int, default=4, help="transformer blocks")
    group.add_argument("--dropout", type=float, default=0.0, help="dropout rate")
    group.add_argument("--positional", default="learned", choices=["sinusoidal", "learned"],
                       help="positional encoding (sinusoidal trains slower here: its unit-amplitude vectors dwarf the "
                            "small tied token embeddings)")
    add_logging_arguments(parser, eval_every=250, checkpoint_every=500)
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    positive = ("steps", "batch_size", "context_length", "log_every", "eval_every", "checkpoint_every", "keep",
                "embed_dim", "hidden_dim", "d_model", "num_heads", "num_layers")
    for name in positive:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_kv_heads < 1:
        raise UsageError(f"--kv-heads must be >= 1, got {args.num_kv_heads}")
    for name in ("warmup_steps", "eval_batches", "sample_tokens", "weight_decay", "clip_norm"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not (args.lr > 0 and args.checkpoint_minutes > 0 and 0 <= args.dropout < 1):
        raise UsageError("--lr and --checkpoint-minutes must be positive and --dropout in [0, 1)")
    if args.tokenizer == "bpe" and args.vocab_size < 256:
        raise UsageError(f"--vocab-size must be >= 256 (the byte vocabulary), got {args.vocab_size}")
    if args.model in ("transformer", "modern") and args.d_model % args.num_heads:
        raise UsageError(f"--d-model {args.d_model} must be a multiple of --num-heads {args.num_heads}")
    if args.model == "modern" and args.num_heads % args.num_kv_heads:
        raise UsageError(f"--num-heads {args.num_heads} must be a multiple of --kv-heads {args.num_kv_heads}")
    if args.model == "modern" and args.d_model // args.num_heads % 2:
        raise UsageError(f"--d-model / --num-heads = {args.d_model // args.num_heads} (the head size) must be even "
                         "for the rotary embedding")
    if args.optimizer == "own" and args.warmup_steps > args.steps:
        raise UsageError(f"--warmup-steps {args.warmup_steps} must be <= --steps {args.steps} with --optimizer own "
                         "(a schedule with warmup longer than the run)")


def run_config(args: argparse.Namespace) -> dict:
    """config.json of a run (without vocab_size, which the tokenizer gives): model kind and the hyperparameters of
    that kind, tokenizer, data, and the training settings under "training"."""
    config = {"model": args.model, "tokenizer": args.tokenizer, "tokenizer_file": runs.TOKENIZER_FILE,
              "text": None if args.text is None else str(Path(args.text).resolve()),
              "context_length": args.context_length, "batch_size": args.batch_size, "seed": args.seed}
    if args.tokenizer == "bpe":
        config["bpe_vocab_size"] = args.vocab_size
    config.update({name: getattr(args, name) for name in MODEL_KINDS[args.model].arguments if name in vars(args)})
    config["training"] = {name: getattr(args, name) for name in (
        "steps", "lr", "warmup_steps", "weight_decay", "optimizer", "clip_norm", "jit", "log_every", "eval_every",
        "eval_batches", "checkpoint_every", "checkpoint_minutes", "keep")}
    return config


def check_resume(out: Path, config: dict) -> dict | None:
    """The config.json of the run in `out` to resume, or None for a new run (also when `out` holds no checkpoint:
    what an earlier run that stopped before its first checkpoint left there is replaced); UsageError when the run in
    `out` is another one."""
    if not runs.has_checkpoint(out):
        return None
    if not (out / runs.CONFIG_FILE).is_file():
        raise UsageError(f"{out} holds checkpoints but no {runs.CONFIG_FILE}: use another --out to start a new run")
    try:
        saved = runs.load_config(out)
    except ValueError as error:
        raise UsageError(f"{error}: use another --out or remove the directory") from None
    if saved.get("model") != config["model"]:
        raise UsageError(f"{out} holds a run of model {saved.get('model')!r}, not {config['model']!r}: "
                         "use another --out to start a new run")
    for field in RESUME_FIELDS:
        if saved.get(field) != config.get(field):
            raise UsageError(f"{out} was trained with {field}={saved.get(field)!r}, not {config.get(field)!r}: "
                             "pass the same options to resume, or use another --out")
    training = saved.get("training") if isinstance(saved.get("training"), dict) else {}
    optimizer = training.get("optimizer", "keras")  # runs from before --optimizer used keras's
    if optimizer != config["training"]["optimizer"]:
        raise UsageError(f"{out} was trained with --optimizer {optimizer}, not {config['training']['optimizer']}: "
                         "pass the same options to resume, or use another --out")
    return saved


def check_same_splits(out: Path, saved: dict, config: dict) -> None:
    """UsageError when the run in `out` (config.json `saved`) was trained on other splits than `config["splits"]`."""
    before, now = saved.get("splits"), config["splits"]
    if isinstance(before, dict) and before.get("sha256") != now["sha256"]:
        where = "" if before.get("dir") == now["dir"] else f" (it used {before.get('dir')})"
        raise UsageError(f"{out} was trained on other train/valid/test splits than those in {now['dir']}{where}: "
                         "pass the --text and --splits-dir it was trained with to resume, or use another --out")


def load_texts(text_file: str | None, splits_dir: str | None) -> tuple[dict[str, str], Path]:
    """The train/valid/test texts of the default corpus or of `text_file` (split with data/prepare.py), and the
    folder of the splits."""
    from data.prepare import CorpusError, ensure_splits

    try:
        paths = ensure_splits(splits_dir, text_file, option="--splits-dir")
        texts = {split: path.read_bytes().decode("utf-8") for split, path in paths.items()}
    except (CorpusError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(str(exc)) from None
    return texts, paths["train"].parent


def splits_record(directory: Path, texts: dict[str, str]) -> dict:
    """config.json's "splits": the folder and a SHA-256 of the three texts, which a resumed run must match."""
    digest = hashlib.sha256()
    for split in sorted(texts):
        data = texts[split].encode("utf-8")
        digest.update(f"{split} {len(data)}\n".encode() + data)
    return {"dir": str(directory.resolve()), "sha256": digest.hexdigest()}


def make_tokenizer(out: Path | None, config: dict, texts: dict[str, str]):
    """The run's tokenizer: loaded from run directory `out` when given and it holds one (resuming), else trained.

    The character vocabulary covers all three splits, so that validation and test text encode; BPE learns its merges
    on the train split only (its byte base vocabulary covers any text). A trained tokenizer is not saved here: `main`
    writes it to the run directory once the run is set up.
    """
    if out is not None and runs.tokenizer_path(out, config).is_file():
        return runs.load_tokenizer(out, config)
    kind = runs.tokenizer_class(config["tokenizer"])
    if config["tokenizer"] == "char":
        return kind.train("".join(texts.values()))
    started = time.monotonic()
    tokenizer = kind.train(texts["train"], config["bpe_vocab_size"])
    print(f"trained BPE ({tokenizer.vocab_size} ids) in {time.monotonic() - started:.1f} s")
    return tokenizer


def sample_prompt(text: str) -> str:
    """The prompt of the TensorBoard text samples: the first line of `text` with its newline, at most 48 characters."""
    first_line = text.split("\n", 1)[0]
    return first_line[:48] if len(first_line) >= 48 or "\n" not in text else first_line + "\n"


def text_sampler(model: keras.Model, tokenizer, prompt: str, max_new_tokens: int, temperature: float = 0.8):
    """A function step -> prompt and continuation sampled with `samplers.generate` (seed = step)."""
    from .samplers import generate

    prompt_ids = tf.constant(tokenizer.encode(prompt), tf.int32)

    def sample(step: int) -> str:
        try:
            ids = generate(model, prompt_ids, max_new_tokens, temperature=temperature, seed=int(step))
        except NotImplementedError as exc:  # training works before part 3 is done
            return f"(no sample: {exc})"
        return tokenizer.decode(np.asarray(ids))

    return sample


def make_optimizer(args: argparse.Namespace) -> keras.optimizers.Optimizer:
    """The optimizer of --optimizer: keras's AdamW with train.py's schedule (`train.make_optimizer`), or part 6's
    `optim.AdamW` with `optim.WarmupCosineSchedule` decaying to a tenth of the peak (as train.py's schedule does)."""
    if args.optimizer == "keras":
        return train.make_optimizer(args.lr, args.warmup_steps, args.steps, args.weight_decay)
    from . import optim

    schedule = optim.WarmupCosineSchedule(args.lr, args.warmup_steps, args.steps, final_lr=0.1 * args.lr)
    return optim.AdamW(schedule, weight_decay=args.weight_decay)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m stencil.trainer`: returns the exit status (2 for bad input, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    if args.num_kv_heads is None:
        args.num_kv_heads = args.num_heads  # grouped-query attention with as many key/value heads: multi-head
    try:
        _check_arguments(args)
        out = Path(args.out or Path("runs") / args.model)
        config = run_config(args)
        saved = check_resume(out, config)
        texts, splits_dir = load_texts(args.text, args.splits_dir)
        config["splits"] = splits_record(splits_dir, texts)
        if saved is not None:
            check_same_splits(out, saved, config)
        tokenizer = make_tokenizer(out if saved is not None else None, config, texts)
        config["vocab_size"] = tokenizer.vocab_size
        train_ids = np.asarray(tokenizer.encode(texts["train"]), np.int32)
        valid_ids = np.asarray(tokenizer.encode(texts["valid"]), np.int32)
        batches = training_batches(train_ids, args.context_length, args.batch_size, args.seed)
        valid = validation_batches(valid_ids, args.context_length, args.batch_size)
    except (UsageError, ValueError) as exc:  # ValueError: the text cannot make windows
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted before training started: nothing was saved", file=sys.stderr)
        return 130
    # Only now, with the data ready, does the run directory get its files: a run that failed before its first
    # checkpoint leaves nothing that stops a retry with other settings (check_resume treats its directory as new).
    if saved is None and (out / runs.CONFIG_FILE).is_file():
        print(f"note: {out} holds no checkpoint (an earlier run there stopped before its first one): starting a new "
              "run there")
    out.mkdir(parents=True, exist_ok=True)
    if saved is None or not runs.tokenizer_path(out, config).is_file():
        runs.save_tokenizer(out, config, tokenizer)
    runs.save_config(out, config)
    try:
        return train_run(args, out, config, tokenizer, batches, valid, texts["valid"])
    except KeyboardInterrupt:  # before the training loop started, or a second Ctrl-C in it
        return report_interrupt(tf.train.latest_checkpoint(str(out)))


def train_run(args: argparse.Namespace, out: Path, config: dict, tokenizer, batches: tf.data.Dataset,
              valid: tf.data.Dataset, valid_text: str) -> int:
    """Build (or resume) the model, optimizer and checkpoint policy in `out` and run `fit`; returns the exit status."""
    keras.utils.set_random_seed(args.seed)
    model = build_model(config)
    optimizer = make_optimizer(args)
    iterator = iter(batches)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    policy = train.CheckpointPolicy(out, model, optimizer, step, iterator, max_to_keep=args.keep,
                                    checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes)
    start = policy.restore()
    print(f"{args.model}: {config['vocab_size']} {args.tokenizer} tokens; "
          + (f"resumed at step {start} from {policy.manager.latest_checkpoint}" if start else f"new run in {out}"))
    if start >= args.steps:
        print(f"already trained for {start} steps (--steps {args.steps}): nothing to do")
        return 0
    sample = None
    if args.sample_tokens:
        sample = text_sampler(model, tokenizer, sample_prompt(valid_text), args.sample_tokens)
    try:
        with StopRequest() as stop:
            results = fit(model, optimizer, policy, iterator, args.steps, valid, clip_norm=args.clip_norm or None,
                          log_dir=out / runs.LOGS_DIR, log_every=args.log_every, eval_every=args.eval_every,
                          eval_batches=args.eval_batches or None, sample=sample, jit_compile=args.jit,
                          progress=Progress(args.steps, every=args.log_every), stop=stop)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
        if not args.jit:
            raise
        first_line = error.message.strip().splitlines()[0] if error.message.strip() else type(error).__name__
        print(f"error: XLA could not compile the training step (--jit): {first_line}; run without --jit",
              file=sys.stderr)
        return 2
    if results["step"] < args.steps:
        print(f"interrupted at step {results['step']}; saved {policy.manager.latest_checkpoint}: run the same "
              "command to resume", file=sys.stderr)
        return 130
    print(f"step {args.steps}: train loss {results['loss']:.4f}, valid loss {results['valid_loss']:.4f} "
          f"(perplexity {results['valid_perplexity']:.2f}); best checkpoint in {out / runs.BEST_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
