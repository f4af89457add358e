"""Hidden tests of part 5 (train.py): loss, train_step, evaluate, and the checkpoint policy (when to save, the best
checkpoint, resuming).

The probes train a tiny one-hot -> Dense model defined by the grader, so only train.py is under test here. The
TensorBoard logs are written by given code (`fit`), so no test reads them back. Hidden inputs (token ids, logits,
checkpoint scenarios) are drawn here and the expected losses of hidden logits come from the numpy oracle in
`oracles.py`; both are recorded when the fixtures are built.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from autograder.judge.hidden.common import as_array, close, expect_dict, expect_number
from autograder.judge.hidden.oracles import embedding_model_sgd, sequence_loss
from autograder.judge.registry import TestFailure, hidden_test

PART = "train"
VOCAB_SIZE = 13
"""Vocabulary of the probes' tiny model, and the range of every hidden token id of its inputs and labels."""
LOSS_SHAPES = ((2, 5, 7), (1, 1, 3), (3, 4, 11))
"""(B, T, V) of the hidden sequence_loss cases."""
LEARNING_RATE = 0.5
CLIP_NORM = 1e-2
EVAL_BATCH_SIZE = 3


def _token_ids(ctx, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """Hidden int32 token ids of `shape`, uniform over the tiny model's vocabulary."""
    return ctx.hidden(key, lambda: ctx.rng.integers(0, VOCAB_SIZE, shape).astype(np.int32))


@hidden_test("sequence_loss equals the mean token cross-entropy and perplexity = exp(loss)", PART, 1.0)
def test_sequence_loss(ctx) -> None:
    for i, (b, t, v) in enumerate(LOSS_SHAPES):
        labels = ctx.hidden(f"labels/{i}", lambda b=b, t=t, v=v: ctx.rng.integers(0, v, (b, t)).astype(np.int32))
        logits = ctx.hidden(f"logits/{i}", lambda b=b, t=t, v=v: ctx.rng.normal(0.0, 3.0, (b, t, v)).astype(
            np.float32))
        expected = ctx.expected(f"loss/{i}", lambda labels=labels, logits=logits: sequence_loss(labels, logits))
        what = f"sequence_loss(labels {list(labels.shape)}, logits {list(logits.shape)})"
        reply = expect_dict(ctx.call("train.sequence_loss", labels=labels, logits=logits), ("loss", "perplexity"), what)
        loss = expect_number(reply["loss"], what)
        close(np.float64(loss), np.float64(expected), what, 1e-5, 1e-5)
        close(np.float64(expect_number(reply["perplexity"], f"perplexity of {what}")), np.exp(loss),
              "perplexity(loss)", 1e-4, 1e-5)


def _suitable_batch(batch: np.ndarray, seed: int) -> np.ndarray:
    """`batch` (inputs and labels [4, 6], stacked) if one SGD step of the reference lowers its loss, with and without
    clipping, and its gradient norm is well above CLIP_NORM (so that clipping changes the update); build time only."""
    import importlib

    from autograder.worker.probes.train import train_step

    reference = SimpleNamespace(module=lambda name: importlib.import_module(f"assignment.{name}"))
    for clip_norm in (None, CLIP_NORM):
        reply = train_step(reference, vocab_size=VOCAB_SIZE, seed=seed, inputs=batch[0], labels=batch[1],
                           learning_rate=LEARNING_RATE, clip_norm=clip_norm)
        if not (reply["grad_norm"] > 10 * CLIP_NORM and reply["loss_after"] < reply["loss_before"] - 1e-3):
            raise RuntimeError("the hidden training batch is unsuitable (gradient too small or loss not lowered); "
                               "rebuild with another seed")
    return batch


def _train_step(ctx, clip_norm: float | None) -> tuple[dict, dict[str, float], str]:
    batch = ctx.hidden("batch", lambda: _suitable_batch(
        ctx.rng.integers(0, VOCAB_SIZE, (2, 4, 6)).astype(np.int32), ctx.seed))
    what = "train_step(model, SGD, inputs, labels" + ("" if clip_norm is None else ", clip_norm=...") + ")"
    reply = expect_dict(ctx.call(
        "train.train_step", vocab_size=VOCAB_SIZE, seed=ctx.seed, inputs=batch[0], labels=batch[1],
        learning_rate=LEARNING_RATE, clip_norm=clip_norm,
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
    _, n, what = _train_step(ctx, CLIP_NORM)
    close(np.float64(n["reported_grad_norm"]), np.float64(n["grad_norm"]),
          f"{what}['grad_norm'] (global norm before clipping)", 1e-5, 1e-4)
    close(np.float64(n["update_norm"]), np.float64(LEARNING_RATE * CLIP_NORM),
          f"{what}: global norm of the SGD update (learning_rate * clip_norm after clipping)", 1e-6, 1e-3)


@hidden_test("train_step calls the model with training=True, so that dropout acts while training", PART, 1.0)
def test_train_step_training(ctx) -> None:
    inputs, labels = _token_ids(ctx, "inputs", (2, 6)), _token_ids(ctx, "labels", (2, 6))
    what = "train_step(model with dropout, SGD, inputs, labels)"
    reply = expect_dict(ctx.call("train.train_step_training", vocab_size=VOCAB_SIZE, seed=ctx.seed, inputs=inputs,
                                 labels=labels), ("flags",), what)
    flags = reply["flags"]
    if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    if not flags:
        raise TestFailure(f"{what}: the model was never called.")
    wrong = sorted({flag for flag in flags if not flag.startswith("True")})
    if wrong:
        raise TestFailure(f"{what}: called the model with training={', '.join(wrong)}; call model(inputs, "
                          "training=True) under the tape, or dropout never acts while training.")


@hidden_test("evaluate returns the token-weighted mean loss over all batches and perplexity = exp(loss)", PART, 1.0)
def test_evaluate(ctx) -> None:
    inputs, labels = _token_ids(ctx, "inputs", (7, 5)), _token_ids(ctx, "labels", (7, 5))
    batch = EVAL_BATCH_SIZE
    for max_batches in (None, 1):
        what = f"evaluate(model, dataset of batches of {batch} with a smaller last batch, max_batches={max_batches})"
        reply = expect_dict(ctx.call("train.evaluate", vocab_size=VOCAB_SIZE, seed=ctx.seed,
                                     inputs=inputs, labels=labels, batch_size=batch, max_batches=max_batches),
                            ("loss", "perplexity", "logits"), what)
        logits = as_array(reply["logits"], "model logits", "f", inputs.shape + (VOCAB_SIZE,))
        n = len(inputs) if max_batches is None else batch * max_batches
        loss = expect_number(reply["loss"], f"loss of {what}")
        close(np.float64(loss), np.float64(sequence_loss(labels[:n], logits[:n])), f"loss of {what}", 1e-5, 1e-5)
        close(np.float64(expect_number(reply["perplexity"], f"perplexity of {what}")), np.exp(loss),
              f"perplexity of {what} (exp(loss))", 1e-4, 1e-5)


# ---------------------------------------------------------------------------------------------------- embedding model
EMBED_DIM = 6
EMBED_LEARNING_RATE = 0.5
COMPILED_STEPS = 3
COMPILED_CLIP_NORM = 100.0
"""Far above the gradient norms of the compiled steps: clipping is asked for (its branch is traced) but changes
nothing, so a clipping slip costs the clipping test only."""
REPEATED_IDS = 3
"""The gradient-norm test draws its tokens from the ids 0 .. REPEATED_IDS - 1 only, so every id repeats."""


def _embedding_weights(ctx) -> dict[str, np.ndarray]:
    """Hidden initial weights of the probes' EmbeddingLanguageModel: embedding [V, D], kernel [D, V], bias [V]."""
    shapes = {"embedding": ((VOCAB_SIZE, EMBED_DIM), 0.8), "kernel": ((EMBED_DIM, VOCAB_SIZE), 0.8),
              "bias": ((VOCAB_SIZE,), 0.1)}
    return {name: ctx.hidden(f"weights/{name}", lambda shape=shape, std=std: ctx.rng.normal(0.0, std, shape).astype(
        np.float32)) for name, (shape, std) in shapes.items()}


def _sliced_norm(weights: dict[str, np.ndarray], inputs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(dense, per-occurrence) global gradient norms of one batch: the second counts the embedding gradient as one row
    per token occurrence (IndexedSlices taken as they come), the norm a correct train_step must not report."""
    dense = embedding_model_sgd(weights, inputs[None], labels[None], 0.0)["grad_norms"][0]
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    hidden = np.tanh(w["embedding"][inputs])
    probs = np.exp(hidden @ w["kernel"] + w["bias"])
    probs /= probs.sum(-1, keepdims=True)
    d_logits = (probs - np.eye(VOCAB_SIZE)[labels]) / labels.size
    d_rows = (d_logits @ w["kernel"].T) * (1.0 - hidden**2)
    d_embedding = np.zeros_like(w["embedding"])
    np.add.at(d_embedding, inputs.reshape(-1), d_rows.reshape(-1, EMBED_DIM))
    sliced = np.sqrt(dense**2 - np.sum(d_embedding**2) + np.sum(d_rows**2))
    return dense, float(sliced)


def _embedding_steps(ctx, what: str, inputs: np.ndarray, labels: np.ndarray, clip_norm: float | None,
                     compiled: bool, built: bool) -> tuple[dict, dict]:
    """The submission's reply and the oracle's answer for SGD steps on the embedding model."""
    weights = _embedding_weights(ctx)
    reply = expect_dict(ctx.call("train.embedding_steps", weights=weights, inputs=inputs, labels=labels,
                                 learning_rate=EMBED_LEARNING_RATE, clip_norm=clip_norm, compiled=compiled,
                                 built=built), ("losses", "grad_norms", "dtypes", "weights"), what)
    oracle: dict = {}

    def answer() -> dict:
        if not oracle:
            oracle.update(embedding_model_sgd(weights, inputs, labels, EMBED_LEARNING_RATE, clip_norm))
        return oracle

    expected = {"losses": ctx.expected("losses", lambda: answer()["losses"]),
                "grad_norms": ctx.expected("grad_norms", lambda: answer()["grad_norms"]),
                "weights": {name: ctx.expected(f"weights_after/{name}", lambda name=name: answer()["weights"][name])
                            for name in weights}}
    return reply, expected


def _check_steps(reply: dict, expected: dict, what: str, atol: float = 1e-5) -> None:
    """Reported losses and gradient norms per step, then the final weights, against the numpy oracle."""
    steps = len(expected["losses"])
    for key, words in (("losses", "the reported loss of each step (before its update)"),
                       ("grad_norms", "the reported grad_norm of each step (the dense gradients' global norm)")):
        values = reply[key]
        if not isinstance(values, list) or len(values) != steps:
            raise TestFailure(f"{what}: the worker returned an unexpected reply.")
        close(np.array([expect_number(v, f"{what}: {words}") for v in values]), np.array(expected[key]),
              f"{what}: {words}", atol, 1e-4)
    final = expect_dict(reply["weights"], ("embedding", "kernel", "bias"), what)
    for name in ("embedding", "kernel", "bias"):
        target = np.asarray(expected["weights"][name])
        close(as_array(final[name], f"{what}: {name}", "f", target.shape), target,
              f"{what}: the {name} weights after the updates (SGD on the dense gradients)", atol, 1e-4)


@hidden_test("train_step works on a fresh model whose variables do not exist before its first call", PART, 1.5)
def test_fresh_model(ctx) -> None:
    batch = ctx.hidden("batch", lambda: np.stack([ctx.rng.permutation(VOCAB_SIZE)[:12].reshape(1, 3, 4),
                                                  ctx.rng.integers(0, VOCAB_SIZE, (1, 3, 4))]).astype(np.int32))
    what = ("train_step(model, SGD, inputs, labels) on a subclassed Embedding -> Dense model never called before "
            "(read model.trainable_variables after the forward pass, inside or after the tape)")
    reply, expected = _embedding_steps(ctx, what, batch[0], batch[1], None, compiled=False, built=False)
    _check_steps(reply, expected, what)


@hidden_test("train_step reports the global norm of the dense gradients of an embedding with repeated ids", PART, 1.0)
def test_embedding_grad_norm(ctx) -> None:
    def draw() -> np.ndarray:
        weights = _embedding_weights(ctx)
        for _ in range(100):
            batch = np.stack([ctx.rng.integers(0, REPEATED_IDS, (1, 4, 6)),
                              ctx.rng.integers(0, VOCAB_SIZE, (1, 4, 6))]).astype(np.int32)
            dense, sliced = _sliced_norm(weights, batch[0, 0], batch[1, 0])
            if abs(dense - sliced) > 0.05 * dense:
                return batch
        raise RuntimeError("no hidden batch tells the dense gradient norm from the per-occurrence one")

    batch = ctx.hidden("batch", draw)
    what = (f"train_step(model, SGD, inputs, labels) on an Embedding -> Dense model, inputs with "
            f"only {REPEATED_IDS} distinct ids (the global norm of the dense gradients: tf.convert_to_tensor each "
            "IndexedSlices first)")
    reply, expected = _embedding_steps(ctx, what, batch[0], batch[1], None, compiled=False, built=True)
    _check_steps(reply, expected, what)


@hidden_test("make_train_step (train_step in tf.function) trains: the loss falls and every step matches the oracle",
             PART, 2.0)
def test_compiled_steps(ctx) -> None:
    def draw() -> np.ndarray:
        weights = _embedding_weights(ctx)
        for _ in range(100):
            inputs = ctx.rng.permutation(VOCAB_SIZE)[:10].reshape(2, 5)  # distinct ids: IndexedSlices are exact
            batch = np.stack([np.stack([inputs] * COMPILED_STEPS),  # the same batch every step: the loss must fall
                              np.stack([ctx.rng.integers(0, VOCAB_SIZE, (2, 5))] * COMPILED_STEPS)]).astype(np.int32)
            sgd = embedding_model_sgd(weights, batch[0], batch[1], EMBED_LEARNING_RATE, COMPILED_CLIP_NORM)
            losses = sgd["losses"]
            if (all(b < a - 1e-3 for a, b in zip(losses, losses[1:], strict=False))
                    and max(sgd["grad_norms"]) < COMPILED_CLIP_NORM / 10):
                return batch
        raise RuntimeError("no hidden batch whose loss falls at every step")

    batch = ctx.hidden("batch", draw)
    what = (f"{COMPILED_STEPS} steps of make_train_step(model, SGD, clip_norm=...) on one batch (train_step traced by "
            "tf.function: no .numpy(), float() or Python if on tensors inside it)")
    reply, expected = _embedding_steps(ctx, what, batch[0], batch[1], COMPILED_CLIP_NORM, compiled=True, built=True)
    _check_steps(reply, expected, what)


@hidden_test("sequence_loss and train_step return float32 scalars", PART, 0.25)
def test_step_dtypes(ctx) -> None:
    labels = _token_ids(ctx, "labels", (2, 3))
    logits = ctx.hidden("logits", lambda: ctx.rng.normal(0.0, 1.0, (2, 3, VOCAB_SIZE)).astype(np.float32))
    reply = expect_dict(ctx.call("train.sequence_loss", labels=labels, logits=logits), ("dtype",), "sequence_loss")
    if reply["dtype"] != "float32":
        raise TestFailure(f"sequence_loss(labels, logits): expected a float32 scalar tensor, got {reply['dtype']}.")
    weights = _embedding_weights(ctx)
    what = "train_step(model, SGD, inputs, labels)"
    reply = expect_dict(ctx.call("train.embedding_steps", weights=weights, inputs=labels[None], labels=labels[None],
                                 learning_rate=EMBED_LEARNING_RATE), ("dtypes",), what)
    wrong = [d for d in reply["dtypes"] if not d.endswith(": float32")]
    if wrong:
        raise TestFailure(f"{what}: 'loss' and 'grad_norm' must be float32 scalar tensors, got {', '.join(wrong)}.")


# ---------------------------------------------------------------------------------------------------- checkpoints
def schedule_scenario(rng: np.random.Generator) -> dict:
    """A run of maybe_save calls whose saves follow from arithmetic.

    Between saves the fake clock moves by less than checkpoint_minutes / (checkpoint_every + 1) per step, so it alone
    never triggers a save. Two clock jumps do: 0.6 of the interval at two consecutive steps that are not multiples of
    checkpoint_every (only the second one has the full interval since the last save behind it), and 1.5 intervals at
    one step of a later block. Every elapsed time stays at least a tenth of the interval away from the threshold.
    """
    every = int(rng.integers(3, 6))
    minutes = float(rng.choice([1.5, 2.0, 2.5]))
    interval = 60.0 * minutes
    steps = 4 * every + 2
    advances = np.round(rng.uniform(0.5, 0.9, steps) * interval / (every + 1), 3)
    first = every + int(rng.integers(1, every - 1))  # first and first + 1 are not multiples of every
    advances[first - 1] = advances[first] = 0.6 * interval
    advances[2 * every + int(rng.integers(1, every)) - 1] = 1.5 * interval
    return {"max_to_keep": int(rng.integers(2, 4)), "checkpoint_every": every, "checkpoint_minutes": minutes,
            "advances": [float(a) for a in advances]}


def expected_saves(checkpoint_every: int, checkpoint_minutes: float, advances: list[float]) -> tuple[list, list]:
    """(saved by step, saved because of the clock only) as the handout defines them: a save at every multiple of
    checkpoint_every and whenever checkpoint_minutes have passed since the last save (or since construction)."""
    now = last = 0.0
    saved, by_clock = [], []
    for step, seconds in enumerate(advances, start=1):
        now += seconds
        due_by_time = now - last >= 60.0 * checkpoint_minutes
        saved.append(step % checkpoint_every == 0 or due_by_time)
        by_clock.append(due_by_time and step % checkpoint_every != 0)
        if saved[-1]:
            last = now
    return saved, by_clock


@hidden_test("checkpoint policy saves every N steps and every N minutes and keeps N", PART, 1.0)
def test_checkpoint_schedule(ctx) -> None:
    scenario = ctx.hidden("scenario", lambda: schedule_scenario(ctx.rng))
    every, steps = scenario["checkpoint_every"], len(scenario["advances"])
    saved, by_clock = expected_saves(every, scenario["checkpoint_minutes"], scenario["advances"])
    assert sum(by_clock) >= 2, "the scenario must have saves due to the clock alone"
    what = (f"CheckpointPolicy(max_to_keep={scenario['max_to_keep']}, checkpoint_every={every}, checkpoint_minutes, "
            f"fake clock) and maybe_save at steps 1 to {steps}")
    reply = expect_dict(ctx.call("train.checkpoint_schedule", vocab_size=VOCAB_SIZE, seed=ctx.seed, **scenario),
                        ("saved", "kept"), what)
    answers = reply["saved"]
    if not isinstance(answers, list) or len(answers) != steps or not all(isinstance(a, bool) for a in answers):
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    multiples = [s % every == 0 for s in range(1, steps + 1)]
    if any(a and not e for a, e in zip(answers, saved, strict=True)):
        raise TestFailure(f"{what}: saved at a step that is not a multiple of checkpoint_every although fewer than "
                          "checkpoint_minutes had passed (by self.clock) since the last save.")
    if any(m and not a for a, m in zip(answers, multiples, strict=True)):
        raise TestFailure(f"{what}: did not save at a step that is a multiple of checkpoint_every.")
    if answers != saved:
        raise TestFailure(f"{what}: did not save at a step where checkpoint_minutes had passed since the last save "
                          "(compare self.clock() - self.last_save_time with the minutes in seconds).")
    expected_kept = [s for s, done in enumerate(saved, start=1) if done][-scenario["max_to_keep"]:]
    if reply["kept"] != expected_kept:
        raise TestFailure(f"{what}: the checkpoint files left in the directory are not the last max_to_keep saved.")


def best_scenario(rng: np.random.Generator) -> list[float]:
    """Validation losses: a first one, a worse one, an improvement, a tie with the best, an improvement, worse ones."""
    first = round(float(rng.uniform(2.5, 4.0)), 3)
    worse, better, further, worst = np.round(rng.uniform(0.05, 0.5, 4), 3)
    improved = round(first - better, 3)
    best = round(improved - further, 3)
    return [first, round(first + worse, 3), improved, improved, best, round(best + worst, 3), first]


@hidden_test("save_best saves only on a strict improvement", PART, 1.0)
def test_save_best(ctx) -> None:
    losses = ctx.hidden("losses", lambda: best_scenario(ctx.rng))
    expected = [loss < min(losses[:i], default=np.inf) for i, loss in enumerate(losses)]
    what = f"save_best(loss) called {len(losses)} times at steps 1, 2, ..."
    reply = expect_dict(ctx.call("train.checkpoint_best", vocab_size=VOCAB_SIZE, seed=ctx.seed, losses=losses),
                        ("answers", "best_loss", "best", "regular"), what)
    answers = reply["answers"]
    if not isinstance(answers, list) or len(answers) != len(losses):
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    wrong = [i for i, (a, e) in enumerate(zip(answers, expected, strict=True)) if a and not e]
    if wrong and losses[wrong[0]] == min(losses[: wrong[0]]):
        raise TestFailure(f"{what}: saved (returned True) for a loss equal to the best so far (a loss equal to the "
                          "best is no improvement: compare with <).")
    if wrong:
        raise TestFailure(f"{what}: saved (returned True) for a loss higher than the best so far (record each new "
                          "best in best_loss when saving, and compare with it).")
    if answers != expected:
        raise TestFailure(f"{what}: did not save (returned False) for a loss strictly lower than the best so far.")
    if expect_number(reply["best_loss"], f"best_loss after {what}") != min(losses):
        raise TestFailure(f"{what}: best_loss is not the lowest loss seen (assign it on every improvement).")
    if len(reply["best"]) != 1 or reply["regular"]:
        raise TestFailure(f"{what}: expected the single best checkpoint in directory/best (saved with best_manager) "
                          f"and no regular checkpoint, found {len(reply['best'])} in best/ and "
                          f"{len(reply['regular'])} in the directory.")


@hidden_test("save_best numbers the best checkpoint by its step", PART, 0.25)
def test_best_checkpoint_number(ctx) -> None:
    losses = ctx.hidden("losses", lambda: best_scenario(ctx.rng))
    what = f"save_best(loss) called {len(losses)} times at steps 1, 2, ..."
    reply = expect_dict(ctx.call("train.checkpoint_best", vocab_size=VOCAB_SIZE, seed=ctx.seed, losses=losses),
                        ("best",), what)
    if reply["best"] != [int(np.argmin(losses)) + 1]:
        raise TestFailure(f"{what}: the best checkpoint in directory/best must be numbered by the step it was saved "
                          "at (checkpoint_number=self.step), not by a count of best saves.")


def _same_arrays(actual, expected, what: str, atol: float = 0.0) -> None:
    if not isinstance(actual, list) or len(actual) != len(expected):
        count = len(actual) if isinstance(actual, list) else "no"
        raise TestFailure(f"{what}: expected {len(expected)} variables, found {count}.")
    for a, e in zip(actual, expected, strict=True):
        close(as_array(a, what, "fiu", e.shape), e, what, atol, 0.0)


@hidden_test("restore resumes model, optimizer and step exactly", PART, 1.5)
def test_restore(ctx) -> None:
    steps = ctx.hidden("steps", lambda: int(ctx.rng.integers(2, 5)))
    inputs, labels = (_token_ids(ctx, key, (steps + 1, 3, 5)) for key in ("inputs", "labels"))
    learning_rate = ctx.hidden("learning_rate", lambda: float(ctx.rng.uniform(0.01, 0.05)))
    what = ("restore() of a checkpoint saved after a few Adam updates, into a fresh unbuilt model, a fresh Adam and a "
            "fresh data iterator")
    reply = expect_dict(ctx.call("train.checkpoint_restore", vocab_size=VOCAB_SIZE, seed=ctx.seed, inputs=inputs,
                                 labels=labels, learning_rate=learning_rate, steps=steps),
                        ("returned", "step", "iterations", "next_item", "saved", "restored", "continued", "resumed"),
                        what)
    if reply["returned"] != steps:
        raise TestFailure(f"{what}: restore() did not return the restored step.")
    if reply["step"] != steps:
        raise TestFailure(f"{what}: the step counter was not restored.")
    saved, restored = reply["saved"], reply["restored"]
    expected_weights = [as_array(w, "saved weights", "f") for w in saved["weights"]]
    _same_arrays(restored["weights"], expected_weights,
                 f"{what}: the model's weights (build the model, then restore the whole checkpoint)")
    if reply["iterations"] != steps:
        raise TestFailure(f"{what}: the optimizer's iteration count was not restored.")
    _same_arrays(restored["optimizer"], [as_array(v, "saved optimizer variables", "fiu") for v in saved["optimizer"]],
                 f"{what}: the optimizer's variables (build the optimizer with optimizer.build("
                 "model.trainable_variables) before restoring, so that restore() fills its moments)")
    if reply["next_item"] != steps:
        raise TestFailure(f"{what}: the data iterator was not restored to its saved position.")
    continued, resumed = reply["continued"], reply["resumed"]
    if isinstance(resumed, str):
        raise TestFailure(f"{what}: one more Adam update of the restored model and optimizer fails ({resumed}); "
                          "build the model, then the optimizer on model.trainable_variables, then restore.")
    _same_arrays(resumed["weights"], [as_array(w, "weights", "f") for w in continued["weights"]],
                 f"{what}: the weights after one more update of the resumed run and of the uninterrupted run", 1e-6)


@hidden_test("restore resets the save clock, so the next timed checkpoint comes checkpoint_minutes after it", PART,
             0.5)
def test_restore_clock(ctx) -> None:
    scenario = ctx.hidden("scenario", lambda: {"checkpoint_every": int(ctx.rng.integers(3, 6)),
                                              "checkpoint_minutes": float(ctx.rng.choice([1.5, 2.0]))})
    interval = 60.0 * scenario["checkpoint_minutes"]
    what = ("a new CheckpointPolicy, restore() 0.8 checkpoint_minutes after its construction, then maybe_save at a "
            "step that is no multiple of checkpoint_every 0.4 checkpoint_minutes after the restore")
    reply = expect_dict(ctx.call("train.restore_clock", vocab_size=VOCAB_SIZE, seed=ctx.seed, before=0.8 * interval,
                                 after=0.4 * interval, **scenario), ("restored", "saved"), what)
    if reply["restored"] != scenario["checkpoint_every"]:
        raise TestFailure(f"{what}: restore() did not return the restored step.")
    if reply["saved"]:
        raise TestFailure(f"{what}: saved although fewer than checkpoint_minutes had passed since the restore (set "
                          "last_save_time to self.clock() when restoring).")
