"""Draw the handout's figures (numpy and Pillow only, so no plotting library is needed).

    python -m tools.make_figures [--out figures]

Writes `causal_mask.png` (which keys each query may attend to), `sampling.png` (how temperature, top-k and top-p
reshape one next-token distribution) and `rope.png` (rotary position embeddings: which features RoPE pairs and how fast
each pair turns). The sampling rules are computed here with numpy, independently of the reference samplers, and follow
the handout's definitions (ties at the top-k boundary are all kept; top-p keeps token i iff the probability of the
tokens strictly more probable than i is below p); so are RoPE's angles (pair i = features i and i + hd/2, turned by
position * theta^(-2i/hd)).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent

LOGITS = np.array([3.0, 2.2, 2.2, 1.6, 1.0, 0.6, 0.2, -0.3, -0.8, -1.5])
"""Next-token logits of a 10-token vocabulary used in the sampling figure (tokens 1 and 2 tie)."""

ROPE_HEAD_DIM, ROPE_THETA, ROPE_POSITIONS = 8, 10000.0, 7
"""The RoPE figure: head size hd = 8 (four pairs), theta = 10000 (pair i turns by 10^-i radians per position) and the
positions 0 .. 6 drawn on each pair's circle."""

BLUE, GREY, LIGHT, INK, WHITE = (59, 111, 182), (200, 200, 200), (236, 236, 236), (40, 40, 40), (255, 255, 255)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _centered(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, fill=INK) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((xy[0] - (right - left) / 2 - left, xy[1] - (bottom - top) / 2 - top), text, font=font, fill=fill)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def top_k_keep(logits: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the tokens whose logit is >= the k-th largest logit."""
    return logits >= np.sort(logits)[::-1][min(k, logits.size) - 1]


def top_p_keep(logits: np.ndarray, p: float) -> np.ndarray:
    """Boolean mask of the tokens i whose strictly-more-probable mass is < p."""
    probs = softmax(logits)
    return np.array([probs[probs > q].sum() < p for q in probs])


def sampling_panels() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(title, renormalised probabilities [V], kept mask [V]) for each panel of the sampling figure."""
    everything = np.ones_like(LOGITS, dtype=bool)
    panels = [
        ("T = 1 (unchanged)", softmax(LOGITS), everything),
        ("T = 0.5 (sharper)", softmax(LOGITS / 0.5), everything),
        ("T = 2 (flatter)", softmax(LOGITS / 2.0), everything),
    ]
    for title, keep in (
        ("top-k, k = 2 (tie kept)", top_k_keep(LOGITS, 2)),
        ("top-p, p = 0.8", top_p_keep(LOGITS, 0.8)),
    ):
        probs = np.where(keep, softmax(np.where(keep, LOGITS, -np.inf)), 0.0)
        panels.append((title, probs, keep))
    return panels


def causal_mask_figure(length: int = 8, cell: int = 40) -> Image.Image:
    """Grid of the causal mask: row i (query) may attend to column j (key) iff j <= i."""
    left, top = 110, 90
    image = Image.new("RGB", (left + length * cell + 30, top + length * cell + 60), WHITE)
    draw = ImageDraw.Draw(image)
    title, small, tiny = _font(18), _font(14), _font(12)
    _centered(draw, (image.width / 2, 22), "causal_mask(8): query i may attend to key j iff j <= i", title)
    _centered(draw, (left + length * cell / 2, 55), "key position j", small)
    for i in range(length):
        _centered(draw, (left + i * cell + cell / 2, top - 14), str(i), small)
        _centered(draw, (left - 16, top + i * cell + cell / 2), str(i), small)
        for j in range(length):
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 2, top + (i + 1) * cell - 2)
            allowed = j <= i
            draw.rectangle(box, fill=BLUE if allowed else LIGHT)
            _centered(
                draw,
                ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2),
                "True" if allowed else "-inf",
                tiny,
                fill=WHITE if allowed else (150, 150, 150),
            )
    _centered(draw, (40, top + length * cell / 2 - 10), "query", small)
    _centered(draw, (40, top + length * cell / 2 + 10), "position i", small)
    _centered(draw, (image.width / 2, top + length * cell + 22), "blue: mask True, the score is kept", tiny)
    caption = "grey: mask False, the score is set to a large negative value before the softmax"
    _centered(draw, (image.width / 2, top + length * cell + 40), caption, tiny)
    return image


