"""Write a colour image folder harder than the glyphs: invented textures under changing light.

``python -m bench.make_texture_folder --out data/textures`` writes ``data/textures/texture-<k>/<i>.png``
(100 classes x 60 images of 32x32 RGB pixels by default). Each class is an invented material, the way
a texture dataset (DTD, KTH-TIPS) has them: 2 or 3 oriented waves of its own frequencies, sharpness
and weights, plus blotches of its own grain, painted with a palette of 3 colours. Classes share what
makes colour alone useless: every palette is a small change of one of 4 base palettes, so about 25
classes share each. Each image is a new patch of the material seen anew: new phases, the whole
pattern turned and scaled a little, colours, brightness and contrast jittered, a light gradient
across it, sometimes an occluding blob of another colour, and pixel noise. Where the glyphs are grey
line drawings a pre-trained network nearly solves (96%), a 5-way task here is told apart by
structure under nuisance: the second dataset of #37, which the project does not ship.
Seeded: the same arguments write the same files.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from bench.folder_writer import folder_writer_main, write_class_folders

BASE_PALETTES = 4  # classes share palettes: colour is a hint, never the answer


@dataclass(frozen=True)
class Material:
    """A class: waves ``[k, 4]`` (frequency in cycles per image, angle, sharpness, weight),
    the grain of its blotches (their share and size), and its 3 RGB colours in [0, 1]."""

    waves: np.ndarray
    blotch_share: float
    blotch_size: float
    palette: np.ndarray


def base_palettes(rng: np.random.Generator) -> np.ndarray:
    """``[BASE_PALETTES, 3, 3]`` palettes of 3 colours each."""
    return rng.uniform(0.05, 0.95, size=(BASE_PALETTES, 3, 3))


def invent_material(rng: np.random.Generator, palettes: np.ndarray) -> Material:
    count = int(rng.integers(2, 4))
    waves = np.stack([rng.uniform(1.5, 7.0, count), rng.uniform(0.0, np.pi, count),
                      rng.uniform(0.5, 6.0, count), rng.uniform(0.3, 1.0, count)], axis=1)
    palette = np.clip(palettes[int(rng.integers(len(palettes)))] + rng.normal(0.0, 0.08, (3, 3)), 0.0, 1.0)
    return Material(waves, float(rng.uniform(0.0, 0.6)), float(rng.uniform(1.0, 4.0)), palette)


def _blotches(size: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field in about [-1, 1]: white noise low-passed in Fourier space."""
    noise = np.fft.fft2(rng.normal(size=(size, size)))
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")) * size
    field = np.real(np.fft.ifft2(noise * np.exp(-(freq * scale / size * 4.0) ** 2)))
    return field / (np.abs(field).max() + 1e-9)


def _paint(value: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map ``value`` in [0, 1] through the 3 colours (piecewise linear): ``[H, W, 3]``."""
    low = np.clip(value * 2.0, 0.0, 1.0)[..., None]
    high = np.clip(value * 2.0 - 1.0, 0.0, 1.0)[..., None]
    return np.where(value[..., None] < 0.5, palette[0] + (palette[1] - palette[0]) * low,
                    palette[1] + (palette[2] - palette[1]) * high)


def draw_patch(material: Material, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``[size, size, 3]`` uint8 image of ``material``, a new patch under new light."""
    y, x = np.meshgrid(np.linspace(-0.5, 0.5, size), np.linspace(-0.5, 0.5, size), indexing="ij")
    turn, zoom = rng.normal(0.0, 0.8), rng.uniform(0.7, 1.4)
    value = np.zeros((size, size))
    for frequency, angle, sharpness, weight in material.waves:
        along = x * np.cos(angle + turn) + y * np.sin(angle + turn)
        wave = np.sin(2 * np.pi * frequency * zoom * along + rng.uniform(0, 2 * np.pi))
        value += weight * np.tanh(sharpness * wave) / np.tanh(sharpness)
    value /= material.waves[:, 3].sum()
    value = (1 - material.blotch_share) * value + material.blotch_share * _blotches(size, material.blotch_size, rng)
    contrast = rng.uniform(0.6, 1.0)
    tint = rng.uniform(0.75, 1.25, 3)  # the light's colour
    colours = np.clip(material.palette * tint + rng.normal(0.0, 0.08, (3, 3)), 0.0, 1.0)
    image = _paint(np.clip(0.5 + 0.5 * contrast * value, 0.0, 1.0), colours)
    towards = rng.uniform(0, 2 * np.pi)
    light = rng.uniform(0.7, 1.2) + rng.uniform(0.0, 0.6) * (x * np.cos(towards) + y * np.sin(towards))
    image = image * light[..., None]
    if rng.random() < 0.5:  # something in front of the material
        cy, cx, r = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.1, 0.3)
        inside = (y - cy) ** 2 + (x - cx) ** 2 < r ** 2
        image[inside] = rng.uniform(0.0, 1.0, 3)
    image += rng.normal(0.0, rng.uniform(0.03, 0.1), image.shape)
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def make_texture_folder(out: str, classes: int = 100, per_class: int = 60, size: int = 32, seed: int = 0) -> list[str]:
    """Write ``out/texture-<k>/<i>.png``; return the class names."""
    rng = np.random.default_rng(seed)
    palettes = base_palettes(rng)
    names = [f"texture-{k:03d}" for k in range(classes)]
    return write_class_folders(out, names, lambda: invent_material(rng, palettes),
                               lambda material: draw_patch(material, size, rng), per_class)


def main(argv=None) -> int:
    return folder_writer_main(argv, "python -m bench.make_texture_folder", __doc__, make_texture_folder, "RGB pixels")


if __name__ == "__main__":
    sys.exit(main())
