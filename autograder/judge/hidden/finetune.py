"""Hidden tests of part 8: fine-tuning by freezing and by LoRA (finetune.py, section `finetune`).

The LoRA math is checked against Keras's own LoRA, recorded with the fixtures: `keras.layers.Dense(d_out,
use_bias=False).enable_lora(r, lora_alpha=alpha)` for a kernel [d_in, d_out] and `keras.layers.EinsumDense` with the
equation "nhk,hkd->nd" for an output kernel [H, hd, d] (its `lora_kernel_a` [H, hd, r] is our A [H hd, r]), with the
hidden W, A and B copied in: the adapted kernel, the outputs and the gradients of A and B. A merge is checked against
W + (alpha / r) A B in numpy. Freezing and LoRA training run on the probes' tiny transformer-shaped model (not the
submission's part-4 or part-6 model, so that a bug there costs nothing here), with the probes' own AdamW steps
(weight decay on): which weights changed says which were trainable. Parameter counts come from the tiny model's shapes.
"""

from __future__ import annotations

import numpy as np

from autograder.judge.hidden.common import as_array, close, expect_dict, expect_errors, expect_number
from autograder.judge.registry import TestFailure, hidden_test

PART = "finetune"

TINY = {"vocab_size": 11, "context_length": 8, "d_model": 8, "num_heads": 2, "num_layers": 3}
"""The probes' tiny model: token and position embeddings, 3 blocks (attention with query/key/value/output kernels, a
query and an output bias; LayerNorm; a Dense), a tied output layer with a bias."""
LORA_CASES = {"dense": ((7, 5), 1, 3, 2.0), "einsum": ((2, 4, 6), 2, 2, 5.0)}
"""Kernels of the LoRA oracle test by case: (kernel shape, input axes, rank, alpha); rank > 1 so that alpha and
alpha / r differ, and d_in != d_out so that a transposed A B cannot take the kernel's shape by accident."""
INIT_SHAPE, INIT_RANK = (64, 40), 8
INIT_STD_TOLERANCE = 0.25
"""A's standard deviation must be within 25 % of 1 / sqrt(d_in): over the 512 draws of A [64, 8] the sample standard
deviation of N(0, 1/64) has a relative standard error of about 3 %, so a correct draw fails with probability far below
1e-12, while He's or Glorot's scale (41 % and 37 % off) and N(0, 1) fail."""
MERGE_TOLERANCE = 1e-6
"""The outputs of the adapter after a merge equal those before within 1e-6 (absolute, entries of order 1): both are
the float32 sum W + (alpha / r) A B."""


def _lora_draws(ctx, case: str, shape: tuple[int, ...], input_axes: int, rank: int) -> dict[str, np.ndarray]:
    d_in, d_out = int(np.prod(shape[:input_axes])), int(np.prod(shape[input_axes:]))
    draws = {"kernel": (shape, 0.5), "a": ((d_in, rank), 0.5), "b": ((rank, d_out), 0.5), "x": ((4, d_in), 1.0),
             "cotangent": ((4, d_out), 1.0)}
    return {name: ctx.hidden(f"{case}/{name}", lambda size=size, std=std: ctx.rng.normal(0.0, std, size).astype(
        np.float32)) for name, (size, std) in draws.items()}


def _keras_lora(values: dict[str, np.ndarray], shape: tuple[int, ...], input_axes: int, rank: int,
                alpha: float) -> dict[str, np.ndarray]:
    """Keras's LoRA with the hidden values copied in: the adapted kernel, y = x W' and the gradients of A and B
    (reshaped to ours) of sum(y * cotangent)."""
    import keras
    import tensorflow as tf

    x = tf.constant(values["x"])
    if input_axes == 1:
        layer = keras.layers.Dense(shape[-1], use_bias=False)
        layer.build((None, shape[0]))
        inputs = x
    else:
        layer = keras.layers.EinsumDense("nhk,hkd->nd", output_shape=(shape[-1],), bias_axes=None)
        layer.build((None, *shape[:2]))
        inputs = tf.reshape(x, (-1, *shape[:2]))  # [N, H hd] -> [N, H, hd]
    layer.kernel.assign(values["kernel"])
    layer.enable_lora(rank, lora_alpha=alpha)
    layer.lora_kernel_a.assign(values["a"].reshape(layer.lora_kernel_a.shape))
    layer.lora_kernel_b.assign(values["b"])
    with tf.GradientTape() as tape:
        y = layer(inputs)
        loss = tf.reduce_sum(y * values["cotangent"])
    grad_a, grad_b = tape.gradient(loss, [layer.lora_kernel_a, layer.lora_kernel_b])
    return {"adapted": np.asarray(layer.kernel), "y": np.asarray(y),
            "grad_a": np.asarray(grad_a).reshape(values["a"].shape), "grad_b": np.asarray(grad_b)}