def sampling_figure(width: int = 250, height: int = 230) -> Image.Image:
    """Bar charts of the next-token distribution after temperature, top-k and top-p (dropped tokens in grey)."""
    panels = sampling_panels()
    base = softmax(LOGITS)
    scale = max(float(p.max()) for _, p, _ in panels) * 1.08
    image = Image.new("RGB", (width * len(panels) + 20, height + 70), WHITE)
    draw = ImageDraw.Draw(image)
    title, small, tiny = _font(18), _font(14), _font(11)
    _centered(draw, (image.width / 2, 20), "How temperature, top-k and top-p reshape p(next token)", title)
    plot_top, plot_bottom = 70, height + 30
    for n, (name, probs, keep) in enumerate(panels):
        x0 = 20 + n * width
        _centered(draw, (x0 + width / 2 - 10, 50), name, small)
        draw.line((x0, plot_bottom, x0 + width - 30, plot_bottom), fill=INK)
        bar = (width - 30) / LOGITS.size
        for v in range(LOGITS.size):
            bx = x0 + v * bar + 2
            shown = probs[v] if keep[v] else base[v]
            y = min(plot_bottom - (plot_bottom - plot_top) * shown / scale, plot_bottom - 2)
            if keep[v]:
                draw.rectangle((bx, y, bx + bar - 4, plot_bottom - 1), fill=BLUE)
            else:
                draw.rectangle((bx, y, bx + bar - 4, plot_bottom - 1), fill=LIGHT, outline=GREY)
            _centered(draw, (bx + bar / 2 - 2, plot_bottom + 10), str(v), tiny)
    _centered(
        draw,
        (image.width / 2, height + 57),
        "token id on the x axis; blue: probability used for sampling (renormalised); grey: token removed by the filter",
        tiny,
    )
    return image


