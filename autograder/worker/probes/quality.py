"""Probe of the optional model-quality gate: the submitted checkpoint's negative log-likelihood of hidden text."""

from __future__ import annotations

import numpy as np

from .common import to_numpy
from .registry import probe

BATCH_SIZE = 16


@probe("quality.checkpoint_nll")
def checkpoint_nll(sub, run_dir: str, text: str) -> dict:
    """{"nll": total NLL (nats) of tokens 1..N-1 of the encoded text, "characters": characters those tokens cover}.

    The run is loaded with the submission's own runs.load_run (config.json, tokenizer, best or latest checkpoint).
    The token stream is cut into non-overlapping windows of the run's context length; every token except the first is
    predicted once, from the tokens before it in its window.
    """
    import tensorflow as tf

    model, tokenizer, config = sub.module("runs").load_run(run_dir)
    ids = np.asarray(tokenizer.encode(text), dtype=np.int32)
    context = int(config.get("context_length", 128))
    full = (len(ids) - 1) // context
    inputs = ids[: full * context].reshape(full, context)
    labels = ids[1 : full * context + 1].reshape(full, context)
    pieces = [(inputs[i : i + BATCH_SIZE], labels[i : i + BATCH_SIZE]) for i in range(0, full, BATCH_SIZE)]
    if full * context + 1 < len(ids):  # the shorter last window
        pieces.append((ids[full * context : -1][None, :], ids[full * context + 1 :][None, :]))
    nll = 0.0
    for inputs, labels in pieces:
        logits = model(tf.constant(inputs))
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant(labels), logits)
        nll += float(np.sum(to_numpy(losses), dtype=np.float64))
    characters = len(text) - len(tokenizer.decode(ids[:1].tolist()))
    return {"nll": nll, "characters": characters}