@hidden_test("LoRA: the adapted kernel W + (alpha / r) A B, its outputs and the gradients of A and B equal Keras's "
             "LoRA (Dense.enable_lora, EinsumDense) with the same W, A and B", PART, 2.0)
def test_lora_oracle(ctx) -> float | None:
    failures = []
    for case, (shape, input_axes, rank, alpha) in LORA_CASES.items():
        values = _lora_draws(ctx, case, shape, input_axes, rank)
        what = f"LoRA({rank}, {alpha:g}, input_axes={input_axes}) of a kernel {list(shape)} with A and B assigned"
        reply = expect_dict(ctx.call("finetune.lora_kernel", rank=rank, alpha=alpha, input_axes=input_axes, **values),
                            ("adapted", "y", "grad_a", "grad_b"), what)
        oracle: dict[str, np.ndarray] = {}  # Keras's results, computed once when the fixtures are recorded

        def keras_value(name, values=values, shape=shape, input_axes=input_axes, rank=rank, alpha=alpha, oracle=oracle):
            if not oracle:
                oracle.update(_keras_lora(values, shape, input_axes, rank, alpha))
            return oracle[name]

        expected = {name: ctx.expected(f"{case}/{name}", lambda name=name, keras_value=keras_value: keras_value(name))
                    for name in ("adapted", "y", "grad_a", "grad_b")}
        try:
            close(as_array(reply["adapted"], f"{what}: the adapted kernel", "f", shape), expected["adapted"],
                  f"{what}: the adapted kernel vs W + (alpha / r) A B (A B [d_in, d_out] reshaped to W's shape; the "
                  "scale is alpha / r)", 1e-5, 1e-5)
            close(as_array(reply["y"], f"{what}: x W'", "f", expected["y"].shape), expected["y"],
                  f"{what}: x W' vs Keras's LoRA", 1e-5, 1e-5)
            for name in ("grad_a", "grad_b"):
                close(as_array(reply[name], f"{what}: the gradient of {name[5:].upper()}", "f", expected[name].shape),
                      expected[name], f"{what}: the gradient of {name[5:].upper()} vs Keras's LoRA", 1e-4, 1e-4)
        except TestFailure as failure:
            failures.append(str(failure))
    if len(failures) == len(LORA_CASES):
        raise TestFailure(failures[0])
    return None if not failures else 0.5


@hidden_test("LoRA starts as the identity: B [r, d_out] zeros, A [d_in, r] drawn from N(0, 1 / d_in), weights named "
             "lora_a and lora_b, and the adapted kernel equal to W bit for bit", PART, 1.0)
def test_lora_init(ctx) -> None:
    kernel = ctx.hidden("kernel", lambda: ctx.rng.normal(0.0, 0.5, INIT_SHAPE).astype(np.float32))
    seed = ctx.hidden("seed", lambda: int(ctx.rng.integers(0, 2**31 - 1)))
    what = f"a new LoRA({INIT_RANK}, 16.0) built on a kernel {list(INIT_SHAPE)}"
    reply = expect_dict(ctx.call("finetune.lora_init", rank=INIT_RANK, alpha=16.0, input_axes=1, kernel=kernel,
                                 seed=seed), ("weights", "adapted"), what)
    weights = reply["weights"]
    if not isinstance(weights, dict) or sorted(weights) != ["lora_a", "lora_b"]:
        found = sorted(weights) if isinstance(weights, dict) else []
        raise TestFailure(f"{what}: the adapter must have exactly two weights, lora_a and lora_b (found {found}).")
    a = as_array(weights["lora_a"], f"{what}: lora_a", "f", (INIT_SHAPE[0], INIT_RANK))
    b = as_array(weights["lora_b"], f"{what}: lora_b", "f", (INIT_RANK, INIT_SHAPE[1]))
    if np.any(b != 0):
        raise TestFailure(f"{what}: B must start as zeros (so that the adapted model is the pretrained one).")
    expected_std = 1.0 / np.sqrt(INIT_SHAPE[0])
    if abs(float(np.std(a)) - expected_std) > INIT_STD_TOLERANCE * expected_std:
        raise TestFailure(f"{what}: A must be drawn from N(0, 1 / d_in) (standard deviation 1 / sqrt(d_in) = "
                          f"{expected_std:.3f}); its standard deviation is {float(np.std(a)):.3f}.")
    adapted = as_array(reply["adapted"], f"{what}: the adapted kernel", "f", INIT_SHAPE)
    if not np.array_equal(adapted, kernel):
        raise TestFailure(f"{what}: with B = 0 the adapted kernel must equal W exactly.")


