"""The model kinds of the command-line tools and the run directory they share.

`build_model(config)` makes a model from the fields of a run's `config.json`; `load_run(directory)` gives back a trained
model (best checkpoint, else latest), its tokenizer and its config, as `python -m stencil.generate` uses them.
The model modules are imported when a model is built, so this module imports even while a part is unfinished.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from .train import check_checkpointable

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ModelKind:
    """Where a model class lives and which config.json fields are its constructor's arguments."""

    module: str
    class_name: str
    arguments: tuple[str, ...]


MODEL_KINDS: dict[str, ModelKind] = {
    "rnn": ModelKind("rnn", "RNNLanguageModel", ("vocab_size", "embed_dim", "hidden_dim")),
    "lstm": ModelKind("lstm", "LSTMLanguageModel", ("vocab_size", "embed_dim", "hidden_dim")),
    "transformer": ModelKind(
        "transformer",
        "TransformerLanguageModel",
        ("vocab_size", "context_length", "d_model", "num_heads", "num_layers", "dropout", "positional"),
    ),
}
"""Model kind (config.json's "model") -> its class and constructor arguments."""


def build_model(config: dict) -> keras.Model:
    """A new (unbuilt) model of kind `config["model"]` with the constructor arguments taken from `config`.

    Raises:
        ValueError: unknown model kind or a missing argument.
    """
    kind = MODEL_KINDS.get(config.get("model"))
    if kind is None:
        raise ValueError(f"config model must be one of {sorted(MODEL_KINDS)}, got {config.get('model')!r}")
    missing = [name for name in kind.arguments if name not in config]
    if missing:
        raise ValueError(f"config for model {config['model']!r} lacks {', '.join(missing)}")
    module = importlib.import_module(f".{kind.module}", __package__)
    return getattr(module, kind.class_name)(**{name: config[name] for name in kind.arguments})


def load_config(directory: str | os.PathLike) -> dict:
    """The config.json of a run directory; ValueError when there is none or it is not a JSON object."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{os.fspath(directory)!r} is not a training run directory (no {CONFIG_FILE})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON object")
    return config


def load_tokenizer(directory: str | os.PathLike, config: dict):
    """The tokenizer saved in the run directory (a CharTokenizer or a BPETokenizer, as config["tokenizer"] says)."""
    from .preprocess import BPETokenizer, CharTokenizer

    kinds = {"char": CharTokenizer, "bpe": BPETokenizer}
    if config.get("tokenizer") not in kinds:
        raise ValueError(f"config tokenizer must be one of {sorted(kinds)}, got {config.get('tokenizer')!r}")
    path = Path(directory) / config.get("tokenizer_file", "tokenizer.json")
    if not path.is_file():
        raise ValueError(f"the run directory has no tokenizer file {path.name!r}")
    return kinds[config["tokenizer"]].load(path)


def latest_weights(directory: str | os.PathLike) -> str | None:
    """Path prefix of the best checkpoint (`directory/best`), else of the latest one in `directory`, else None."""
    return tf.train.latest_checkpoint(str(Path(directory) / "best")) or tf.train.latest_checkpoint(str(directory))


def load_run(directory: str | os.PathLike) -> tuple[keras.Model, object, dict]:
    """(model with the checkpoint's weights, tokenizer, config) of a training run directory.

    The model is built (called on a [1, 1] batch) before restoring, so that its variables exist to receive the
    weights; the optimizer and data iterator in the checkpoint are ignored.

    Raises:
        ValueError: no config.json, no tokenizer, no checkpoint, or a checkpoint that does not fit the model.
    """
    config = load_config(directory)
    tokenizer = load_tokenizer(directory, config)
    path = latest_weights(directory)
    if path is None:
        raise ValueError(f"{os.fspath(directory)!r} has no checkpoint yet: train first (python -m stencil.train)")
    model = build_model(config)
    model(tf.zeros([1, 1], tf.int32))
    check_checkpointable(model)
    status = tf.train.Checkpoint(model=model).restore(path).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError:
        raise ValueError(f"checkpoint {path} lacks weights of the model that {CONFIG_FILE} describes (written by "
                         "other model code?)") from None
    return model, tokenizer, config
