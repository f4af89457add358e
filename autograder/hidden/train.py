"""Hidden tests of part 5 (train.py): loss, train_step, evaluate, checkpoint policy, resume and TensorBoard logs.

The probes train a tiny Embedding -> Dense model defined by the grader, so only train.py is under test here.
"""

from __future__ import annotations

import numpy as np

from ..registry import TestFailure, hidden_test
from .common import as_array, close, expect_dict, expect_number
from .oracles import sequence_loss

PART = "train"


@hidden_test("sequence_loss equals the mean token cross-entropy and perplexity = exp(loss)", PART, 1.0)
def test_sequence_loss(ctx) -> None:
    for i in range(ctx.fixtures["train/loss_cases"]):
        labels, logits = ctx.fixtures[f"train/loss/{i}/labels"], ctx.fixtures[f"train/loss/{i}/logits"]
        what = f"sequence_loss(labels {list(labels.shape)}, logits {list(logits.shape)})"
        reply = expect_dict(ctx.call("train.sequence_loss", labels=labels, logits=logits), ("loss", "perplexity"), what)
        loss = expect_number(reply["loss"], what)
        close(np.float64(loss), np.float64(sequence_loss(labels, logits)), what, 1e-5, 1e-5)
        close(np.float64(expect_number(reply["perplexity"], f"perplexity of {what}")), np.exp(loss),
              "perplexity(loss)", 1e-4, 1e-5)


def _train_step(ctx, clip_norm):
    fx = ctx.fixtures
    what = "train_step(model, SGD, inputs, labels" + ("" if clip_norm is None else ", clip_norm=...") + ")"
    reply = expect_dict(ctx.call(
        "train.train_step", vocab_size=fx["train/vocab_size"], seed=ctx.seed, inputs=fx["train/inputs"],
        labels=fx["train/labels"], learning_rate=fx["train/learning_rate"], clip_norm=clip_norm,
    ), ("loss_before", "loss_after", "reported_loss", "reported_grad_norm", "grad_norm", "update_norm", "changes",
        "names"), what)
    numbers = {k: expect_number(reply[k], f"{k} of {what}") for k in
               ("loss_before", "loss_after", "reported_loss", "reported_grad_norm", "grad_norm", "update_norm")}
    return reply, numbers, what


@hidden_test("train_step lowers the loss on a fixed batch, changes every variable, reports loss and grad_norm", PART,
             1.5)
def test_train_step(ctx) -> None:
    reply, n, what = _train_step(ctx, None)
    close(np.float64(n["reported_loss"]), np.float64(n["loss_before"]),
          f"{what}['loss'] (the loss of the batch before the update)", 1e-5, 1e-4)
    close(np.float64(n["reported_grad_norm"]), np.float64(n["grad_norm"]),
          f"{what}['grad_norm'] (global norm of the gradients before clipping)", 1e-5, 1e-4)
    if not n["loss_after"] < n["loss_before"] - 1e-4:
        raise TestFailure(f"{what}: one step did not lower the loss on the same batch.")
    changes = as_array(reply["changes"], "variable changes", "f", (len(reply["names"]),))
    frozen = [str(name) for name, c in zip(reply["names"], changes, strict=False) if c == 0.0]
    if frozen:
        raise TestFailure(f"{what}: these trainable variables did not change: {', '.join(frozen)} (apply the "
                          "gradients to model.trainable_variables).")


@hidden_test("train_step with clip_norm clips the gradients by their global norm", PART, 1.0)
def test_train_step_clipping(ctx) -> None:
    clip = ctx.fixtures["train/clip_norm"]
    _, n, what = _train_step(ctx, clip)
    close(np.float64(n["reported_grad_norm"]), np.float64(n["grad_norm"]),
          f"{what}['grad_norm'] (global norm before clipping)", 1e-5, 1e-4)
    close(np.float64(n["update_norm"]), np.float64(ctx.fixtures["train/learning_rate"] * clip),
          f"{what}: global norm of the SGD update (learning_rate * clip_norm after clipping)", 1e-6, 1e-3)


@hidden_test("evaluate returns the token-weighted mean loss over all batches and perplexity = exp(loss)", PART, 1.0)
def test_evaluate(ctx) -> None:
    fx = ctx.fixtures
    inputs, labels, batch = fx["train/eval_inputs"], fx["train/eval_labels"], fx["train/eval_batch_size"]
    for max_batches in (None, 1):
        what = f"evaluate(model, dataset of batches of {batch} with a smaller last batch, max_batches={max_batches})"
        reply = expect_dict(ctx.call("train.evaluate", vocab_size=fx["train/vocab_size"], seed=ctx.seed,
                                     inputs=inputs, labels=labels, batch_size=batch, max_batches=max_batches),
                            ("loss", "perplexity", "logits"), what)
        logits = as_array(reply["logits"], "model logits", "f", inputs.shape + (fx["train/vocab_size"],))
        n = len(inputs) if max_batches is None else batch * max_batches
        loss = expect_number(reply["loss"], f"loss of {what}")
        close(np.float64(loss), np.float64(sequence_loss(labels[:n], logits[:n])), f"loss of {what}", 1e-5, 1e-5)
        close(np.float64(expect_number(reply["perplexity"], f"perplexity of {what}")), np.exp(loss),
              f"perplexity of {what} (exp(loss))", 1e-4, 1e-5)
