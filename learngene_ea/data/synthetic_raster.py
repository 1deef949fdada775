"""Rasterising one primitive of the synthetic dataset for a whole class of images at once.

Every primitive is a signed distance field evaluated on affinely transformed coordinate grids:
:func:`shape_alpha` gives its anti-aliased coverage, :func:`fill_pattern` its texture, and
:func:`paint_over` lays a colour over the canvas with a coverage. Every per-pixel quantity is an
affine function of the pixel coordinates per image, so it is built from a row [n, 1, S] plus a
column [n, S, 1]: one full-size operation instead of many. Full-size tensors are then updated
in place; this keeps generation at a few seconds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .synthetic_bank import FILLS, SOLID, UNCUT, ShapeRow


@dataclass(frozen=True)
class PixelGrid:
    """Pixel-centre coordinates in [-1, 1] of a square of ``size`` pixels: ``x`` as a row [1, 1, S], ``y`` as a
    column [1, S, 1]."""

    x: torch.Tensor
    y: torch.Tensor
    size: int


@dataclass(frozen=True)
class Placement:
    """Where one primitive is drawn on each image (numbers, or per-image arrays): its centre ``(cx, cy)``, its
    ``size``, ``aspect`` ratio, rotation ``rot`` and ``mirror`` (1 or -1)."""

    cx: object
    cy: object
    size: object
    aspect: object
    rot: object
    mirror: object


def pixel_grid(size: int) -> PixelGrid:
    """The :class:`PixelGrid` of ``size`` pixels."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    return PixelGrid(axis.view(1, 1, size), axis.view(1, size, 1), size)


def col(a) -> torch.Tensor:
    """Per-image numbers [n] -> tensor [n, 1, 1] broadcasting over pixels."""
    return torch.as_tensor(np.asarray(a, dtype=np.float32)).view(-1, 1, 1)


def _plane(a, b, c, grid: PixelGrid) -> torch.Tensor:
    """``a * x + b * y + c`` per image and pixel ([n, S, S]) from per-image numbers."""
    return col(a) * grid.x + (col(b) * grid.y + col(c))


def shape_alpha(shape: ShapeRow, place: Placement, grid: PixelGrid) -> torch.Tensor:
    """Anti-aliased coverage [n, S, S] of one primitive per image.

    ``shape`` is a row of the shape table, either as numbers (the same shape on every image:
    the parts of the formula it does not need are skipped) or as per-image arrays (then the
    second box is ignored: only one-box shapes may vary per image).
    """
    cx, cy, part_size, aspect, rot, mirror = place.cx, place.cy, place.size, place.aspect, place.rot, place.mirror
    r, t, nx, ny, c = shape.r, shape.t, shape.nx, shape.ny, shape.c
    same = isinstance(shape.w1, float)
    # pixel-scaled local coordinates: u = k * mirror * (R(-rot) (p - centre)).x / sx, with
    # k pixels per size unit; every distance below is then in pixels
    k = part_size * (grid.size / 2.0)
    sx, sy = part_size * aspect, part_size / aspect
    au, bu = k * np.cos(rot) * mirror / sx, k * np.sin(rot) * mirror / sx
    av, bv = -k * np.sin(rot) / sy, k * np.cos(rot) / sy
    cu, cv = -(au * cx + bu * cy), -(av * cx + bv * cy)

    def box(ox, oy, w, h):
        u = _plane(au, bu, cu - k * ox, grid)
        v = _plane(av, bv, cv - k * oy, grid)
        if same and w == 0.0 and h == 0.0:  # a point (rounded by r into a disc)
            return u.square_().add_(v.square_()).sqrt_()
        u.abs_().sub_(col(k * w))
        v.abs_().sub_(col(k * h))
        if same and r == 0.0:  # sharp box: the max-distance is exact inside and on edges
            return torch.maximum(u, v, out=u)
        if not same:  # mixed shapes: an octagonal distance, exact inside, on edges, diagonals
            diagonal = torch.add(u, v).mul_(math.sqrt(0.5))
            return torch.maximum(torch.maximum(u, v, out=u), diagonal, out=u)
        inside = torch.maximum(u, v).clamp_(max=0.0)
        return u.clamp_(min=0.0).square_().add_(v.clamp_(min=0.0).square_()).sqrt_().add_(inside)

    d = box(shape.ox1, shape.oy1, shape.w1, shape.h1)
    if same and (shape.w1, shape.h1, shape.ox1, shape.oy1) != (shape.w2, shape.h2, shape.ox2, shape.oy2):
        d = torch.minimum(d, box(shape.ox2, shape.oy2, shape.w2, shape.h2), out=d)
    if not (same and r == 0.0):
        d.sub_(col(k * r))
    if not (same and t == SOLID):  # outline: |d + t| - t
        d = torch.maximum(d, d.neg().sub_(col(2 * k * t)), out=d)
    if not (same and c == UNCUT):  # cut by the half-plane n . (u, v) <= c
        cut = _plane(nx * au + ny * av, nx * bu + ny * bv, nx * cu + ny * cv - k * c, grid)
        d = torch.maximum(d, cut, out=d)
    return d.neg_().add_(0.5).clamp_(0.0, 1.0)


def fill_pattern(fill: int, cx, cy, rot, freq, grid: PixelGrid, rng: np.random.Generator):
    """Texture value in [0, 1] per pixel ([n, S, S]) around (cx, cy), or None for solid."""
    name = FILLS[fill]
    if name == "solid":
        return None
    n = len(freq)
    omega = np.asarray(freq) * math.pi  # freq cycles over the 2-unit image width
    cos, sin = np.cos(rot) * omega, np.sin(rot) * omega
    phase1, phase2 = rng.uniform(0, 2 * math.pi, (2, n))
    # a = omega * (rotated x) + phase, b = omega * (rotated y) + phase
    a = _plane(cos, sin, phase1 - cos * cx - sin * cy, grid)
    if name == "gradient":
        return a.sub_(col(phase1)).mul_(col(0.6 / omega)).add_(0.5).clamp_(0, 1)
    if name == "stripes":
        return a.sin_().mul_(1.5).add_(0.5).clamp_(0, 1)
    b = _plane(-sin, cos, phase2 + sin * cx - cos * cy, grid)
    if name == "checker":
        return a.sin_().mul_(b.sin_()).mul_(2.0).add_(0.5).clamp_(0, 1)
    if name == "dots":
        return a.cos_().add_(b.cos_()).sub_(0.9).mul_(2.5).clamp_(0, 1)
    if name == "waves":
        return a.add_(b.mul_(0.5).sin_().mul_(1.6)).sin_().mul_(1.5).add_(0.5).clamp_(0, 1)
    if name == "rings":
        x, y = grid.x, grid.y
        x0 = col(cx + rng.uniform(-0.3, 0.3, n))
        y0 = col(cy + rng.uniform(-0.3, 0.3, n))
        radius = ((x - x0).square_() + (y - y0).square_()).sqrt_()
        return radius.mul_(col(omega)).add_(col(phase1)).sin_().mul_(1.5).add_(0.5).clamp_(0, 1)
    raise ValueError(f"unknown fill {name}")


def paint_over(canvas: torch.Tensor, colour: torch.Tensor, alpha: torch.Tensor) -> None:
    """Paint one colour per image ([n, 3]) over ``canvas`` in place, with coverage [n, S, S].

    A textured primitive is two paints: its first colour with its coverage, then its second
    colour with coverage times texture.
    """
    n = colour.shape[0]
    canvas.lerp_(colour.view(n, 3, 1, 1).expand_as(canvas), alpha[:, None])
