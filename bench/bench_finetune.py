"""Benchmark: full fine-tuning vs freezing vs LoRA on the romances, from one pretrained transformer.

    python -m bench.bench_finetune [--out runs/bench_finetune] [--pretrain-steps 1000] [--steps 300]
        [--ranks 1 4 16] [--freeze-blocks 3] [--eval-batches 50]

Pretrains the default transformer of `python -m assignment.trainer` (character tokenizer, the default corpus, which
holds no romance) for --pretrain-steps steps, unless --out/base already holds that run, then fine-tunes it with
`python -m assignment.finetuner` on the romances (`data/splits/romances`) with every method: full, freeze (the
embedding and --freeze-blocks blocks) and LoRA at each rank of --ranks (alpha = 2 r), each for --steps steps with the
command's defaults otherwise. Both commands run as subprocesses, as a user runs them. Prints a table: trainable
parameters, the validation loss of the best checkpoint on the romances (what fine-tuning is for) and on the default
corpus's validation split (forgetting: the pretrained model's loss there is the first row), and the training time per
step that the fine-tuning command reported. Runs that already hold their last checkpoint are evaluated again, not
retrained.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
MS_PER_STEP = re.compile(r"(\d+) ms/step")


def run(argv: list[str]) -> str:
    """Run a command of the kit to its end; its output (the command's error on failure)."""
    result = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:1])} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def validation_losses(run_dir: Path, eval_batches: int) -> dict[str, float]:
    """The loss of the run's best model on the romances' and the default corpus's validation splits."""
    import numpy as np

    from assignment import loop, runs, train
    from data.prepare import ensure_splits

    model, tokenizer, config = runs.load_run(run_dir)
    losses = {}
    for corpus in ("romances", "shakespeare"):
        text = ensure_splits(corpus=corpus)["valid"].read_text(encoding="utf-8")
        ids = np.asarray(tokenizer.encode(text), np.int32)
        batches = loop.validation_batches(ids, config["context_length"], config["batch_size"])
        losses[corpus] = train.evaluate(model, batches, max_batches=eval_batches)["loss"]
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench_finetune", help="folder of the runs")
    parser.add_argument("--pretrain-steps", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps of every method")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--freeze-blocks", type=int, default=3, help="blocks frozen by the freeze method")
    parser.add_argument("--eval-batches", type=int, default=50, help="validation batches per loss (0: all)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    base = out / "base"
    run(["assignment.trainer", "--model", "transformer", "--out", str(base), "--steps", str(args.pretrain_steps),
         "--sample-tokens", "0"])
    eval_batches = args.eval_batches or None
    rows = [("pretrained (no fine-tuning)", "-", validation_losses(base, eval_batches), "-")]
    methods = [("full", []), ("freeze", ["--freeze-blocks", str(args.freeze_blocks)])]
    methods += [(f"lora r={rank}", ["--rank", str(rank), "--alpha", str(2 * rank)]) for rank in args.ranks]
    for name, options in methods:
        tuned = out / name.replace(" ", "-").replace("=", "")
        method = name.split()[0]
        output = run(["assignment.finetuner", "--from", str(base), "--method", method, *options, "--out", str(tuned),
                      "--steps", str(args.steps), "--sample-tokens", "0"])
        counts = re.search(r"^(?:full|freeze|lora) fine-tuning of .* \(([\d,]+) trainable", output, flags=re.M)
        timings = MS_PER_STEP.findall(output)
        rows.append((name, counts[1] if counts else "?", validation_losses(tuned, eval_batches),
                     f"{timings[-1]}" if timings else "- (already trained)"))
    print(f"\npretrained {args.pretrain_steps} steps, fine-tuned {args.steps} steps on the romances; validation loss "
          f"(nats per character) over {args.eval_batches or 'all'} batches of each split\n")
    print("| method | trainable parameters | romances valid loss | default valid loss (forgetting) | ms/step |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, count, losses, ms in rows:
        print(f"| {name} | {count} | {losses['romances']:.3f} | {losses['shakespeare']:.3f} | {ms} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
