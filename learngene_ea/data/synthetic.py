"""The built-in procedurally generated few-shot dataset (``synthetic``).

Needs no files on disk, so every test, example and smoke run can work without CIFAR-FS or
miniImageNet. It is built to behave like a small natural few-shot benchmark:

- A shared bank of visual primitives (discs, rings, squares, frames, bars, crosses, T and L
  shapes, triangles, arcs, ...), fill textures (stripes, checkers, dots, rings, waves,
  gradients) and one colour palette is used by *every* class.
- A class is one composition of that bank: 2-3 primitives with their shape, colour, fill,
  size and relative layout, on a background texture with its own colours. Features that
  recognise the primitives on the 64 training classes therefore transfer to the unseen
  validation and test classes, which recombine the same parts.
- Every image re-draws the composition with an affine jitter of the whole layout (shift,
  scale, rotation, mirror) and of each primitive, colour and lighting jitter, a primitive
  that may be missing, distractor primitives from the same bank (some drawn on top), smooth
  background clutter and pixel noise. Classes are confusable and intra-class variation is
  large, so a network trained from scratch on a 5-shot support set stays far from the
  ceiling, while a pre-trained feature extractor does clearly better.

Rendering is vectorised: every primitive is a signed distance field evaluated on affinely
transformed coordinate grids for a whole class of images at once (one Python iteration per
class and layer). The default 60,000 images take a few seconds on two CPU cores.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..errors import UserError
from .base import FewShotDataset

# --- the shared bank --------------------------------------------------------------------------

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
# optionally hollowed out to an outline of half-thickness t ("onion"), optionally cut by a
# half-plane n . (u, v) <= c. One formula covers the whole bank, so images with different
# shapes render in the same vectorised pass. Coordinates are in units of the shape's size.
#            w1    h1    ox1   oy1   w2    h2    ox2   oy2   r     onion t  nx    ny    c
SHAPES = {
    "disc":     [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 1.00, 0, 0.0, 0.00, 1.00, 9.0],
    "ring":     [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.78, 1, 0.22, 1.00, 0.00, 9.0],
    "square":   [0.85, 0.85, 0.00, 0.00, 0.85, 0.85, 0.00, 0.00, 0.00, 0, 0.0, 1.00, 0.00, 9.0],
    "frame":    [0.75, 0.75, 0.00, 0.00, 0.75, 0.75, 0.00, 0.00, 0.00, 1, 0.22, 1.00, 0.00, 9.0],
    "bar":      [1.00, 0.22, 0.00, 0.00, 1.00, 0.22, 0.00, 0.00, 0.00, 0, 0.0, 1.00, 0.00, 9.0],
    "cross":    [1.00, 0.24, 0.00, 0.00, 0.24, 1.00, 0.00, 0.00, 0.00, 0, 0.0, 1.00, 0.00, 9.0],
    "tee":      [1.00, 0.22, 0.00, -0.78, 0.22, 1.00, 0.00, 0.00, 0.00, 0, 0.0, 1.00, 0.00, 9.0],
    "ell":      [0.22, 1.00, -0.78, 0.00, 1.00, 0.22, 0.00, 0.78, 0.00, 0, 0.0, 1.00, 0.00, 9.0],
    "diamond":  [0.70, 0.70, 0.00, 0.00, 0.70, 0.70, 0.00, 0.00, 0.00, 0, 0.0, 1.00, 0.00, 9.0],
    "half_disc": [0.00, 0.00, 0.00, 0.30, 0.00, 0.00, 0.00, 0.30, 1.00, 0, 0.0, 0.00, 1.00, 0.30],
    "triangle": [0.85, 0.85, 0.00, 0.00, 0.85, 0.85, 0.00, 0.00, 0.00, 0, 0.0, 0.71, 0.71, 0.0],
    "arc":      [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.78, 1, 0.20, 0.00, 1.00, 0.0],
    "equals":   [1.00, 0.20, 0.00, -0.50, 1.00, 0.20, 0.00, 0.50, 0.00, 0, 0.0, 1.00, 0.00, 9.0],
    "dot_pair": [0.00, 0.00, -0.55, 0.00, 0.00, 0.00, 0.55, 0.00, 0.42, 0, 0.0, 1.00, 0.00, 9.0],
}
SHAPE_NAMES = tuple(SHAPES)
_SHAPE_TABLE = np.array(list(SHAPES.values()), dtype=np.float32)
# diamonds are squares turned by 45 degrees; the extra angle is part of the shape
_SHAPE_BASE_ROT = np.array([math.pi / 4 if n == "diamond" else 0.0 for n in SHAPE_NAMES],
                           dtype=np.float32)

# Fill textures of primitives and backgrounds; a texture mixes two colours.
FILLS = ("solid", "gradient", "stripes", "checker", "dots", "rings", "waves")
_FILL_FREQS = (3.0, 4.5, 6.5)  # cycles per image width: periods of about 11, 7 and 5 pixels

# --- how hard the dataset is (tuned with bench/synthetic_hardness.py) ---------------------

_LAYOUT_SHIFT = 0.28        # translation of the whole composition (image half-width = 1)
_LAYOUT_SCALE = (0.80, 1.20)
_LAYOUT_ROT = math.radians(25)
_PART_SHIFT = 0.09          # per-primitive position jitter
_PART_SCALE = (0.85, 1.15)
_PART_ROT = math.radians(15)
_PART_DROP = 0.15           # probability that one primitive of the class is missing
_COLOUR_JITTER = 0.09       # per-colour, per-channel std
_GAIN = (0.80, 1.20)        # per-image per-channel gain (lighting colour)
_BRIGHTNESS = 0.10
_CONTRAST = (0.75, 1.25)
_BG_SWAP = 0.30             # probability that an image's background colours are random
_DISTRACTORS = 3            # distractor slots; the last one is drawn on top
_DISTRACTOR_P = 0.60
_CLUTTER = 0.10             # amplitude of smooth background clutter
_NOISE = 0.045              # std of the pixel noise


def make_synthetic(seed: int = 0, num_classes: int = 100, images_per_class: int = 600,
                   image_size: int = 32, split_sizes=(64, 16, 20)) -> FewShotDataset:
    """Generate the procedural few-shot dataset.

    Args:
        seed: everything is derived from it; the same arguments give bit-identical images.
        num_classes: number of classes (``sum(split_sizes)`` must equal it).
        images_per_class: images drawn for every class.
        image_size: height and width of the square RGB images.
        split_sizes: numbers of train, val and test classes; classes are assigned by id
            (the first ``split_sizes[0]`` ids are train, then val, then test).

    Returns:
        A :class:`FewShotDataset` with uint8 images ``[N, 3, S, S]`` (grouped by class),
        int64 labels, class names ``synth-000`` ..., the split and the real per-channel
        mean/std. Results are memoised per process: calling again with the same arguments
        returns the same object, so do not modify it in place.
    """
    return _make_synthetic_cached(int(seed), int(num_classes), int(images_per_class),
                                  int(image_size), tuple(int(s) for s in split_sizes))


@functools.lru_cache(maxsize=4)
def _make_synthetic_cached(seed, num_classes, images_per_class, image_size, split_sizes):
    if len(split_sizes) != 3 or min(split_sizes) < 0 or sum(split_sizes) != num_classes:
        raise UserError(f"synthetic split_sizes {split_sizes} must be three non-negative "
                        f"numbers of train/val/test classes adding up to num_classes "
                        f"({num_classes}).")
    if images_per_class < 1 or image_size < 8:
        raise UserError("synthetic images_per_class must be at least 1 and image_size at "
                        "least 8.")

    n, size = images_per_class, image_size
    images = torch.empty(num_classes * n, 3, size, size, dtype=torch.uint8)
    sums = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    grid = _grid(size)
    for c in range(num_classes):
        # independent streams per class: a class looks the same whatever the other arguments
        spec = _class_spec(np.random.default_rng([seed, 0, c]))
        rng = np.random.default_rng([seed, 1, c])
        canvas = _render_class(spec, n, size, grid, rng)
        canvas.mul_(255.0).round_().clamp_(0.0, 255.0)
        sums += canvas.sum(dim=(0, 2, 3), dtype=torch.float64)
        squares += canvas.square().sum(dim=(0, 2, 3), dtype=torch.float64)
        images[c * n:(c + 1) * n] = canvas.to(torch.uint8)

    count = num_classes * n * size * size * 255.0
    mean = sums / count
    std = (squares / (count * 255.0) - mean.square()).clamp(min=0).sqrt()
    labels = torch.arange(num_classes, dtype=torch.int64).repeat_interleave(n)
    n_train, n_val, _ = split_sizes
    ids = list(range(num_classes))
    return FewShotDataset(
        images=images,
        labels=labels,
        class_names=[f"synth-{i:03d}" for i in ids],
        splits={"train": ids[:n_train], "val": ids[n_train:n_train + n_val],
                "test": ids[n_train + n_val:]},
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        name="synthetic",
    )


# --- class definitions ------------------------------------------------------------------------

def _class_spec(rng: np.random.Generator) -> dict:
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
            "size": float(rng.uniform(0.20, 0.36)),
            "aspect": float(rng.choice([1.0, 1.0, 0.7, 1.4])),
            "rot": float(rng.uniform(0, math.pi)),
            "colour": PALETTE[colours[0]],
            "colour2": PALETTE[colours[1]],
            "fill": int(rng.choice(len(FILLS), p=[0.45, 0.05, 0.15, 0.1, 0.1, 0.05, 0.1])),
            "freq": float(rng.choice(_FILL_FREQS[1:])),
            "fill_rot": float(rng.uniform(0, math.pi)),
        })
    bg_colours = rng.choice(len(PALETTE), 2, replace=False)
    return {
        "parts": parts,
        "bg_fill": int(rng.integers(len(FILLS))),
        "bg_colour": _muted(PALETTE[bg_colours[0]]),
        "bg_colour2": _muted(PALETTE[bg_colours[1]]),
        "bg_freq": float(rng.choice(_FILL_FREQS)),
        "bg_rot": float(rng.uniform(0, math.pi)),
    }


def _muted(colour: np.ndarray) -> np.ndarray:
    """Backgrounds are paler than the objects on them, as in photographs."""
    return 0.55 * colour + 0.45 * 0.5


# --- per-image parameters and rendering ---------------------------------------------------

def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1], shaped [1, S, S] to broadcast over images."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x[None], y[None]


def _col(a) -> torch.Tensor:
    """Per-image numbers [n] -> tensor [n, 1, 1] broadcasting over pixels."""
    return torch.as_tensor(np.asarray(a, dtype=np.float32)).view(-1, 1, 1)


def _render_class(spec: dict, n: int, size: int, grid, rng: np.random.Generator) -> torch.Tensor:
    """Draw ``n`` images of one class; returns float [n, 3, S, S] in 0..1."""
    x, y = grid

    # background texture (with some images getting random background colours)
    bg1 = np.repeat(spec["bg_colour"][None], n, 0)
    bg2 = np.repeat(spec["bg_colour2"][None], n, 0)
    swap = rng.random(n) < _BG_SWAP
    bg1[swap] = _muted(PALETTE[rng.integers(len(PALETTE), size=int(swap.sum()))])
    bg2[swap] = _muted(PALETTE[rng.integers(len(PALETTE), size=int(swap.sum()))])
    bg_rot = spec["bg_rot"] + rng.normal(0, 0.25, n)
    pattern = _fill_pattern(spec["bg_fill"], x, y, bg_rot, spec["bg_freq"] * rng.uniform(0.85, 1.15, n),
                            rng)
    canvas = _mix(_jitter(bg1, rng), _jitter(bg2, rng), pattern).expand(n, 3, size, size)
    canvas = canvas.contiguous()

    # smooth clutter: low-resolution noise upsampled to the image
    low = torch.as_tensor(rng.standard_normal((n, 3, 4, 4), dtype=np.float32))
    canvas += _CLUTTER * torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic",
                                                         align_corners=False)

    # distractors below the object
    for _ in range(_DISTRACTORS - 1):
        _draw_distractor(canvas, n, x, y, size, rng)

    # the class composition, moved as a whole
    shift = rng.uniform(-_LAYOUT_SHIFT, _LAYOUT_SHIFT, (n, 2))
    scale = rng.uniform(*_LAYOUT_SCALE, n)
    turn = rng.uniform(-_LAYOUT_ROT, _LAYOUT_ROT, n)
    mirror = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    parts = spec["parts"]
    missing = np.where(rng.random(n) < _PART_DROP, rng.integers(len(parts), size=n), -1)
    for i, part in enumerate(parts):
        ox = (part["offset"][0] + rng.normal(0, _PART_SHIFT, n)) * mirror
        oy = part["offset"][1] + rng.normal(0, _PART_SHIFT, n)
        cos, sin = np.cos(turn), np.sin(turn)
        cx = shift[:, 0] + scale * (cos * ox - sin * oy)
        cy = shift[:, 1] + scale * (sin * ox + cos * oy)
        part_size = part["size"] * scale * rng.uniform(*_PART_SCALE, n)
        rot = part["rot"] * mirror + turn + rng.uniform(-_PART_ROT, _PART_ROT, n)
        alpha = _shape_alpha(np.full(n, part["shape"]), cx, cy, part_size,
                             np.full(n, part["aspect"]), rot, mirror, x, y, size)
        alpha *= _col(missing != i)
        colour = np.repeat(part["colour"][None], n, 0)
        if FILLS[part["fill"]] == "solid":
            layer = _jitter(colour, rng).view(n, 3, 1, 1)
        else:
            pattern = _fill_pattern(part["fill"], x - _col(cx), y - _col(cy),
                                    part["fill_rot"] + rot, np.full(n, part["freq"]), rng)
            colour2 = np.repeat(part["colour2"][None], n, 0)
            layer = _mix(_jitter(colour, rng), _jitter(colour2, rng), pattern)
        _blend(canvas, layer, alpha)

    # one distractor on top, occluding the object now and then
    _draw_distractor(canvas, n, x, y, size, rng)

    # lighting: per-channel gain, contrast and brightness, then sensor noise
    gain = rng.uniform(*_GAIN, (n, 3)).astype(np.float32)
    contrast = rng.uniform(*_CONTRAST, n).astype(np.float32)
    bright = rng.uniform(-_BRIGHTNESS, _BRIGHTNESS, n).astype(np.float32)
    mean = canvas.mean(dim=(1, 2, 3), keepdim=True)
    canvas.sub_(mean).mul_(torch.from_numpy(contrast).view(n, 1, 1, 1)).add_(mean)
    canvas.mul_(torch.from_numpy(gain).view(n, 3, 1, 1))
    canvas.add_(torch.from_numpy(bright).view(n, 1, 1, 1))
    # uniform noise from random bytes: an order of magnitude cheaper than Gaussian draws
    noise = np.frombuffer(rng.bytes(n * 3 * size * size), dtype=np.uint8)
    noise = torch.from_numpy(noise.copy()).view(n, 3, size, size)
    canvas.add_(noise.to(torch.float32).sub_(127.5).mul_(_NOISE * math.sqrt(3) / 127.5))
    return canvas.clamp_(0.0, 1.0)


def _draw_distractor(canvas, n, x, y, size, rng):
    """A random primitive of the shared bank, in a random colour, on some of the images."""
    shape = rng.integers(len(SHAPE_NAMES), size=n)
    cx, cy = rng.uniform(-0.85, 0.85, (2, n))
    part_size = rng.uniform(0.12, 0.30, n)
    aspect = rng.choice([1.0, 0.7, 1.4], n)
    rot = rng.uniform(0, math.pi, n)
    alpha = _shape_alpha(shape, cx, cy, part_size, aspect, rot, np.ones(n), x, y, size)
    alpha *= _col(rng.random(n) < _DISTRACTOR_P)
    colour = _jitter(PALETTE[rng.integers(len(PALETTE), size=n)], rng)
    _blend(canvas, colour.view(n, 3, 1, 1), alpha)


def _shape_alpha(shape, cx, cy, part_size, aspect, rot, mirror, x, y, size) -> torch.Tensor:
    """Anti-aliased coverage [n, S, S] of one primitive per image (vectorised over images)."""
    p = torch.from_numpy(_SHAPE_TABLE[shape])  # [n, 14]
    w1, h1, ox1, oy1, w2, h2, ox2, oy2, r, onion, t, nx, ny, c = (
        p[:, k].view(-1, 1, 1) for k in range(p.shape[1]))
    theta = _col(rot + _SHAPE_BASE_ROT[shape])
    cos, sin = theta.cos(), theta.sin()
    sx = _col(part_size * np.asarray(aspect))
    sy = _col(part_size / np.asarray(aspect))
    dx, dy = x - _col(cx), y - _col(cy)
    u = (cos * dx + sin * dy) / sx * _col(mirror)
    v = (cos * dy - sin * dx) / sy
    d = torch.minimum(_box(u, v, ox1, oy1, w1, h1), _box(u, v, ox2, oy2, w2, h2)) - r
    d = torch.where(onion > 0, (d + t).abs() - t, d)
    d = torch.maximum(d, nx * u + ny * v - c)
    # distance in pixels (one size unit spans size * S / 2 pixels)
    pixels = d.mul_(_col(part_size * size / 2.0))
    return pixels.neg_().add_(0.5).clamp_(0.0, 1.0)


def _box(u, v, ox, oy, w, h) -> torch.Tensor:
    """Signed distance to an axis-aligned box centred at (ox, oy) with half sizes (w, h)."""
    qx = (u - ox).abs_().sub_(w)
    qy = (v - oy).abs_().sub_(h)
    outside = torch.hypot(qx.clamp(min=0), qy.clamp(min=0))
    return outside.add_(torch.maximum(qx, qy).clamp_(max=0))


def _fill_pattern(fill: int, dx, dy, rot, freq, rng: np.random.Generator):
    """Texture value in [0, 1] per pixel ([n, S, S]) for one fill type, or None for solid."""
    name = FILLS[fill]
    if name == "solid":
        return None
    n = len(freq)
    theta = _col(rot)
    cos, sin = theta.cos(), theta.sin()
    pu = cos * dx + sin * dy
    pv = cos * dy - sin * dx
    omega = _col(np.asarray(freq) * math.pi)  # freq cycles over the 2-unit image width
    phase1, phase2 = (_col(rng.uniform(0, 2 * math.pi, n)) for _ in range(2))
    if name == "gradient":
        return (pu * 0.6 + 0.5).clamp_(0, 1)
    if name == "stripes":
        return (omega * pu + phase1).sin_().mul_(1.5).add_(0.5).clamp_(0, 1)
    if name == "checker":
        s = (omega * pu + phase1).sin_().mul_((omega * pv + phase2).sin_())
        return s.mul_(2.0).add_(0.5).clamp_(0, 1)
    if name == "dots":
        s = (omega * pu + phase1).cos_().add_((omega * pv + phase2).cos_())
        return s.sub_(0.9).mul_(2.5).clamp_(0, 1)
    if name == "rings":
        r = torch.hypot(dx - _col(rng.uniform(-0.3, 0.3, n)), dy - _col(rng.uniform(-0.3, 0.3, n)))
        return (omega * r + phase1).sin_().mul_(1.5).add_(0.5).clamp_(0, 1)
    if name == "waves":
        warp = (omega * 0.5 * pv + phase2).sin_().mul_(1.6)
        return (omega * pu + phase1).add_(warp).sin_().mul_(1.5).add_(0.5).clamp_(0, 1)
    raise ValueError(f"unknown fill {name}")


def _jitter(colours: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Per-image colour jitter of [n, 3] colours; returns a float tensor [n, 3]."""
    noisy = colours + rng.normal(0, _COLOUR_JITTER, colours.shape)
    return torch.as_tensor(np.clip(noisy, 0, 1), dtype=torch.float32)


def _mix(colour1: torch.Tensor, colour2: torch.Tensor, pattern) -> torch.Tensor:
    """Colour field [n, 3, S, S] (or [n, 3, 1, 1] when solid) mixing two colours by a texture."""
    n = colour1.shape[0]
    c1 = colour1.view(n, 3, 1, 1)
    if pattern is None:
        return c1.clone()
    return c1 + (colour2.view(n, 3, 1, 1) - c1) * pattern[:, None]


def _blend(canvas: torch.Tensor, layer: torch.Tensor, alpha: torch.Tensor) -> None:
    """Paint ``layer`` over ``canvas`` (in place) with coverage ``alpha`` [n, S, S]."""
    canvas.add_((layer - canvas).mul_(alpha[:, None]))
