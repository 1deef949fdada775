"""Write a small image folder of another domain: grey drawings of shapes, one sub-folder per shape.

``python -m bench.make_image_folder --out data/shapes`` writes ``data/shapes/<shape>/<i>.png``
(10 classes x 40 images of 28x28 grey pixels by default): each a white outline or filled shape
at a random place, size and angle, with a random stroke and pixel noise, on a dark background.
It is the target of the cross-domain example in docs/transfer.md (a learngene evolved on the
built-in synthetic dataset, tested on these classes): a folder of class folders with no split,
like a user's own images. Seeded: the same arguments write the same files.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "disc", "square", "box", "triangle", "diamond", "cross", "bar", "ring", "star")
CANVAS = 4  # drawn at 4x the size, then shrunk: smooth edges


def _polygon(kind: str, centre, radius: float, angle: float) -> list[tuple[float, float]]:
    corners = {"square": 4, "box": 4, "triangle": 3, "diamond": 4, "star": 10}[kind]
    turn = angle + (math.pi / 4 if kind in ("square", "box") else 0.0)  # corners on the diagonals: upright
    points = []
    for i in range(corners):
        r = radius * (0.45 if kind == "star" and i % 2 else 1.0)
        a = turn + 2 * math.pi * i / corners
        points.append((centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)))
    return points


def draw_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size`` x ``size`` uint8 grey image of shape ``kind``, placed, sized and turned by ``rng``."""
    side = size * CANVAS
    image = Image.new("L", (side, side), int(rng.integers(0, 60)))
    draw = ImageDraw.Draw(image)
    radius = side * rng.uniform(0.22, 0.38)
    centre = side / 2 + rng.uniform(-0.12, 0.12, size=2) * side
    # squares stay upright and diamonds on a corner (within 10 degrees), or they would be one class
    upright = kind in ("square", "box", "diamond")
    angle = rng.uniform(-math.pi / 18, math.pi / 18) if upright else rng.uniform(0, 2 * math.pi)
    ink, stroke = int(rng.integers(170, 256)), max(2, int(side * rng.uniform(0.04, 0.09)))
    box = [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius]
    if kind in ("circle", "ring"):
        draw.ellipse(box, outline=ink, width=stroke if kind == "circle" else 3 * stroke)
    elif kind == "disc":
        draw.ellipse(box, fill=ink)
    elif kind in ("cross", "bar"):
        for a in ((angle, angle + math.pi / 2) if kind == "cross" else (angle,)):
            dx, dy = radius * math.cos(a), radius * math.sin(a)
            draw.line([(centre[0] - dx, centre[1] - dy), (centre[0] + dx, centre[1] + dy)], fill=ink, width=2 * stroke)
    else:
        points = _polygon(kind, centre, radius, angle)
        if kind in ("box", "star"):
            draw.polygon(points, fill=ink)
        else:
            draw.line(points + points[:1], fill=ink, width=stroke, joint="curve")
    pixels = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64)
    pixels += rng.normal(0, rng.uniform(5, 20), size=pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make_image_folder(out: str, classes: int = 10, per_class: int = 40, size: int = 28, seed: int = 0) -> list[str]:
    """Write ``out/<shape>/<i>.png`` for the first ``classes`` shapes; return the class names."""
    if not 2 <= classes <= len(SHAPES):
        raise ValueError(f"classes must be between 2 and {len(SHAPES)}")
    rng = np.random.default_rng(seed)
    names = list(SHAPES[:classes])
    for name in names:
        os.makedirs(os.path.join(out, name), exist_ok=True)
        for i in range(per_class):
            Image.fromarray(draw_shape(name, size, rng)).save(os.path.join(out, name, f"{i:03d}.png"))
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.make_image_folder", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write (made if missing)")
    parser.add_argument("--classes", type=int, default=10, help=f"shapes, 2 to {len(SHAPES)}")
    parser.add_argument("--per-class", type=int, default=40, help="images per shape")
    parser.add_argument("--size", type=int, default=28, help="side of the square images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if os.path.isdir(args.out) and os.listdir(args.out):
        print(f"error: {args.out!r} exists and is not empty; pass a new --out folder.", file=sys.stderr)
        return 2
    names = make_image_folder(args.out, args.classes, args.per_class, args.size, args.seed)
    print(f"{args.out}: {len(names)} classes x {args.per_class} images of {args.size}x{args.size} grey pixels "
          f"({', '.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
