"""Rendering the images of one synthetic class: :func:`render_class`.

Every image re-draws the class composition (from :func:`.synthetic_bank.class_spec`) with an
affine jitter of the whole layout and of each primitive, colour and lighting jitter, a
primitive that may be missing, distractor primitives from the bank (one drawn on top), smooth
background clutter and pixel noise. The constants below set how hard the dataset is; they
were tuned with ``bench/synthetic_hardness.py``. A whole class renders in one vectorised pass
per layer (:mod:`.synthetic_raster`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .synthetic_bank import ONE_BOX_SHAPES, PALETTE, SHAPE_BASE_ROT, SHAPE_TABLE, ShapeRow, muted
from .synthetic_raster import Placement, col, fill_pattern, paint_over, shape_alpha

# --- how hard the dataset is (tuned with bench/synthetic_hardness.py) ---------------------

_LAYOUT_SHIFT = 0.28        # translation of the whole composition (image half-width = 1)
_LAYOUT_SCALE = (0.80, 1.20)
_LAYOUT_ROT = math.radians(35)
_PART_SHIFT = 0.09          # per-primitive position jitter
_PART_SCALE = (0.85, 1.15)
_PART_ROT = math.radians(15)
_PART_DROP = 0.20           # probability that one primitive of the class is missing
_COLOUR_JITTER = 0.12       # per-colour, per-channel std
_GAIN = (0.80, 1.20)        # per-image per-channel gain (lighting colour)
_BRIGHTNESS = 0.10
_CONTRAST = (0.75, 1.25)
_BG_SWAP = 0.50             # probability that an image's background colours are random
_DISTRACTORS = 3            # distractor slots; the last one is drawn on top
_DISTRACTOR_P = 0.70
_BG_PLAIN = 0.30            # probability that an image's background texture is missing
_COLOUR_SWAP = 0.15         # probability that a primitive has a random colour
_CLUTTER = 0.10             # amplitude of smooth background clutter
_NOISE = 0.060              # std of the pixel noise
_AWAY = 1000.0  # a centre this far outside the image hides a primitive


def render_class(spec: dict, n: int, size: int, grid, rng: np.random.Generator) -> torch.Tensor:
    """Draw ``n`` images of one class; returns uint8 [n, 3, S, S].

    ``grid`` is :func:`.synthetic_raster.pixel_grid` of ``size``; ``rng`` is the class's own
    random stream, so the images depend only on it and on ``spec`` (every draw below is made in
    the same order, image by image in numpy arrays).
    """
    gain, bias, noise_scale = _lighting(n, rng)
    canvas, paint = _background(spec, n, size, grid, rng, (gain, bias))
    # distractors below the object
    for _ in range(_DISTRACTORS - 1):
        _draw_distractor(paint, n, grid, rng)
    _draw_composition(spec["parts"], paint, n, grid, rng)
    # one distractor on top, occluding the object now and then
    _draw_distractor(paint, n, grid, rng)

    # sensor noise: uniform, from random bytes (an order of magnitude cheaper than Gaussian
    # draws); the +0.5 in the bias and truncation to uint8 round to the nearest level
    noise = torch.frombuffer(bytearray(rng.bytes(n * 3 * size * size)), dtype=torch.uint8)
    canvas.add_(noise.view(n, 3, size, size), alpha=noise_scale)
    return canvas.clamp_(0.0, 255.0).to(torch.uint8)


def _lighting(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per image and channel: the gain and bias that map a colour to the canvas, and the noise scale.

    Lighting (contrast around grey, per-channel gain, brightness) is affine per image and
    channel, so it is applied to every colour before painting instead of to the canvas
    (painting interpolates colours; interpolation commutes with affine maps). The canvas
    is on the 0..255 scale, offset by +0.5 (rounding) and by the noise offset.
    """
    contrast = rng.uniform(*_CONTRAST, (n, 1))
    gain = rng.uniform(*_GAIN, (n, 3)) * contrast * 255.0
    bias = (rng.uniform(-_BRIGHTNESS, _BRIGHTNESS, (n, 1)) + 0.5 * (1.0 - contrast)) * 255.0
    noise_scale = _NOISE * math.sqrt(3) / 127.5 * 255.0  # uniform noise from bytes 0..255
    bias = bias + 0.5 - 127.5 * noise_scale
    gain, bias = (torch.as_tensor(a, dtype=torch.float32) for a in (gain, bias))
    return gain, bias, noise_scale


