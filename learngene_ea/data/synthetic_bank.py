"""The shared bank of the synthetic dataset, and how one class is composed from it.

Every class draws from the same palette, primitive shapes and fill textures, so features
learned on the training classes transfer to the validation and test classes.
:func:`class_spec` draws one class: a background and 2-3 primitives with their relative
layout. Rendering the images of a class is :mod:`.synthetic_render`'s job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Colours every class draws from (0..1 RGB). Classes share them, so colour alone is no label.
PALETTE = np.array(
    [
        [0.90, 0.15, 0.15],  # red
        [0.15, 0.70, 0.20],  # green
        [0.15, 0.30, 0.90],  # blue
        [0.95, 0.85, 0.15],  # yellow
        [0.15, 0.80, 0.85],  # cyan
        [0.85, 0.20, 0.80],  # magenta
        [0.95, 0.55, 0.10],  # orange
        [0.55, 0.25, 0.80],  # purple
        [0.55, 0.35, 0.15],  # brown
        [0.95, 0.95, 0.95],  # white
        [0.08, 0.08, 0.08],  # black
        [0.50, 0.50, 0.50],  # grey
    ],
    dtype=np.float32,
)

# A shape is the union of two boxes (centre ox, oy; half sizes w, h; corners rounded by r),
# optionally hollowed out to an outline of half-thickness t ("onion"; t = 1000 means solid),
# optionally cut by a half-plane n . (u, v) <= c (c = 9 means uncut). One formula covers the
# whole bank, so images with different shapes render in the same vectorised pass.
# Coordinates are in units of the shape's size.
SOLID, UNCUT = 1000.0, 9.0
#             w1    h1    ox1    oy1   w2    h2    ox2   oy2   r     t       nx    ny    c
SHAPES = {
    "disc":      [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 1.00, SOLID, 1.00, 0.00, UNCUT],
    "ring":      [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.78, 0.22, 1.00, 0.00, UNCUT],
    "square":    [0.85, 0.85, 0.00, 0.00, 0.85, 0.85, 0.00, 0.00, 0.00, SOLID, 1.00, 0.00, UNCUT],
    "frame":     [0.75, 0.75, 0.00, 0.00, 0.75, 0.75, 0.00, 0.00, 0.00, 0.22, 1.00, 0.00, UNCUT],
    "bar":       [1.00, 0.22, 0.00, 0.00, 1.00, 0.22, 0.00, 0.00, 0.00, SOLID, 1.00, 0.00, UNCUT],
    "cross":     [1.00, 0.24, 0.00, 0.00, 0.24, 1.00, 0.00, 0.00, 0.00, SOLID, 1.00, 0.00, UNCUT],
    "tee":       [1.00, 0.22, 0.00, -0.78, 0.22, 1.00, 0.00, 0.00, 0.00, SOLID, 1.00, 0.00, UNCUT],
    "ell":       [0.22, 1.00, -0.78, 0.00, 1.00, 0.22, 0.00, 0.78, 0.00, SOLID, 1.00, 0.00, UNCUT],
    "diamond":   [0.70, 0.70, 0.00, 0.00, 0.70, 0.70, 0.00, 0.00, 0.00, SOLID, 1.00, 0.00, UNCUT],
    "half_disc": [0.00, 0.00, 0.00, 0.30, 0.00, 0.00, 0.00, 0.30, 1.00, SOLID, 0.00, 1.00, 0.30],
    "triangle":  [0.85, 0.85, 0.00, 0.00, 0.85, 0.85, 0.00, 0.00, 0.00, SOLID, 0.71, 0.71, 0.00],
    "arc":       [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.78, 0.20, 0.00, 1.00, 0.00],
    "equals":    [1.00, 0.20, 0.00, -0.50, 1.00, 0.20, 0.00, 0.50, 0.00, SOLID, 1.00, 0.00, UNCUT],
    "dot_pair":  [0.00, 0.00, -0.55, 0.00, 0.00, 0.00, 0.55, 0.00, 0.42, SOLID, 1.00, 0.00, UNCUT],
}
SHAPE_NAMES = tuple(SHAPES)
SHAPE_TABLE = np.array(list(SHAPES.values()))


@dataclass(frozen=True)
class ShapeRow:
    """One row of the shape table, its columns by name (above): numbers (one shape on every image), or
    per-image arrays (``ShapeRow(*SHAPE_TABLE[shapes].T)``)."""

    w1: object
    h1: object
    ox1: object
    oy1: object
    w2: object
    h2: object
    ox2: object
    oy2: object
    r: object
    t: object
    nx: object
    ny: object
    c: object

# diamonds are squares turned by 45 degrees; the extra angle is part of the shape
SHAPE_BASE_ROT = np.array([math.pi / 4 if n == "diamond" else 0.0 for n in SHAPE_NAMES])
# shapes made of one box: distractors pick among these per image
ONE_BOX_SHAPES = np.array([i for i, p in enumerate(SHAPE_TABLE) if (p[:4] == p[4:8]).all()])

# Fill textures of primitives and backgrounds; a texture mixes two colours.
FILLS = ("solid", "gradient", "stripes", "checker", "dots", "rings", "waves")
FILL_FREQS = (3.0, 4.5, 6.5)  # cycles per image width: periods of about 11, 7 and 5 pixels


def class_spec(rng: np.random.Generator) -> dict:
    """Draw one class: its background and its 2-3 primitives with their relative layout."""
    n_parts = int(rng.integers(2, 4))
    # parts sit around the composition centre at distinct angles
    angles = rng.uniform(0, 2 * math.pi) + np.sort(rng.permutation(6)[:n_parts]) * math.pi / 3
    radii = rng.uniform(0.25, 0.55, n_parts)
    parts = []
    for i in range(n_parts):
        colours = rng.choice(len(PALETTE), 2, replace=False)
        parts.append({
            "shape": int(rng.integers(len(SHAPE_NAMES))),
            "offset": (radii[i] * math.cos(angles[i]), radii[i] * math.sin(angles[i])),
            "size": float(rng.uniform(0.24, 0.40)),
            "aspect": float(rng.choice([1.0, 1.0, 0.7, 1.4])),
            "rot": float(rng.uniform(0, math.pi)),
            "colour": PALETTE[colours[0]],
            "colour2": PALETTE[colours[1]],
            "fill": int(rng.choice(len(FILLS), p=[0.45, 0.05, 0.15, 0.1, 0.1, 0.05, 0.1])),
            "freq": float(rng.choice(FILL_FREQS[1:])),
            "fill_rot": float(rng.uniform(0, math.pi)),
        })
    bg_colours = rng.choice(len(PALETTE), 2, replace=False)
    return {
        "parts": parts,
        "bg_fill": int(rng.integers(len(FILLS))),
        "bg_colour": muted(PALETTE[bg_colours[0]]),
        "bg_colour2": muted(PALETTE[bg_colours[1]]),
        "bg_freq": float(rng.choice(FILL_FREQS)),
        "bg_rot": float(rng.uniform(0, math.pi)),
    }


def muted(colour: np.ndarray) -> np.ndarray:
    """Backgrounds are paler than the objects on them, as in photographs."""
    return 0.55 * colour + 0.45 * 0.5