def rope_frequencies(head_dim: int = ROPE_HEAD_DIM, theta: float = ROPE_THETA) -> np.ndarray:
    """theta^(-2i/hd) for each pair i < hd/2: the angle in radians by which pair i turns per position."""
    return theta ** (-2.0 * np.arange(head_dim // 2) / head_dim)


def rope_rotate(x: np.ndarray, position: int, theta: float = ROPE_THETA) -> np.ndarray:
    """x [hd] at `position` rotated as the handout's rotary_embedding (halves pairing), in numpy."""
    half = x.size // 2
    angle = position * rope_frequencies(x.size, theta)
    first, second = x[:half], x[half:]
    cos, sin = np.cos(angle), np.sin(angle)
    return np.concatenate([first * cos - second * sin, second * cos + first * sin])


PAIR_COLORS = ((59, 111, 182), (214, 120, 40), (60, 150, 90), (170, 70, 150))


def rope_figure() -> Image.Image:
    """RoPE with the halves pairing: the features of one head (hd = 8) paired i with i + hd/2, and each pair's point
    (x_i, x_{i+hd/2}) = (1, 0) turned by position * theta^(-2i/hd) for the positions 0 .. 6."""
    hd, half = ROPE_HEAD_DIM, ROPE_HEAD_DIM // 2
    frequencies = rope_frequencies()
    image = Image.new("RGB", (1060, 440), WHITE)
    draw = ImageDraw.Draw(image)
    title, small, tiny = _font(18), _font(14), _font(12)
    heading = "RoPE (halves pairing), hd = 8, theta = 10000: pair i = (x_i, x_{i+hd/2}) turns by pos * theta^(-2i/hd)"
    _centered(draw, (image.width / 2, 22), heading, title)

    # Left: the features of one head, each pair in its colour, joined by a bracket below the boxes.
    left, top, cell = 30, 95, 50
    _centered(draw, (left + half * cell / 2, top - 18), "first half: i = 0 .. hd/2 - 1", tiny)
    _centered(draw, (left + half * cell + half * cell / 2, top - 18), "second half: i + hd/2", tiny)
    for feature in range(hd):
        pair = feature % half
        box = (left + feature * cell, top, left + (feature + 1) * cell - 4, top + 36)
        draw.rectangle(box, fill=PAIR_COLORS[pair])
        _centered(draw, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), f"x_{feature}", small, fill=WHITE)
    for pair in range(half):
        depth = top + 36 + 14 + 14 * pair
        xs = [left + feature * cell + (cell - 4) / 2 for feature in (pair, pair + half)]
        draw.line((xs[0], top + 37, xs[0], depth, xs[1], depth, xs[1], top + 37), fill=PAIR_COLORS[pair], width=3)
    rows_top = top + 36 + 14 + 14 * half + 26
    _centered(draw, (left + 60, rows_top), "pair i", small)
    _centered(draw, (left + 170, rows_top), "features", small)
    _centered(draw, (left + 320, rows_top), "radians per position", small)
    for pair in range(half):
        y = rows_top + 26 * (pair + 1)
        _centered(draw, (left + 60, y), str(pair), small, fill=PAIR_COLORS[pair])
        _centered(draw, (left + 170, y), f"x_{pair}, x_{pair + half}", small, fill=PAIR_COLORS[pair])
        _centered(draw, (left + 320, y), f"theta^(-{2 * pair}/{hd}) = {frequencies[pair]:g}", small,
                  fill=PAIR_COLORS[pair])

    # Right: one circle per pair, the point (1, 0) turned to each position's angle (darker = later position).
    radius, centre_y = 62, 250
    for pair in range(half):
        cx = 500 + pair * 150
        colour = PAIR_COLORS[pair]
        _centered(draw, (cx, centre_y - radius - 44), f"pair {pair}: (x_{pair}, x_{pair + half})", small, fill=colour)
        _centered(draw, (cx, centre_y - radius - 24), f"{frequencies[pair]:g} rad / position", tiny)
        draw.ellipse((cx - radius, centre_y - radius, cx + radius, centre_y + radius), outline=GREY, width=1)
        draw.line((cx - radius - 8, centre_y, cx + radius + 8, centre_y), fill=GREY)
        draw.line((cx, centre_y - radius - 8, cx, centre_y + radius + 8), fill=GREY)
        for position in range(ROPE_POSITIONS):
            point = rope_rotate(np.eye(hd)[pair], position)[[pair, pair + half]]
            px, py = cx + radius * point[0], centre_y - radius * point[1]
            shade = 0.25 + 0.75 * position / (ROPE_POSITIONS - 1)
            fill = tuple(int(255 - (255 - c) * shade) for c in colour)
            draw.ellipse((px - 5, py - 5, px + 5, py + 5), fill=fill, outline=INK if position == 0 else None)
            if pair == 0:
                _centered(draw, (cx + (radius + 16) * point[0], centre_y - (radius + 16) * point[1]), str(position),
                          tiny)
        _centered(draw, (cx, centre_y + radius + 24), f"across: x_{pair}, up: x_{pair + half}", tiny)
    notes = (
        "dots: the pair (1, 0) at positions 0, 1, ..., 6 (outlined: position 0, darker: later); numbers on pair 0: "
        "the position",
        "out_i = x_i cos(a) - x_{i+hd/2} sin(a),   out_{i+hd/2} = x_{i+hd/2} cos(a) + x_i sin(a),   "
        "a = pos * theta^(-2i/hd)",
    )
    for n, note in enumerate(notes):
        _centered(draw, (image.width / 2, 372 + 22 * n), note, small if n else tiny)
    return image


def save(image: Image.Image, path: Path) -> None:
    """Save as a small palette PNG."""
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.make_figures", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "figures", help="directory for the PNG files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    save(causal_mask_figure(), args.out / "causal_mask.png")
    save(sampling_figure(), args.out / "sampling.png")
    save(rope_figure(), args.out / "rope.png")
    print(f"wrote {args.out / 'causal_mask.png'}, {args.out / 'sampling.png'} and {args.out / 'rope.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
