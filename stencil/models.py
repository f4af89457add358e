"""The model kinds of the command-line tools (given): which class each kind is and which config.json fields are its
constructor's arguments.

`build_model(config)` makes a model from the fields of a run's config.json. The model modules are imported when a model
is built, so this module imports even while a part is unfinished.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

import keras


@dataclass(frozen=True)
class ModelKind:
    """Where a model class lives and which config.json fields are its constructor's arguments."""

    module: str
    class_name: str
    arguments: tuple[str, ...]


ALL_MODEL_KINDS: dict[str, ModelKind] = {
    "rnn": ModelKind("rnn", "RNNLanguageModel", ("vocab_size", "embed_dim", "hidden_dim")),
    "lstm": ModelKind("lstm", "LSTMLanguageModel", ("vocab_size", "embed_dim", "hidden_dim")),
    "transformer": ModelKind(
        "transformer",
        "TransformerLanguageModel",
        ("vocab_size", "context_length", "d_model", "num_heads", "num_layers", "dropout", "positional"),
    ),
    "modern": ModelKind(
        "modern",
        "ModernLanguageModel",
        ("vocab_size", "context_length", "d_model", "num_heads", "num_kv_heads", "num_layers"),
    ),
}
"""Model kind (config.json's "model") -> its class and constructor arguments: the kinds whose module this package has
(an assignment without part 2 has no rnn.py and lstm.py)."""


MODEL_KINDS = {name: kind for name, kind in ALL_MODEL_KINDS.items()
               if importlib.util.find_spec(f".{kind.module}", __package__) is not None}


def build_model(config: dict) -> keras.Model:
    """A new (unbuilt) model of kind `config["model"]` with the constructor arguments taken from `config`, and the
    LoRA adapters of a fine-tuned run (`adapters.add_lora`) when `config["lora"]` is {"rank": r, "alpha": alpha}.

    Raises:
        ValueError: unknown model kind or a missing argument.
    """
    kind = MODEL_KINDS.get(config.get("model"))
    if kind is None and config.get("model") in ALL_MODEL_KINDS:
        raise ValueError(f"model {config['model']!r} is not part of this assignment (models: {sorted(MODEL_KINDS)})")
    if kind is None:
        raise ValueError(f"config model must be one of {sorted(MODEL_KINDS)}, got {config.get('model')!r}")
    missing = [name for name in kind.arguments if name not in config]
    if missing:
        raise ValueError(f"config for model {config['model']!r} lacks {', '.join(missing)}")
    module = importlib.import_module(f".{kind.module}", __package__)
    model = getattr(module, kind.class_name)(**{name: config[name] for name in kind.arguments})
    if config.get("lora"):
        from .adapters import add_lora

        add_lora(model, config["lora"]["rank"], config["lora"]["alpha"])
    return model
