"""Write an image folder of another domain than the built-in dataset: handwritten-like glyphs.

``python -m bench.make_glyph_folder --out data/glyphs`` writes ``data/glyphs/glyph-<k>/<i>.png``
(100 classes x 60 images of 32x32 grey pixels by default). Each class is an invented character,
Omniglot-style: 2 to 4 strokes, each a smooth curve through 3 to 5 random control points. Each
image redraws the class's strokes as a new hand would: every control point moved a little, the
whole glyph shifted, scaled, sheared and turned a little, with its own stroke width and pixel
noise, dark ink on light paper. Where the built-in dataset is coloured compositions of filled
primitives, this is grey line drawings whose classes differ only in stroke layout: a second,
harder check of a learngene, which the project does not ship (README "Headline numbers").
Seeded: the same arguments write the same files.
"""
from __future__ import annotations

import sys

import numpy as np
from PIL import Image, ImageDraw

from bench.folder_writer import folder_writer_main, write_class_folders

CANVAS = 4  # drawn at 4x the size, then shrunk: smooth strokes


def invent_glyph(rng: np.random.Generator) -> list[np.ndarray]:
    """A class: 2-4 strokes, each ``[points, 2]`` control points in [-1, 1]^2."""
    return [rng.uniform(-0.8, 0.8, size=(int(rng.integers(3, 6)), 2)) for _ in range(int(rng.integers(2, 5)))]


def _smooth(points: np.ndarray, samples: int = 24) -> np.ndarray:
    """A Catmull-Rom curve through ``points`` (ends repeated), ``samples`` points per segment."""
    padded = np.vstack([points[:1], points, points[-1:]])
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    curve = []
    for p0, p1, p2, p3 in zip(padded[:-3], padded[1:-2], padded[2:-1], padded[3:]):
        curve.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                            + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3))
    return np.vstack(curve + [points[-1:]])


def draw_glyph(strokes: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size`` x ``size`` uint8 grey image of a glyph, as one hand would write it once."""
    angle, shear = rng.normal(0.0, 0.15), rng.normal(0.0, 0.15)
    scale = rng.uniform(0.8, 1.1)
    affine = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.array(
        [[1.0, shear], [0.0, 1.0]])
    shift = rng.uniform(-0.1, 0.1, size=2)
    side = size * CANVAS
    image = Image.new("L", (side, side), int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(image)
    ink, width = int(rng.integers(0, 70)), max(2, int(side * rng.uniform(0.03, 0.055)))
    for stroke in strokes:
        moved = stroke + rng.normal(0.0, 0.06, size=stroke.shape)  # the hand is never exact
        curve = _smooth(moved) @ affine.T + shift
        pixels = (curve * 0.45 + 0.5) * side
        draw.line([tuple(p) for p in pixels], fill=ink, width=width, joint="curve")
    grey = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64)
    grey += rng.normal(0.0, rng.uniform(3.0, 12.0), size=grey.shape)
    return np.clip(grey, 0, 255).astype(np.uint8)


def make_glyph_folder(out: str, classes: int = 100, per_class: int = 60, size: int = 32, seed: int = 0) -> list[str]:
    """Write ``out/glyph-<k>/<i>.png``; return the class names."""
    rng = np.random.default_rng(seed)
    names = [f"glyph-{k:03d}" for k in range(classes)]
    return write_class_folders(out, names, lambda: invent_glyph(rng), lambda strokes: draw_glyph(strokes, size, rng),
                               per_class)


def main(argv=None) -> int:
    return folder_writer_main(argv, "python -m bench.make_glyph_folder", __doc__, make_glyph_folder, "grey pixels")


if __name__ == "__main__":
    sys.exit(main())
