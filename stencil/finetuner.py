"""The command line `python -m stencil.finetuner` (given): fine-tune a trained transformer or modern model on a new
text, by full fine-tuning, freezing or LoRA (part 8's finetune.py).

    python -m stencil.finetuner --from runs/transformer --method lora --rank 4 --alpha 8 --out runs/lora
    python -m stencil.generate --checkpoint runs/lora --prompt "LEONTES:"

The base run (--from, written by `python -m stencil.trainer`) gives the model, its best weights and its tokenizer;
the fine-tuning text is the romances corpus (`python -m data.prepare --corpus romances`, four plays the default
pretraining never saw) or --text FILE. The run directory --out is laid out as runs.py describes: config.json is the
base run's model with a "finetune" record (and "lora" for LoRA, so that `generate` and `runs.load_run` rebuild the
adapters), checkpoints, the best checkpoint, TensorBoard logs. Ctrl-C saves a checkpoint of the current step; running
the same command again resumes exactly. A finished LoRA run also writes --out/merged, the model with every adapter
merged into its kernel (`LoRA.merge`): a plain run directory that `generate` and another fine-tuning read.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import runs
from .cli import OneLineErrorParser, UsageError, add_logging_arguments
from .console import Progress, StopRequest, report_interrupt
from .loop import fit, training_batches, validation_batches
from .models import build_model
from .trainer import make_optimizer, sample_prompt, splits_record, text_sampler

METHODS = ("full", "freeze", "lora")
MODELS = ("transformer", "modern")
"""The model kinds that fine-tuning adapts (the attention layers of parts 4 and 6 have adaptable kernels)."""
MERGED_DIR = "merged"
RESUME_FIELDS = ("from", "method", "freeze_blocks", "rank", "alpha", "batch_size", "seed")
"""The "finetune" fields of config.json that a resumed run must share with the command line."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m stencil.finetuner`."""
    parser = OneLineErrorParser(
        prog="python -m stencil.finetuner",
        description="Fine-tune a trained model on a new text; run the same command again to resume from the latest "
                    "checkpoint in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--from", dest="base", required=True, metavar="RUN",
                        help="run directory of the pretrained model (python -m stencil.trainer --out)")
    parser.add_argument("--text", metavar="FILE", help="UTF-8 text file to fine-tune on instead of the romances corpus")
    parser.add_argument("--splits-dir", metavar="DIR",
                        help="where its train/valid/test splits live (default: data/prepare.py's default)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory of the fine-tuned model")
    parser.add_argument("--method", default="lora", choices=METHODS,
                        help="full: train every weight; freeze: freeze the embedding and the first --freeze-blocks "
                             "blocks; lora: train low-rank adapters of the attention kernels only")
    parser.add_argument("--freeze-blocks", type=int, help="blocks to freeze with --method freeze (default: all but "
                                                          "the last)")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank r")
    parser.add_argument("--alpha", type=float, default=8.0, help="LoRA alpha (the update is scaled by alpha / r)")
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=int, default=300, help="total number of fine-tuning steps")
    group.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    group.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, warmup + cosine decay)")
    group.add_argument("--warmup-steps", type=int, default=30, help="linear warmup steps")
    group.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    group.add_argument("--clip-norm", type=float, default=1.0, help="clip gradients to this global norm (0: off)")
    group.add_argument("--seed", type=int, default=0, help="seed of the adapters' initialisation and the data order")
    group.add_argument("--jit", action="store_true", help="compile the train step with XLA")
    add_logging_arguments(parser, eval_every=100, checkpoint_every=100)
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    for name in ("steps", "batch_size", "log_every", "eval_every", "checkpoint_every", "keep"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("warmup_steps", "eval_batches", "sample_tokens", "weight_decay", "clip_norm"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not (args.lr > 0 and args.checkpoint_minutes > 0):
        raise UsageError("--lr and --checkpoint-minutes must be positive")
    if args.rank < 1:
        raise UsageError(f"--rank must be >= 1, got {args.rank}")
    if not (args.alpha > 0 and math.isfinite(args.alpha)):
        raise UsageError(f"--alpha must be a positive number, got {args.alpha}")
    if Path(args.out).resolve() == Path(args.base).resolve():
        raise UsageError(f"--out {args.out} is the --from run: fine-tune into another directory (the base run is "
                         "never overwritten)")


def load_base(base: str) -> tuple[dict, object]:
    """The base run's config.json and tokenizer; UsageError (naming --from) when it is not a trained run of a model
    that fine-tuning adapts."""
    try:
        config = runs.load_config(base)
        tokenizer = runs.load_tokenizer(base, config)
    except ValueError as error:
        raise UsageError(f"--from {base}: {error}") from None
    if not runs.has_checkpoint(base):
        raise UsageError(f"--from {base}: the run has no checkpoint yet (train it first)")
    if config.get("model") not in MODELS:
        raise UsageError(f"--from {base}: fine-tuning adapts {' and '.join(MODELS)} models, not "
                         f"{config.get('model')!r}")
    return config, tokenizer


def check_rank(rank: int, config: dict) -> None:
    """UsageError unless `rank` <= min(d_in, d_out) of every adapted kernel: d_model and the key/value width."""
    d_model, heads = config["d_model"], config["num_heads"]
    widths = (d_model, d_model // heads * config.get("num_kv_heads", heads))  # query/output, key/value [d, H_kv hd]
    if rank > min(widths):
        raise UsageError(f"--rank must be <= {min(widths)} (min(d_in, d_out) of the attention kernels of the --from "
                         f"model), got {rank}")


def load_texts(text_file: str | None, splits_dir: str | None) -> tuple[dict[str, str], Path]:
    """The train/valid/test texts of the romances corpus or of `text_file`, and the folder of their splits."""
    from data.prepare import CorpusError, ensure_splits

    try:
        paths = ensure_splits(splits_dir, text_file, option="--splits-dir",
                              corpus="shakespeare" if text_file is not None else "romances")
        texts = {split: path.read_bytes().decode("utf-8") for split, path in paths.items()}
    except (CorpusError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(str(exc)) from None
    return texts, paths["train"].parent


def encode_all(tokenizer, texts: dict[str, str]) -> dict[str, np.ndarray]:
    """The token ids of every split; UsageError when the base run's tokenizer cannot encode the text."""
    try:
        return {split: np.asarray(tokenizer.encode(text), np.int32) for split, text in texts.items()}
    except ValueError as error:
        raise UsageError(f"--text: the --from run's tokenizer cannot encode the fine-tuning text ({error}); "
                         "fine-tune a run whose tokenizer covers it (e.g. --tokenizer bpe)") from None


def run_config(args: argparse.Namespace, base_config: dict) -> dict:
    """config.json of the fine-tuned run: the base run's model and tokenizer, the fine-tuning text and settings."""
    config = {key: value for key, value in base_config.items() if key not in ("training", "splits", "finetune", "lora")}
    config.update(text=None if args.text is None else str(Path(args.text).resolve()), batch_size=args.batch_size,
                  seed=args.seed, tokenizer_file=runs.TOKENIZER_FILE)
    config["finetune"] = {"from": str(Path(args.base).resolve()), "method": args.method,
                          "freeze_blocks": args.freeze_blocks if args.method == "freeze" else None,
                          "rank": args.rank if args.method == "lora" else None,
                          "alpha": args.alpha if args.method == "lora" else None,
                          "batch_size": args.batch_size, "seed": args.seed}
    if args.method == "lora":
        config["lora"] = {"rank": args.rank, "alpha": args.alpha}
    config["training"] = {name: getattr(args, name) for name in (
        "steps", "lr", "warmup_steps", "weight_decay", "clip_norm", "jit", "log_every", "eval_every", "eval_batches",
        "checkpoint_every", "checkpoint_minutes", "keep")}
    config["training"]["optimizer"] = "keras"
    return config


def check_resume(out: Path, config: dict) -> dict | None:
    """The config.json of the fine-tuning run in `out` to resume, or None for a new run (`out` holds no run, or this
    fine-tuning stopped before its first checkpoint); UsageError when `out` holds another run, never overwritten."""
    if not runs.has_checkpoint(out) and not (out / runs.CONFIG_FILE).is_file():
        return None
    try:
        saved = runs.load_config(out)
    except ValueError as error:
        raise UsageError(f"--out {out} holds checkpoints of another run ({error}): use another --out") from None
    finetuned = saved.get("finetune") if isinstance(saved.get("finetune"), dict) else None
    if finetuned is None:
        raise UsageError(f"--out {out} holds another run (not a fine-tuning): use another --out")
    for field in RESUME_FIELDS:
        if finetuned.get(field) != config["finetune"].get(field):
            raise UsageError(f"--out {out} holds a fine-tuning with {field}={finetuned.get(field)!r}, not "
                             f"{config['finetune'].get(field)!r}: pass the same options to resume, or use another "
                             "--out")
    if saved.get("splits", {}).get("sha256") != config["splits"]["sha256"]:
        raise UsageError(f"--out {out} was fine-tuned on another text: pass the --text it used, or use another --out")
    return saved if runs.has_checkpoint(out) else None  # a fine-tuning that stopped before its first checkpoint


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy the weights of the built model `source` into the built `target` of the same architecture, whose LoRA
    adapters (if any) keep their own weights. A source with adapters has them merged into its kernels first."""
    from .adapters import adapted_kernels

    for adapter, kernel in adapted_kernels(source):
        adapter.merge(kernel)
    skipped = {id(w) for adapter, _ in adapted_kernels(source) + adapted_kernels(target) for w in adapter.weights}
    sources = [w for w in source.weights if id(w) not in skipped]
    targets = [w for w in target.weights if id(w) not in skipped]
    if [tuple(w.shape) for w in sources] != [tuple(w.shape) for w in targets]:
        raise ValueError("the base model's weights do not fit the fine-tuned model")
    for target_weight, source_weight in zip(targets, sources, strict=True):
        target_weight.assign(source_weight)


def prepare_model(config: dict, base: str, method: str, freeze_blocks: int | None) -> keras.Model:
    """The model to fine-tune: built, with the base run's best weights, frozen as `method` says (part 8's code)."""
    from . import finetune

    source, _, _ = runs.load_run(base)
    model = build_model(config)  # with the LoRA adapters when config["lora"]
    model(tf.zeros([1, 1], tf.int32))
    copy_weights(source, model)
    if method == "freeze":
        finetune.freeze(model, freeze_blocks)
    elif method == "lora":
        from .adapters import adapted_kernels

        finetune.train_only_adapters(model, [adapter for adapter, _ in adapted_kernels(model)])
    return model


def parameter_counts(config: dict, freeze_blocks: int, rank: int, alpha: float) -> dict[str, int]:
    """Trainable parameters of full fine-tuning, of freezing `freeze_blocks` blocks and of LoRA of rank `rank` on the
    model of `config` (fresh models: only the shapes matter)."""
    from . import finetune
    from .adapters import adapted_kernels

    plain = {key: value for key, value in config.items() if key != "lora"}
    counts = {}
    for method in METHODS:
        model = build_model({**plain, "lora": {"rank": rank, "alpha": alpha}} if method == "lora" else plain)
        model(tf.zeros([1, 1], tf.int32))
        if method == "freeze":
            finetune.freeze(model, freeze_blocks)
        elif method == "lora":
            finetune.train_only_adapters(model, [adapter for adapter, _ in adapted_kernels(model)])
        counts[method] = finetune.trainable_parameters(model)
    return counts


def export_merged(out: Path, config: dict) -> Path:
    """Write out/merged: the best weights of the LoRA run in `out` with every adapter merged into its kernel, as a
    plain run directory (config.json without "lora", tokenizer, one checkpoint)."""
    model, tokenizer, _ = runs.load_run(out)
    plain_config = {key: value for key, value in config.items() if key != "lora"}
    plain = build_model(plain_config)
    plain(tf.zeros([1, 1], tf.int32))
    copy_weights(model, plain)  # merges the adapters first
    merged = out / MERGED_DIR
    merged.mkdir(exist_ok=True)
    runs.save_tokenizer(merged, plain_config, tokenizer)
    runs.save_config(merged, plain_config)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=plain), str(merged), max_to_keep=1).save(
        checkpoint_number=config["training"]["steps"])
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m stencil.finetuner`: returns the exit status (2 for bad input, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        _check_arguments(args)
        base_config, tokenizer = load_base(args.base)
        num_blocks = base_config["num_layers"]
        if args.freeze_blocks is None:
            args.freeze_blocks = num_blocks - 1
        if not 0 <= args.freeze_blocks <= num_blocks:
            raise UsageError(f"--freeze-blocks must be in [0, {num_blocks}] (the --from model's blocks), got "
                             f"{args.freeze_blocks}")
        check_rank(args.rank, base_config)
        out = Path(args.out)
        config = run_config(args, base_config)
        texts, splits_dir = load_texts(args.text, args.splits_dir)
        config["splits"] = splits_record(splits_dir, texts)
        saved = check_resume(out, config)
        ids = encode_all(tokenizer, texts)
        context_length = base_config["context_length"]
        batches = training_batches(ids["train"], context_length, args.batch_size, args.seed)
        valid = validation_batches(ids["valid"], context_length, args.batch_size)
    except (UsageError, ValueError) as exc:  # ValueError: the text cannot make windows
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted before fine-tuning started: nothing was saved", file=sys.stderr)
        return 130
    out.mkdir(parents=True, exist_ok=True)
    if saved is None:
        runs.save_tokenizer(out, config, tokenizer)
    runs.save_config(out, config)
    try:
        return finetune_run(args, out, config, tokenizer, batches, valid, texts["valid"])
    except KeyboardInterrupt:
        return report_interrupt(tf.train.latest_checkpoint(str(out)))


def finetune_run(args: argparse.Namespace, out: Path, config: dict, tokenizer, batches: tf.data.Dataset,
                 valid: tf.data.Dataset, valid_text: str) -> int:
    """Prepare (or resume) the model, optimizer and checkpoint policy in `out` and run `fit`; returns the exit
    status."""
    from . import finetune, train

    counts = parameter_counts(config, args.freeze_blocks, args.rank, args.alpha)
    print(f"trainable parameters: full {counts['full']:,}, freeze (embedding + {args.freeze_blocks} blocks) "
          f"{counts['freeze']:,}, lora (rank {args.rank}) {counts['lora']:,}")
    keras.utils.set_random_seed(args.seed)
    model = prepare_model(config, args.base, args.method, args.freeze_blocks)
    args.optimizer = "keras"
    optimizer = make_optimizer(args)
    iterator = iter(batches)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    policy = train.CheckpointPolicy(out, model, optimizer, step, iterator, max_to_keep=args.keep,
                                    checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes)
    start = policy.restore()
    print(f"{args.method} fine-tuning of {args.base} ({finetune.trainable_parameters(model):,} trainable "
          "parameters): " + (f"resumed at step {start} from {policy.manager.latest_checkpoint}" if start
                             else f"new run in {out}"))
    if start >= args.steps:
        print(f"already fine-tuned for {start} steps (--steps {args.steps}): nothing to do")
        return 0
    sample = None
    if args.sample_tokens:
        sample = text_sampler(model, tokenizer, sample_prompt(valid_text), args.sample_tokens)
    with StopRequest() as stop:
        results = fit(model, optimizer, policy, iterator, args.steps, valid, clip_norm=args.clip_norm or None,
                      log_dir=out / runs.LOGS_DIR, log_every=args.log_every, eval_every=args.eval_every,
                      eval_batches=args.eval_batches or None, sample=sample, jit_compile=args.jit,
                      progress=Progress(args.steps, every=args.log_every), stop=stop)
    if results["step"] < args.steps:
        print(f"interrupted at step {results['step']}; saved {policy.manager.latest_checkpoint}: run the same "
              "command to resume", file=sys.stderr)
        return 130
    print(f"step {args.steps}: train loss {results['loss']:.4f}, valid loss {results['valid_loss']:.4f} "
          f"(perplexity {results['valid_perplexity']:.2f}); best checkpoint in {out / runs.BEST_DIR}")
    if args.method == "lora":
        print(f"merged adapters into the kernels: {export_merged(out, config)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