@hidden_test("A model with fresh LoRA adapters on its attention kernels gives exactly the pretrained model's logits",
             PART, 1.0)
def test_identity_at_start(ctx) -> None:
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, TINY["vocab_size"], (2, 6)).astype(np.int32))
    seed = ctx.hidden("seed", lambda: int(ctx.rng.integers(0, 2**20)))
    what = "a tiny transformer with fresh LoRA(4, 8.0) adapters (adapters.add_lora) and the pretrained weights"
    reply = expect_dict(ctx.call("finetune.identity", config=TINY, seed=seed, rank=4, alpha=8.0, tokens=tokens),
                        ("pretrained", "adapted"), what)
    shape = (*tokens.shape, TINY["vocab_size"])
    adapted = as_array(reply["adapted"], f"the logits of {what}", "f", shape)
    if not np.array_equal(adapted, as_array(reply["pretrained"], "the pretrained model's logits", "f", shape)):
        raise TestFailure(f"{what}: its logits must equal the pretrained model's exactly (B = 0 at the start, so the "
                          "adapted kernels are W).")


@hidden_test("LoRA.merge folds (alpha / r) A B into the kernel, zeroes B, and leaves the adapted kernel unchanged",
             PART, 1.0)
def test_merge(ctx) -> None:
    shape, input_axes, rank, alpha = (3, 2, 5), 2, 2, 3.0
    values = _lora_draws(ctx, "merge", shape, input_axes, rank)
    what = f"LoRA({rank}, {alpha:g}, input_axes={input_axes}).merge(W) of a kernel {list(shape)}, A and B assigned"
    reply = expect_dict(ctx.call("finetune.merge", rank=rank, alpha=alpha, input_axes=input_axes,
                                 kernel=values["kernel"], a=values["a"], b=values["b"]),
                        ("before", "kernel", "b", "after"), what)
    expected = values["kernel"] + (alpha / rank) * (values["a"].astype(np.float64) @ values["b"]).reshape(shape)
    close(as_array(reply["kernel"], f"{what}: W after the merge", "f", shape), expected,
          f"{what}: W after the merge vs W + (alpha / r) A B", 1e-5, 1e-5)
    if np.any(as_array(reply["b"], f"{what}: B after the merge", "f", (rank, shape[-1])) != 0):
        raise TestFailure(f"{what}: B must be zeros after the merge (the update now lives in W).")
    close(as_array(reply["after"], f"{what}: the adapted kernel after the merge", "f", shape),
          as_array(reply["before"], f"{what}: the adapted kernel before the merge", "f", shape),
          f"{what}: the adapted kernel after the merge vs before it", MERGE_TOLERANCE, 0.0)


def _frozen(path: str, num_blocks: int) -> bool:
    return path.startswith(("token_embedding/", "position_embedding/",
                            *(f"block_{i}/" for i in range(num_blocks))))


@hidden_test("freeze(model, k): two AdamW steps with weight decay leave the token and position embeddings and the "
             "first k blocks bit-identical and change every other weight", PART, 1.5)
