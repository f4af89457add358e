"""Draw the handout's figures (numpy and Pillow only, so no plotting library is needed).

    python -m tools.make_figures [--out figures]

Writes `causal_mask.png` (which keys each query may attend to) and `sampling.png` (how temperature, top-k and top-p
reshape one next-token distribution). The sampling rules are computed here with numpy, independently of the reference
samplers, and follow the handout's definitions (ties at the top-k boundary are all kept; top-p keeps token i iff the
probability of the tokens strictly more probable than i is below p).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent

LOGITS = np.array([3.0, 2.2, 2.2, 1.6, 1.0, 0.6, 0.2, -0.3, -0.8, -1.5])
"""Next-token logits of a 10-token vocabulary used in the sampling figure (tokens 1 and 2 tie)."""

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
    print(f"wrote {args.out / 'causal_mask.png'} and {args.out / 'sampling.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