def _background(spec: dict, n: int, size: int, grid, rng: np.random.Generator, light: tuple):
    """The canvas with the background texture (some images get random colours) and smooth clutter,
    and ``paint(colour, alpha)``, which paints lit colours over it."""
    gain, bias = light
    bg1 = np.repeat(spec["bg_colour"][None], n, 0)
    bg2 = np.repeat(spec["bg_colour2"][None], n, 0)
    swap = rng.random(n) < _BG_SWAP
    bg1[swap] = muted(PALETTE[rng.integers(len(PALETTE), size=int(swap.sum()))])
    bg2[swap] = muted(PALETTE[rng.integers(len(PALETTE), size=int(swap.sum()))])
    bg_rot = spec["bg_rot"] + rng.normal(0, 0.25, n)
    bg_freq = spec["bg_freq"] * rng.uniform(0.85, 1.15, n)
    pattern = fill_pattern(spec["bg_fill"], np.zeros(n), np.zeros(n), bg_rot, bg_freq, grid, rng)
    if pattern is not None:
        pattern.mul_(col(rng.random(n) >= _BG_PLAIN))
    canvas = (_jitter(bg1, rng) * gain + bias).view(n, 3, 1, 1).expand(n, 3, size, size).clone()

    def paint(colour: torch.Tensor, alpha: torch.Tensor) -> None:
        paint_over(canvas, colour * gain + bias, alpha)

    if pattern is not None:
        paint(_jitter(bg2, rng), pattern)

    # smooth clutter: per channel, the product of two random smooth profiles (one along x,
    # one along y), each interpolated from 4 random values: blotches, in one fused operation
    rows, cols = (_smooth_profiles(rng.standard_normal((n * 3, 1, 4)), size) for _ in range(2))
    canvas.addcmul_(rows.view(n, 3, 1, size) * gain.view(n, 3, 1, 1), cols.view(n, 3, size, 1),
                    value=_CLUTTER)
    return canvas, paint


def _draw_composition(parts: list, paint, n: int, grid, rng: np.random.Generator) -> None:
    """The class's primitives, moved, scaled, turned and mirrored as a whole, each jittered (one may be missing)."""
    shift = rng.uniform(-_LAYOUT_SHIFT, _LAYOUT_SHIFT, (n, 2))
    scale = rng.uniform(*_LAYOUT_SCALE, n)
    turn = rng.uniform(-_LAYOUT_ROT, _LAYOUT_ROT, n)
    cos, sin = np.cos(turn), np.sin(turn)
    mirror = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    missing = np.where(rng.random(n) < _PART_DROP, rng.integers(len(parts), size=n), -1)
    for i, part in enumerate(parts):
        ox = (part["offset"][0] + rng.normal(0, _PART_SHIFT, n)) * mirror
        oy = part["offset"][1] + rng.normal(0, _PART_SHIFT, n)
        cx = shift[:, 0] + scale * (cos * ox - sin * oy)
        cy = shift[:, 1] + scale * (sin * ox + cos * oy)
        part_size = part["size"] * scale * rng.uniform(*_PART_SCALE, n)
        rot = part["rot"] * mirror + turn + rng.uniform(-_PART_ROT, _PART_ROT, n)
        cx[missing == i] = _AWAY
        alpha = shape_alpha(ShapeRow(*(float(p) for p in SHAPE_TABLE[part["shape"]])),
                            Placement(cx, cy, part_size, part["aspect"], rot + SHAPE_BASE_ROT[part["shape"]], mirror),
                            grid)
        colour = _jitter(_swap_some(part["colour"], n, rng), rng)
        pattern = fill_pattern(part["fill"], cx, cy, part["fill_rot"] + rot,
                               np.full(n, part["freq"]), grid, rng)
        paint(colour, alpha)
        if pattern is not None:  # the texture's second colour where the texture is "on"
            paint(_jitter(_swap_some(part["colour2"], n, rng), rng), pattern.mul_(alpha))


def _smooth_profiles(values: np.ndarray, size: int) -> torch.Tensor:
    """Linear interpolation of [m, 1, k] random values to [m, 1, S] smooth 1-d profiles."""
    return torch.nn.functional.interpolate(torch.as_tensor(values, dtype=torch.float32),
                                           size=size, mode="linear", align_corners=False)


def _draw_distractor(paint, n, grid, rng):
    """A random one-box primitive of the bank, in a random colour, on some of the images."""
    shape = rng.choice(ONE_BOX_SHAPES, n)
    cx, cy = rng.uniform(-0.85, 0.85, (2, n))
    cx[rng.random(n) >= _DISTRACTOR_P] = _AWAY
    part_size = rng.uniform(0.12, 0.34, n)
    aspect = rng.choice([1.0, 0.7, 1.4], n)
    rot = rng.uniform(0, math.pi, n) + SHAPE_BASE_ROT[shape]
    alpha = shape_alpha(ShapeRow(*SHAPE_TABLE[shape].T), Placement(cx, cy, part_size, aspect, rot, np.ones(n)), grid)
    paint(_jitter(PALETTE[rng.integers(len(PALETTE), size=n)], rng), alpha)


def _swap_some(colour: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """One colour for ``n`` images [n, 3], replaced by a random palette colour on some."""
    colours = np.repeat(colour[None], n, 0)
    swap = rng.random(n) < _COLOUR_SWAP
    colours[swap] = PALETTE[rng.integers(len(PALETTE), size=int(swap.sum()))]
    return colours


def _jitter(colours: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Per-image colour jitter of [n, 3] colours; returns a float tensor [n, 3]."""
    noisy = colours + rng.normal(0, _COLOUR_JITTER, colours.shape)
    return torch.as_tensor(np.clip(noisy, 0, 1), dtype=torch.float32)
