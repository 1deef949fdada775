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
  ceiling, while a pre-trained feature extractor does clearly better. Measured with
  ``bench/synthetic_hardness.py --split test`` (5-way 5-shot): Conv4 from scratch on the
  support set about 43%, Conv4 pre-trained for 3 short epochs + cosine prototypes about 67%
  (1-shot: about 27% and 52%).

Rendering is vectorised: every primitive is a signed distance field evaluated on affinely
transformed coordinate grids for a whole class of images at once (one Python iteration per
class and layer), and classes render in parallel threads. The default 60,000 images take
about 7 s of CPU time; results are memoised per process.
"""
from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

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
# optionally hollowed out to an outline of half-thickness t ("onion"; t = 1000 means solid),
# optionally cut by a half-plane n . (u, v) <= c (c = 9 means uncut). One formula covers the
# whole bank, so images with different shapes render in the same vectorised pass.
# Coordinates are in units of the shape's size.
_SOLID, _UNCUT = 1000.0, 9.0
#             w1    h1    ox1    oy1   w2    h2    ox2   oy2   r     t       nx    ny    c
SHAPES = {
    "disc":      [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 1.00, _SOLID, 1.00, 0.00, _UNCUT],
    "ring":      [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.78, 0.22, 1.00, 0.00, _UNCUT],
    "square":    [0.85, 0.85, 0.00, 0.00, 0.85, 0.85, 0.00, 0.00, 0.00, _SOLID, 1.00, 0.00, _UNCUT],
    "frame":     [0.75, 0.75, 0.00, 0.00, 0.75, 0.75, 0.00, 0.00, 0.00, 0.22, 1.00, 0.00, _UNCUT],
    "bar":       [1.00, 0.22, 0.00, 0.00, 1.00, 0.22, 0.00, 0.00, 0.00, _SOLID, 1.00, 0.00, _UNCUT],
    "cross":     [1.00, 0.24, 0.00, 0.00, 0.24, 1.00, 0.00, 0.00, 0.00, _SOLID, 1.00, 0.00, _UNCUT],
    "tee":       [1.00, 0.22, 0.00, -0.78, 0.22, 1.00, 0.00, 0.00, 0.00, _SOLID, 1.00, 0.00, _UNCUT],
    "ell":       [0.22, 1.00, -0.78, 0.00, 1.00, 0.22, 0.00, 0.78, 0.00, _SOLID, 1.00, 0.00, _UNCUT],
    "diamond":   [0.70, 0.70, 0.00, 0.00, 0.70, 0.70, 0.00, 0.00, 0.00, _SOLID, 1.00, 0.00, _UNCUT],
    "half_disc": [0.00, 0.00, 0.00, 0.30, 0.00, 0.00, 0.00, 0.30, 1.00, _SOLID, 0.00, 1.00, 0.30],
    "triangle":  [0.85, 0.85, 0.00, 0.00, 0.85, 0.85, 0.00, 0.00, 0.00, _SOLID, 0.71, 0.71, 0.00],
    "arc":       [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.78, 0.20, 0.00, 1.00, 0.00],
    "equals":    [1.00, 0.20, 0.00, -0.50, 1.00, 0.20, 0.00, 0.50, 0.00, _SOLID, 1.00, 0.00, _UNCUT],
    "dot_pair":  [0.00, 0.00, -0.55, 0.00, 0.00, 0.00, 0.55, 0.00, 0.42, _SOLID, 1.00, 0.00, _UNCUT],
}
SHAPE_NAMES = tuple(SHAPES)
_SHAPE_TABLE = np.array(list(SHAPES.values()))
# diamonds are squares turned by 45 degrees; the extra angle is part of the shape
_SHAPE_BASE_ROT = np.array([math.pi / 4 if n == "diamond" else 0.0 for n in SHAPE_NAMES])
# shapes made of one box: distractors pick among these per image
_ONE_BOX_SHAPES = np.array([i for i, p in enumerate(_SHAPE_TABLE) if (p[:4] == p[4:8]).all()])
_AWAY = 1000.0  # a centre this far outside the image hides a primitive

# Fill textures of primitives and backgrounds; a texture mixes two colours.
FILLS = ("solid", "gradient", "stripes", "checker", "dots", "rings", "waves")
_FILL_FREQS = (3.0, 4.5, 6.5)  # cycles per image width: periods of about 11, 7 and 5 pixels

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
        int64 labels, class names ``synth-000`` ..., the split and the exact per-channel
        mean/std of the training classes (of all classes when there are none). Results are
        memoised per process: calling again with the same arguments returns the same
        object, so do not modify it in place (``make_synthetic.cache_clear()`` forgets them).
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
    grid = _grid(size)

    def render(c: int) -> None:
        # random streams per class: class c does not depend on how many classes there are
        spec = _class_spec(np.random.default_rng([seed, 0, c]))
        rng = np.random.default_rng([seed, 1, c])
        images[c * n:(c + 1) * n] = _render_class(spec, n, size, grid, rng)

    # Threading inside each small element-wise operation costs more than it gains here (and
    # stalls badly on a busy machine), so every class renders on one thread and classes
    # render in parallel on as many threads as torch may use. The images do not depend on
    # the number of threads; torch's setting is restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if threads == 1 or num_classes == 1:
            for c in range(num_classes):
                render(c)
        else:
            with ThreadPoolExecutor(min(threads, num_classes)) as pool:
                list(pool.map(render, range(num_classes)))
    finally:
        torch.set_num_threads(threads)

    # exact statistics from per-channel histograms of the training classes only (stored first)
    n_train, n_val, _ = split_sizes
    train = images[:n_train * n] if n_train else images  # val/test must not shape normalisation
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    mean, std = [], []
    for channel in range(3):
        hist = torch.bincount(train[:, channel].flatten(), minlength=256).to(torch.float64)
        hist /= hist.sum()
        m = float((hist * levels).sum())
        mean.append(m)
        std.append(math.sqrt(max(float((hist * levels.square()).sum()) - m * m, 0.0)))
    labels = torch.arange(num_classes, dtype=torch.int64).repeat_interleave(n)
    ids = list(range(num_classes))
    return FewShotDataset(
        images=images,
        labels=labels,
        class_names=[f"synth-{i:03d}" for i in ids],
        splits={"train": ids[:n_train], "val": ids[n_train:n_train + n_val],
                "test": ids[n_train + n_val:]},
        mean=tuple(mean),
        std=tuple(std),
        name="synthetic",
    )


make_synthetic.cache_clear = _make_synthetic_cached.cache_clear


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
            "size": float(rng.uniform(0.24, 0.40)),
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
# Every per-pixel quantity is an affine function of the pixel coordinates per image, so it is
# built from a row [n, 1, S] plus a column [n, S, 1]: one full-size operation instead of
# many. Full-size tensors are then updated in place; this keeps generation at a few seconds.

def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1]: x as a row [1, 1, S], y as a column [1, S, 1]."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    return axis.view(1, 1, size), axis.view(1, size, 1)


def _col(a) -> torch.Tensor:
    """Per-image numbers [n] -> tensor [n, 1, 1] broadcasting over pixels."""
    return torch.as_tensor(np.asarray(a, dtype=np.float32)).view(-1, 1, 1)


def _plane(a, b, c, grid) -> torch.Tensor:
    """``a * x + b * y + c`` per image and pixel ([n, S, S]) from per-image numbers."""
    x, y = grid
    return _col(a) * x + (_col(b) * y + _col(c))


def _render_class(spec: dict, n: int, size: int, grid, rng: np.random.Generator) -> torch.Tensor:
    """Draw ``n`` images of one class; returns uint8 [n, 3, S, S]."""
    # Lighting (contrast around grey, per-channel gain, brightness) is affine per image and
    # channel, so it is applied to every colour before painting instead of to the canvas
    # (painting interpolates colours; interpolation commutes with affine maps). The canvas
    # is on the 0..255 scale, offset by +0.5 (rounding) and by the noise offset.
    contrast = rng.uniform(*_CONTRAST, (n, 1))
    gain = rng.uniform(*_GAIN, (n, 3)) * contrast * 255.0
    bias = (rng.uniform(-_BRIGHTNESS, _BRIGHTNESS, (n, 1)) + 0.5 * (1.0 - contrast)) * 255.0
    noise_scale = _NOISE * math.sqrt(3) / 127.5 * 255.0  # uniform noise from bytes 0..255
    bias = bias + 0.5 - 127.5 * noise_scale
    gain, bias = (torch.as_tensor(a, dtype=torch.float32) for a in (gain, bias))

    # background texture (with some images getting random background colours)
    bg1 = np.repeat(spec["bg_colour"][None], n, 0)
    bg2 = np.repeat(spec["bg_colour2"][None], n, 0)
    swap = rng.random(n) < _BG_SWAP
    bg1[swap] = _muted(PALETTE[rng.integers(len(PALETTE), size=int(swap.sum()))])
    bg2[swap] = _muted(PALETTE[rng.integers(len(PALETTE), size=int(swap.sum()))])
    bg_rot = spec["bg_rot"] + rng.normal(0, 0.25, n)
    bg_freq = spec["bg_freq"] * rng.uniform(0.85, 1.15, n)
    pattern = _fill_pattern(spec["bg_fill"], np.zeros(n), np.zeros(n), bg_rot, bg_freq, grid, rng)
    if pattern is not None:
        pattern.mul_(_col(rng.random(n) >= _BG_PLAIN))
    canvas = (_jitter(bg1, rng) * gain + bias).view(n, 3, 1, 1).expand(n, 3, size, size).clone()

    def paint(colour: torch.Tensor, alpha: torch.Tensor) -> None:
        _paint(canvas, colour * gain + bias, alpha)

    if pattern is not None:
        paint(_jitter(bg2, rng), pattern)

    # smooth clutter: per channel, the product of two random smooth profiles (one along x,
    # one along y), each interpolated from 4 random values: blotches, in one fused operation
    rows, cols = (_smooth_profiles(rng.standard_normal((n * 3, 1, 4)), size) for _ in range(2))
    canvas.addcmul_(rows.view(n, 3, 1, size) * gain.view(n, 3, 1, 1), cols.view(n, 3, size, 1),
                    value=_CLUTTER)

    # distractors below the object
    for _ in range(_DISTRACTORS - 1):
        _draw_distractor(paint, n, grid, size, rng)

    # the class composition, moved as a whole
    shift = rng.uniform(-_LAYOUT_SHIFT, _LAYOUT_SHIFT, (n, 2))
    scale = rng.uniform(*_LAYOUT_SCALE, n)
    turn = rng.uniform(-_LAYOUT_ROT, _LAYOUT_ROT, n)
    cos, sin = np.cos(turn), np.sin(turn)
    mirror = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    parts = spec["parts"]
    missing = np.where(rng.random(n) < _PART_DROP, rng.integers(len(parts), size=n), -1)
    for i, part in enumerate(parts):
        ox = (part["offset"][0] + rng.normal(0, _PART_SHIFT, n)) * mirror
        oy = part["offset"][1] + rng.normal(0, _PART_SHIFT, n)
        cx = shift[:, 0] + scale * (cos * ox - sin * oy)
        cy = shift[:, 1] + scale * (sin * ox + cos * oy)
        part_size = part["size"] * scale * rng.uniform(*_PART_SCALE, n)
        rot = part["rot"] * mirror + turn + rng.uniform(-_PART_ROT, _PART_ROT, n)
        cx[missing == i] = _AWAY
        alpha = _shape_alpha([float(p) for p in _SHAPE_TABLE[part["shape"]]], cx, cy,
                             part_size, part["aspect"],
                             rot + _SHAPE_BASE_ROT[part["shape"]], mirror, grid, size)
        colour = _jitter(_swap_some(part["colour"], n, rng), rng)
        pattern = _fill_pattern(part["fill"], cx, cy, part["fill_rot"] + rot,
                                np.full(n, part["freq"]), grid, rng)
        paint(colour, alpha)
        if pattern is not None:  # the texture's second colour where the texture is "on"
            paint(_jitter(_swap_some(part["colour2"], n, rng), rng), pattern.mul_(alpha))

    # one distractor on top, occluding the object now and then
    _draw_distractor(paint, n, grid, size, rng)

    # sensor noise: uniform, from random bytes (an order of magnitude cheaper than Gaussian
    # draws); the +0.5 in the bias and truncation to uint8 round to the nearest level
    noise = torch.frombuffer(bytearray(rng.bytes(n * 3 * size * size)), dtype=torch.uint8)
    canvas.add_(noise.view(n, 3, size, size), alpha=noise_scale)
    return canvas.clamp_(0.0, 255.0).to(torch.uint8)


def _smooth_profiles(values: np.ndarray, size: int) -> torch.Tensor:
    """Linear interpolation of [m, 1, k] random values to [m, 1, S] smooth 1-d profiles."""
    return torch.nn.functional.interpolate(torch.as_tensor(values, dtype=torch.float32),
                                           size=size, mode="linear", align_corners=False)


def _draw_distractor(paint, n, grid, size, rng):
    """A random one-box primitive of the bank, in a random colour, on some of the images."""
    shape = rng.choice(_ONE_BOX_SHAPES, n)
    cx, cy = rng.uniform(-0.85, 0.85, (2, n))
    cx[rng.random(n) >= _DISTRACTOR_P] = _AWAY
    part_size = rng.uniform(0.12, 0.34, n)
    aspect = rng.choice([1.0, 0.7, 1.4], n)
    rot = rng.uniform(0, math.pi, n) + _SHAPE_BASE_ROT[shape]
    alpha = _shape_alpha(list(_SHAPE_TABLE[shape].T), cx, cy, part_size, aspect, rot,
                         np.ones(n), grid, size)
    paint(_jitter(PALETTE[rng.integers(len(PALETTE), size=n)], rng), alpha)


def _shape_alpha(params, cx, cy, part_size, aspect, rot, mirror, grid, size) -> torch.Tensor:
    """Anti-aliased coverage [n, S, S] of one primitive per image.

    ``params`` is a row of the shape table, either as numbers (the same shape on every image:
    the parts of the formula it does not need are skipped) or as per-image arrays (then the
    second box is ignored: only one-box shapes may vary per image).
    """
    w1, h1, ox1, oy1, w2, h2, ox2, oy2, r, t, nx, ny, c = params
    same = isinstance(w1, float)
    # pixel-scaled local coordinates: u = k * mirror * (R(-rot) (p - centre)).x / sx, with
    # k pixels per size unit; every distance below is then in pixels
    k = part_size * (size / 2.0)
    sx, sy = part_size * aspect, part_size / aspect
    au, bu = k * np.cos(rot) * mirror / sx, k * np.sin(rot) * mirror / sx
    av, bv = -k * np.sin(rot) / sy, k * np.cos(rot) / sy
    cu, cv = -(au * cx + bu * cy), -(av * cx + bv * cy)

    def box(ox, oy, w, h):
        u = _plane(au, bu, cu - k * ox, grid)
        v = _plane(av, bv, cv - k * oy, grid)
        if same and w == 0.0 and h == 0.0:  # a point (rounded by r into a disc)
            return u.square_().add_(v.square_()).sqrt_()
        u.abs_().sub_(_col(k * w))
        v.abs_().sub_(_col(k * h))
        if same and r == 0.0:  # sharp box: the max-distance is exact inside and on edges
            return torch.maximum(u, v, out=u)
        if not same:  # mixed shapes: an octagonal distance, exact inside, on edges, diagonals
            diagonal = torch.add(u, v).mul_(math.sqrt(0.5))
            return torch.maximum(torch.maximum(u, v, out=u), diagonal, out=u)
        inside = torch.maximum(u, v).clamp_(max=0.0)
        return u.clamp_(min=0.0).square_().add_(v.clamp_(min=0.0).square_()).sqrt_().add_(inside)

    d = box(ox1, oy1, w1, h1)
    if same and (w1, h1, ox1, oy1) != (w2, h2, ox2, oy2):
        d = torch.minimum(d, box(ox2, oy2, w2, h2), out=d)
    if not (same and r == 0.0):
        d.sub_(_col(k * r))
    if not (same and t == _SOLID):  # outline: |d + t| - t
        d = torch.maximum(d, d.neg().sub_(_col(2 * k * t)), out=d)
    if not (same and c == _UNCUT):  # cut by the half-plane n . (u, v) <= c
        cut = _plane(nx * au + ny * av, nx * bu + ny * bv, nx * cu + ny * cv - k * c, grid)
        d = torch.maximum(d, cut, out=d)
    return d.neg_().add_(0.5).clamp_(0.0, 1.0)


def _fill_pattern(fill: int, cx, cy, rot, freq, grid, rng: np.random.Generator):
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
        return a.sub_(_col(phase1)).mul_(_col(0.6 / omega)).add_(0.5).clamp_(0, 1)
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
        x, y = grid
        x0 = _col(cx + rng.uniform(-0.3, 0.3, n))
        y0 = _col(cy + rng.uniform(-0.3, 0.3, n))
        radius = ((x - x0).square_() + (y - y0).square_()).sqrt_()
        return radius.mul_(_col(omega)).add_(_col(phase1)).sin_().mul_(1.5).add_(0.5).clamp_(0, 1)
    raise ValueError(f"unknown fill {name}")


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


def _paint(canvas: torch.Tensor, colour: torch.Tensor, alpha: torch.Tensor) -> None:
    """Paint one colour per image ([n, 3]) over ``canvas`` in place, with coverage [n, S, S].

    A textured primitive is two paints: its first colour with its coverage, then its second
    colour with coverage times texture.
    """
    n = colour.shape[0]
    canvas.lerp_(colour.view(n, 3, 1, 1).expand_as(canvas), alpha[:, None])
