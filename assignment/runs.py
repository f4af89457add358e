"""The training run directory (given): what `python -m assignment.trainer` writes and `python -m assignment.generate`
reads. This module is the one that knows its layout:

    DIR/config.json          model kind and hyperparameters, tokenizer kind, data and training settings
    DIR/tokenizer.json       the tokenizer, of the kind config.json's "tokenizer" names
    DIR/ckpt-STEP.*          the latest checkpoints: model, optimizer, step counter, data iterator, random state
    DIR/best/ckpt-STEP.*     the checkpoint of the lowest validation loss: model, step counter and that loss
    DIR/logs/{train,valid}/  TensorBoard logs

`load_run(DIR)` gives back the trained model (best checkpoint, else latest), its tokenizer and its config. The tokenizer
and model modules are imported only when they are needed, so this module imports even while a part is unfinished.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from .models import build_model

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
BEST_DIR = "best"
LOGS_DIR = "logs"

TOKENIZER_KINDS = {"char": "CharTokenizer", "bpe": "BPETokenizer"}
"""Tokenizer kind (config.json's "tokenizer", train's --tokenizer) -> the name of its class in preprocess.py."""


def tokenizer_class(kind: str) -> type:
    """The tokenizer class of `kind` (a key of TOKENIZER_KINDS); ValueError for another kind."""
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"config tokenizer must be one of {sorted(TOKENIZER_KINDS)}, got {kind!r}")
    from . import preprocess

    return getattr(preprocess, TOKENIZER_KINDS[kind])


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    """`write(partial)` to a file next to `path`, then rename it to `path`: `path` is never left half written."""
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


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


def save_config(directory: str | os.PathLike, config: dict) -> None:
    """Write `config` as the run directory's config.json (a whole new file, never a half-written one)."""
    text = json.dumps(config, indent=2) + "\n"
    _replace(Path(directory) / CONFIG_FILE, lambda path: path.write_text(text, encoding="utf-8"))


def tokenizer_path(directory: str | os.PathLike, config: dict) -> Path:
    """Where the run directory keeps its tokenizer (config.json's "tokenizer_file", tokenizer.json by default)."""
    return Path(directory) / config.get("tokenizer_file", TOKENIZER_FILE)


def load_tokenizer(directory: str | os.PathLike, config: dict):
    """The tokenizer saved in the run directory, of the kind config["tokenizer"] names."""
    kind = tokenizer_class(config.get("tokenizer"))
    path = tokenizer_path(directory, config)
    if not path.is_file():
        raise ValueError(f"the run directory has no tokenizer file {path.name!r}")
    return kind.load(path)


def save_tokenizer(directory: str | os.PathLike, config: dict, tokenizer) -> None:
    """Write `tokenizer` where `load_tokenizer` reads it (a whole new file, never a half-written one)."""
    _replace(tokenizer_path(directory, config), tokenizer.save)


def has_checkpoint(directory: str | os.PathLike) -> bool:
    """True when the run directory holds a checkpoint, the latest or the best one: a run there has trained."""
    folders = (Path(directory), Path(directory) / BEST_DIR)
    return any(tf.train.latest_checkpoint(str(folder)) for folder in folders if folder.is_dir())


def latest_weights(directory: str | os.PathLike) -> str | None:
    """Path prefix of the best checkpoint, else of the latest one in the run directory, else None."""
    directory = Path(directory)
    return tf.train.latest_checkpoint(str(directory / BEST_DIR)) or tf.train.latest_checkpoint(str(directory))


def check_checkpointable(model: keras.Model) -> None:
    """ValueError unless `tf.train.Checkpoint(model=model)` reaches every weight of the (built) model.

    Under Keras 3, layers kept only in a Python list are invisible to tf.train.Checkpoint: their weights would be
    silently left out of every checkpoint. A tuple of layers, or each layer assigned to an attribute, is visible.
    """
    reachable = {id(obj) for obj in tf.train.TrackableView(model).descendants()}
    missing = [weight.path for weight in model.weights if id(weight) not in reachable]
    if missing:
        raise ValueError(f"checkpoints of {type(model).__name__} would miss {len(missing)} variables, e.g. "
                         f"{missing[0]!r}: tf.train.Checkpoint does not see layers kept in a Python list; keep them in "
                         "a tuple or assign each layer to an attribute of the model")


def random_state(model: keras.Model) -> list[tf.Variable]:
    """The states of the model's random generators (its dropout layers'): the variables that are not weights.

    tf.train.Checkpoint(model=model) does not reach them (Keras keeps them outside TensorFlow's object graph), so a
    training checkpoint saves them next to the model: a resumed run then draws the dropout masks that an uninterrupted
    run would have drawn.
    """
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def load_run(directory: str | os.PathLike) -> tuple[keras.Model, object, dict]:
    """(model with the checkpoint's weights, tokenizer, config) of a training run directory.

    The model is built (called on a [1, 1] batch) before restoring, so that its variables exist to receive the
    weights; the optimizer, data iterator and random state in the checkpoint are ignored.

    Raises:
        ValueError: no config.json, no tokenizer, no checkpoint, or a checkpoint that does not fit the model.
    """
    config = load_config(directory)
    tokenizer = load_tokenizer(directory, config)
    path = latest_weights(directory)
    if path is None:
        raise ValueError(f"{os.fspath(directory)!r} has no checkpoint yet: train first (python -m assignment.trainer)")
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
