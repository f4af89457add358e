"""Independent numpy oracles used at build time for expected values (and by the kit tests for power analysis).

Pure numpy and Python, written from the handout's definitions rather than from the reference solution.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


# ---------------------------------------------------------------------------------------------------- samplers
def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """float64 softmax; -inf entries get probability exactly 0."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def top_k_kept(logits: np.ndarray, k: int) -> np.ndarray:
    """bool [..., V]: logit >= the k-th largest logit of its row (k >= V keeps everything)."""
    logits = np.asarray(logits)
    k = min(int(k), logits.shape[-1])
    kth = -np.sort(-logits, axis=-1)[..., k - 1 : k]
    return logits >= kth


def mass_strictly_above(logits: np.ndarray) -> np.ndarray:
    """float64 [..., V]: total probability of the tokens strictly more probable than each token."""
    probs = softmax(logits)
    return np.sum(probs[..., None, :] * (probs[..., None, :] > probs[..., :, None]), axis=-1)


def top_p_kept(logits: np.ndarray, p: float) -> np.ndarray:
    """bool [..., V]: token i kept iff the mass of the tokens strictly more probable than i is < p."""
    return mass_strictly_above(logits) < p


def sampling_distribution(
    logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> np.ndarray:
    """Exact float64 distribution [V] of sample(): temperature, then top-k, then top-p, then softmax."""
    x = np.asarray(logits, dtype=np.float64) / temperature
    kept = np.ones(x.shape, dtype=bool)
    if top_k is not None:
        kept &= top_k_kept(x, top_k)
    if top_p is not None:
        kept &= top_p_kept(np.where(kept, x, -np.inf), top_p)
    return softmax(np.where(kept, x, -np.inf))


def mutant_distributions(
    logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> dict[str, np.ndarray]:
    """Distributions drawn by the classic sampler bugs, for the same arguments (only the relevant ones)."""
    x = np.asarray(logits, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    if temperature != 1.0:
        out["temperature multiplied instead of divided"] = sampling_distribution(x * temperature**2, temperature,
                                                                                 top_k, top_p)
        out["temperature ignored"] = sampling_distribution(x, 1.0, top_k, top_p)
        out["softmax before temperature"] = sampling_distribution(softmax(x), temperature, top_k, top_p)
    if top_k is not None and top_k < x.shape[-1]:
        out["k + 1 tokens kept"] = sampling_distribution(x, temperature, top_k + 1, top_p)
        if top_k > 1:
            out["k - 1 tokens kept"] = sampling_distribution(x, temperature, top_k - 1, top_p)
    if top_p is not None and top_p < 1.0:
        t = x / temperature
        probs = softmax(t)
        inclusive = mass_strictly_above(t) + probs
        if np.any(inclusive < top_p):
            out["crossing token dropped"] = softmax(np.where(inclusive < top_p, t, -np.inf))
        above = np.sort(np.unique(mass_strictly_above(t)))
        kept_levels = above[above < top_p]
        if kept_levels.size < above.size:
            one_more = above[kept_levels.size]
            out["one token past the crossing kept"] = softmax(np.where(mass_strictly_above(t) <= one_more, t, -np.inf))
        if temperature != 1.0:
            before = top_p_kept(x, top_p)
            out["top-p before temperature"] = softmax(np.where(before, t, -np.inf))
    return out


def merge_sparse_cells(counts: np.ndarray, expected: np.ndarray, min_expected: float) -> tuple[np.ndarray, np.ndarray]:
    """Pool chi-square cells so that every pooled cell has an expected count >= min_expected.

    Cells are sorted by expected count and accumulated from the smallest; a short remainder joins the last pooled
    cell. Returns (observed [K], expected [K]) with the same totals as the input.
    """
    order = np.argsort(expected, kind="stable")
    obs_groups: list[float] = []
    exp_groups: list[float] = []
    obs_acc = exp_acc = 0.0
    for i in order:
        obs_acc += counts[i]
        exp_acc += expected[i]
        if exp_acc >= min_expected:
            obs_groups.append(obs_acc)
            exp_groups.append(exp_acc)
            obs_acc = exp_acc = 0.0
    if exp_acc > 0:
        if exp_groups:
            obs_groups[-1] += obs_acc
            exp_groups[-1] += exp_acc
        else:
            obs_groups.append(obs_acc)
            exp_groups.append(exp_acc)
    return np.asarray(obs_groups), np.asarray(exp_groups)


def miss_probability(probs: np.ndarray, mutant: np.ndarray, n: int, alpha: float, min_expected: float) -> float:
    """Probability that `n` draws from `mutant` pass the goodness-of-fit test against `probs` at level `alpha`.

    A draw of a token with probability 0 under `probs` fails at once; otherwise the Pearson statistic on the pooled
    cells (pooled as the judge pools them) is approximately non-central chi-square with non-centrality
    n * sum((q - p)^2 / p).
    """
    impossible = probs <= 0
    no_impossible_draw = (1.0 - float(mutant[impossible].sum())) ** n
    order_counts, expected = merge_sparse_cells(mutant[~impossible] * n, probs[~impossible] * n, min_expected)
    if expected.size < 2:
        return no_impossible_draw
    from scipy import special  # recording only (the designs of the sampler tests): the judge never imports scipy

    df = expected.size - 1
    noncentrality = float(np.sum((order_counts - expected) ** 2 / expected))
    critical = special.chdtri(df, alpha)  # the chi-square quantile with upper tail alpha
    return no_impossible_draw * float(special.chndtr(critical, df, noncentrality))  # non-central chi-square cdf


# ---------------------------------------------------------------------------------------------------- BPE
def bpe_train_naive(chunks: Sequence[str], vocab_size: int) -> list[tuple[int, int]]:
    """Byte-level BPE by full recount each round: most frequent pair, ties -> smallest (left, right)."""
    words = [[list(chunk.encode("utf-8")), freq] for chunk, freq in Counter(chunks).items()]
    merges: list[tuple[int, int]] = []
    while 256 + len(merges) < vocab_size:
        counts: Counter = Counter()
        for ids, freq in words:
            for pair in zip(ids, ids[1:], strict=False):
                counts[pair] += freq
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        new_id = 256 + len(merges)
        merges.append(best)
        for word in words:
            word[0] = _merge(word[0], best, new_id)
    return merges


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def bpe_encode_naive(chunks: Sequence[str], merges: Sequence[tuple[int, int]]) -> list[int]:
    """Encode pre-tokenized chunks: in each chunk repeatedly apply the lowest-rank merge present."""
    rank = {tuple(pair): i for i, pair in enumerate(merges)}
    out: list[int] = []
    for chunk in chunks:
        ids = list(chunk.encode("utf-8"))
        while len(ids) > 1:
            present = [p for p in zip(ids, ids[1:], strict=False) if p in rank]
            if not present:
                break
            pair = min(present, key=rank.__getitem__)
            ids = _merge(ids, pair, 256 + rank[pair])
        out.extend(ids)
    return out



def bpe_encode_leftmost(chunks: Sequence[str], merges: Sequence[tuple[int, int]]) -> list[int]:
    """A classic wrong encoder: in each chunk, repeatedly apply the leftmost learned pair (not the lowest rank)."""
    rank = {tuple(pair): i for i, pair in enumerate(merges)}
    out: list[int] = []
    for chunk in chunks:
        ids = list(chunk.encode("utf-8"))
        while (pair := next((p for p in zip(ids, ids[1:], strict=False) if p in rank), None)) is not None:
            ids = _merge(ids, pair, 256 + rank[pair])
        out.extend(ids)
    return out

# ---------------------------------------------------------------------------------------------------- transformer
def positional_encoding(length: int, d_model: int) -> np.ndarray:
    """Interleaved sinusoidal encoding [length, d_model]: even dims sin, odd dims cos, float64."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    i2 = np.arange(0, d_model, 2, dtype=np.float64)[None, :]
    angle = pos / np.power(10000.0, i2 / d_model)
    pe = np.zeros((length, d_model))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return pe


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Scaled dot-product attention in float64; returns (output [..., Tq, dv], weights [..., Tq, Tk])."""
    scores = np.einsum("...qd,...kd->...qk", q.astype(np.float64), k.astype(np.float64)) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    weights = softmax(scores)
    return np.einsum("...qk,...kd->...qd", weights, v.astype(np.float64)), weights


# ---------------------------------------------------------------------------------------------------- train
def sequence_loss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy from logits [B, T, V] and labels [B, T], float64."""
    x = np.asarray(logits, dtype=np.float64)
    log_probs = x - x.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.asarray(labels)[..., None].astype(np.int64), axis=-1)
    return float(-picked.mean())

def embedding_model_sgd(weights: dict[str, np.ndarray], inputs: np.ndarray, labels: np.ndarray, learning_rate: float,
                        clip_norm: float | None = None) -> dict[str, list]:
    """Full-batch SGD on logits = tanh(E[tokens]) W + b, one step per batch, with dense gradients (float64).

    Args:
        weights: {"embedding": [V, D], "kernel": [D, V], "bias": [V]}.
        inputs, labels: int [S, B, T], the batch of each of S steps.
        learning_rate: the SGD learning rate.
        clip_norm: clip the gradients to this global norm (None: no clipping).
    Returns:
        {"losses": S losses before each update, "grad_norms": S global norms of the dense gradients before clipping,
         "weights": the weights after the last update as {name: array}}.
    """
    w = {name: np.asarray(value, dtype=np.float64).copy() for name, value in weights.items()}
    losses, grad_norms = [], []
    for x, y in zip(np.asarray(inputs), np.asarray(labels), strict=True):
        hidden = np.tanh(w["embedding"][x])  # [B, T, D]
        logits = hidden @ w["kernel"] + w["bias"]  # [B, T, V]
        probs = softmax(logits)
        n = y.size
        losses.append(float(-np.mean(np.log(np.take_along_axis(probs, y[..., None], axis=-1)))))
        d_logits = (probs - np.eye(probs.shape[-1])[y]) / n
        d_pre = (d_logits @ w["kernel"].T) * (1.0 - hidden**2)
        d_embedding = np.zeros_like(w["embedding"])
        np.add.at(d_embedding, x.reshape(-1), d_pre.reshape(-1, d_pre.shape[-1]))
        grads = {"embedding": d_embedding, "kernel": np.einsum("btd,btv->dv", hidden, d_logits),
                 "bias": d_logits.sum(axis=(0, 1))}
        norm = float(np.sqrt(sum(np.sum(g**2) for g in grads.values())))
        grad_norms.append(norm)
        scale = 1.0 if clip_norm is None else min(1.0, clip_norm / norm)
        for name, g in grads.items():
            w[name] -= learning_rate * scale * g
    return {"losses": losses, "grad_norms": grad_norms, "weights": w}


# ---------------------------------------------------------------------------------------------------- modern decoder
def rms_norm(x: np.ndarray, scale: np.ndarray, epsilon: float) -> np.ndarray:
    """x / sqrt(mean(x^2 over the last axis) + epsilon) * scale, in float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + epsilon) * np.asarray(scale, dtype=np.float64)


def rotary(x: np.ndarray, positions: np.ndarray, theta: float = 10000.0) -> np.ndarray:
    """Rotary position embedding of x [..., T, hd] at positions [T], halves pairing, float64: feature i pairs with
    i + hd/2 and the pair turns by positions[t] * theta^(-2i/hd)."""
    x = np.asarray(x, dtype=np.float64)
    half = x.shape[-1] // 2
    frequencies = float(theta) ** (-2.0 * np.arange(half) / x.shape[-1])
    angle = np.asarray(positions, dtype=np.float64)[:, None] * frequencies[None, :]  # [T, hd/2]
    cos, sin = np.cos(angle), np.sin(angle)
    first, second = x[..., :half], x[..., half:]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def swiglu(x: np.ndarray, gate: np.ndarray, up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """down(silu(x gate) * (x up)) with bias-free kernels gate, up [d, F] and down [F, d], float64."""
    x = np.asarray(x, dtype=np.float64)
    g = x @ gate
    return (g / (1.0 + np.exp(-g)) * (x @ up)) @ np.asarray(down, dtype=np.float64)


def grouped_query_attention(x: np.ndarray, weights: dict[str, np.ndarray], positions: np.ndarray,
                            theta: float = 10000.0) -> np.ndarray:
    """Causal grouped-query self-attention y [B, T, d] of x [B, T, d] in float64, without biases.

    weights: query_kernel [d, H, hd], key_kernel and value_kernel [d, H_kv, hd], output_kernel [H, hd, d]. q and k
    (never v) are rotated at `positions` [T]; query head j uses key/value head j // (H / H_kv).
    """
    x = np.asarray(x, dtype=np.float64)
    q, k, v = (np.einsum("btd,dhk->bhtk", x, weights[f"{name}_kernel"].astype(np.float64))
               for name in ("query", "key", "value"))
    q, k = rotary(q, positions, theta), rotary(k, positions, theta)
    groups = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1)
    length = x.shape[1]
    attended, _ = attention(q, k, v, np.tril(np.ones((length, length), dtype=bool)))
    return np.einsum("bhtk,hkd->btd", attended, weights["output_kernel"].astype(np.float64))


def modern_block(x: np.ndarray, weights: dict[str, np.ndarray], positions: np.ndarray, epsilon: float = 1e-6,
                 theta: float = 10000.0, prefix: str = "") -> np.ndarray:
    """Pre-norm block in float64: h = x + GQA(RMSNorm(x)), out = h + SwiGLU(RMSNorm(h)).

    weights keyed "<prefix>attention_norm/scale", "<prefix>attention/<query|key|value|output>_kernel",
    "<prefix>mlp_norm/scale", "<prefix>mlp/<gate|up|down>/kernel".
    """
    attention_weights = {f"{n}_kernel": weights[f"{prefix}attention/{n}_kernel"]
                         for n in ("query", "key", "value", "output")}
    h = np.asarray(x, dtype=np.float64)
    h = h + grouped_query_attention(rms_norm(h, weights[f"{prefix}attention_norm/scale"], epsilon),
                                    attention_weights, positions, theta)
    mlp = [weights[f"{prefix}mlp/{n}/kernel"].astype(np.float64) for n in ("gate", "up", "down")]
    return h + swiglu(rms_norm(h, weights[f"{prefix}mlp_norm/scale"], epsilon), *mlp)


def modern_language_model(weights: dict[str, np.ndarray], tokens: np.ndarray, num_layers: int,
                          epsilon: float = 1e-6, theta: float = 10000.0) -> np.ndarray:
    """Logits [B, T, V] in float64 of the modern decoder: h = E[tokens] (no positional embedding), `num_layers`
    pre-norm blocks ("block_<i>/..." weights, see `modern_block`), then final_norm and the untied output layer
    (logits = RMSNorm(h) W, W = "output_layer/kernel" [d, V], no bias)."""
    h = weights["token_embedding/embeddings"].astype(np.float64)[np.asarray(tokens)]
    positions = np.arange(h.shape[1])
    for i in range(num_layers):
        h = modern_block(h, weights, positions, epsilon, theta, prefix=f"block_{i}/")
    return rms_norm(h, weights["final_norm/scale"], epsilon) @ weights["output_layer/kernel"].astype(np.float64)


def adamw(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], learning_rate: float, beta_1: float,
          beta_2: float, epsilon: float, weight_decay: float) -> dict[str, np.ndarray]:
    """Parameters after each of S AdamW steps {name: [S, ...]} (float64), Keras's update: at step t = 1, 2, ...
    matrices (rank >= 2) first decay, p <- p - lr * weight_decay * p (vectors never do); then
    m <- m + (g - m)(1 - b1), v <- v + (g^2 - v)(1 - b2), p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps).

    grads: {name: [S, ...]}, the gradient of each step.
    """
    out = {}
    for name, value in params.items():
        p = np.asarray(value, dtype=np.float64).copy()
        m, v, steps = np.zeros_like(p), np.zeros_like(p), []
        for t, g in enumerate(np.asarray(grads[name], dtype=np.float64), start=1):
            if p.ndim >= 2:
                p = p - learning_rate * weight_decay * p
            m = m + (g - m) * (1 - beta_1)
            v = v + (g**2 - v) * (1 - beta_2)
            alpha = learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            p = p - alpha * m / (np.sqrt(v) + epsilon)
            steps.append(p.copy())
        out[name] = np.stack(steps)
    return out


def warmup_cosine(step: float, peak: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0) -> float:
    """The learning rate at optimizer step `step` (0 for the first update): peak * s / warmup_steps during the warmup,
    then final_lr + (peak - final_lr) * (1 + cos(pi * (s - warmup_steps) / (total_steps - warmup_steps))) / 2 up to
    total_steps, final_lr after."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    if step >= total_steps:
        return final_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return final_lr + (peak - final_lr) * 0.5 * (1.0 + np.cos(np.pi * progress))


# ---------------------------------------------------------------------------------------------------- n-grams
def ngram_count_rows(stream: Sequence[int], order: int) -> np.ndarray:
    """int64 [M, n + 1], sorted rows (context..., token, count): every window stream[i - n + 1 : i + 1], i >= n - 1."""
    stream = [int(t) for t in stream]
    grams = Counter(tuple(stream[i - order + 1 : i + 1]) for i in range(order - 1, len(stream)))
    return np.asarray(sorted([*gram, count] for gram, count in grams.items()), np.int64).reshape(-1, order + 1)


def ngram_probabilities(train: Sequence[int], order: int, vocab_size: int, epsilon: float,
                        context: Sequence[int]) -> np.ndarray:
    """float64 [V]: (count(ctx, x) + epsilon) / (count(ctx) + epsilon V) for ctx the last n - 1 ids of `context`
    (a shorter context is never counted, so it is uniform), counts over the windows of `train`."""
    width = order - 1
    context = tuple(int(t) for t in context)[len(context) - width :] if len(context) >= width else None
    counts = np.zeros(vocab_size)
    train = [int(t) for t in train]
    for i in range(width, len(train)):
        if context is not None and tuple(train[i - width : i]) == context:
            counts[train[i]] += 1
    return (counts + epsilon) / (counts.sum() + epsilon * vocab_size)


def ngram_log_likelihood(train: Sequence[int], order: int, vocab_size: int, epsilon: float,
                         stream: Sequence[int]) -> float:
    """sum over i = n - 1 .. T - 1 of ln p(stream[i] | stream[i - n + 1 : i]); positions before n - 1 are not scored."""
    stream = [int(t) for t in stream]
    return float(sum(np.log(ngram_probabilities(train, order, vocab_size, epsilon, stream[i - order + 1 : i])
                            [stream[i]]) for i in range(order - 1, len(stream))))