def test_freeze(ctx) -> float | None:
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, TINY["vocab_size"], (2, 6)).astype(np.int32))
    middle = ctx.hidden("k", lambda: int(ctx.rng.integers(1, TINY["num_layers"])))
    cases = (0, middle, TINY["num_layers"])
    failures = []
    for num_blocks in cases:
        what = f"freeze(model with {TINY['num_layers']} blocks, {num_blocks}) then two AdamW steps"
        reply = expect_dict(ctx.call("finetune.freeze", config=TINY, seed=num_blocks, num_blocks=num_blocks,
                                     tokens=tokens), ("changed",), what)
        changed = reply["changed"]
        if not isinstance(changed, dict) or not any(path.startswith("token_embedding/") for path in changed):
            raise TestFailure(f"{what}: the worker returned an unexpected reply.")
        wrong = sorted(path for path, moved in changed.items() if bool(moved) == _frozen(path, num_blocks))
        if wrong:
            failures.append(f"{what}: {len(wrong)} weights are wrongly {'un' if _frozen(wrong[0], num_blocks) else ''}"
                            f"frozen, e.g. {wrong[0]} (freeze the token and position embeddings and blocks[:k] "
                            "only: set trainable = False on those layers)")
    if len(failures) == len(cases):
        raise TestFailure(failures[0])
    return None if not failures else (len(cases) - len(failures)) / len(cases)


@hidden_test("train_only_adapters: the model's trainable variables are exactly the adapters' A and B, and AdamW "
             "steps change nothing else", PART, 1.5)
def test_adapters_only(ctx) -> None:
    tokens = ctx.hidden("tokens", lambda: ctx.rng.integers(0, TINY["vocab_size"], (2, 6)).astype(np.int32))
    seed = ctx.hidden("seed", lambda: int(ctx.rng.integers(0, 2**20)))
    what = "train_only_adapters on a tiny transformer with LoRA(2, 4.0) adapters, then two AdamW steps"
    reply = expect_dict(ctx.call("finetune.adapters_only", config=TINY, seed=seed, rank=2, alpha=4.0, tokens=tokens),
                        ("trainable", "changed"), what)
    expected = sorted(f"block_{i}/attention/{kernel}_lora/{weight}" for i in range(TINY["num_layers"])
                      for kernel in ("query_kernel", "key_kernel", "value_kernel", "output_kernel")
                      for weight in ("lora_a", "lora_b"))
    trainable, changed = reply["trainable"], reply["changed"]
    if not isinstance(trainable, list) or not isinstance(changed, dict):
        raise TestFailure(f"{what}: the worker returned an unexpected reply.")
    extra = sorted(set(trainable) - set(expected))
    if extra:
        raise TestFailure(f"{what}: {len(extra)} pretrained weights are still trainable, e.g. {extra[0]} (every "
                          "weight but the adapters' lora_a and lora_b must be frozen).")
    if sorted(trainable) != expected:
        raise TestFailure(f"{what}: the trainable variables must be the adapters' lora_a and lora_b, all "
                          f"{len(expected)} of them, got {len(trainable)}.")
    moved = sorted(path for path, value in changed.items() if value)
    if moved != expected:
        other = sorted(set(moved) ^ set(expected))
        raise TestFailure(f"{what}: the steps must change exactly the adapters' A and B; {other[0]} did not behave so.")


def _tiny_parameters(frozen: tuple[str, ...]) -> int:
    v, c, d, layers = TINY["vocab_size"], TINY["context_length"], TINY["d_model"], TINY["num_layers"]
    block = 4 * d * d + d + d + 2 * d + d * d + d  # 4 kernels, query bias [H, hd], output bias; LayerNorm; Dense
    sizes = {"token_embedding": v * d, "position_embedding": c * d, **{f"block_{i}": block for i in range(layers)}}
    return sum(sizes.values()) + v - sum(sizes[name] for name in frozen)


@hidden_test("trainable_parameters counts the entries of the trainable variables (full, and with frozen layers)",
             PART, 0.5)
def test_trainable_parameters(ctx) -> None:
    for frozen in ((), ("token_embedding", "position_embedding", "block_0"), ("block_1", "block_2")):
        what = "trainable_parameters of a tiny transformer" + (f" with {', '.join(frozen)} frozen" if frozen else "")
        reply = expect_dict(ctx.call("finetune.counts", config=TINY, seed=1, frozen=list(frozen)), ("count",), what)
        count = expect_number(reply["count"], what)
        if count != _tiny_parameters(frozen):
            raise TestFailure(f"{what}: expected {_tiny_parameters(frozen)} (the sizes of model.trainable_variables "
                              f"added up), got {count:g}.")


@hidden_test("LoRA and freeze refuse bad arguments with ValueError (rank < 1 or above min(d_in, d_out), alpha <= 0, "
             "more blocks than the model has)", PART, 0.5)
def test_argument_checks(ctx) -> None:
    expect_errors(ctx.call("finetune.argument_errors", config=TINY), "LoRA and freeze")
