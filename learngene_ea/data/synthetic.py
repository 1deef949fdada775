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

This module assembles the dataset: it renders every class in parallel threads, computes the
normalisation statistics of the training classes, splits the classes and memoises the
result per process. The bank and the class compositions are in :mod:`.synthetic_bank`,
rasterising one primitive in :mod:`.synthetic_raster` and drawing a class's images in
:mod:`.synthetic_render`. Rendering is vectorised: every primitive is a signed distance field
evaluated on affinely transformed coordinate grids for a whole class of images at once (one
Python iteration per class and layer). The default 60,000 images take about 7 s of CPU time.
"""
from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import UserError
from .base import FewShotDataset
from .synthetic_bank import class_spec
from .synthetic_raster import pixel_grid
from .synthetic_render import render_class


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
    grid = pixel_grid(size)

    def render(c: int) -> None:
        # random streams per class: class c does not depend on how many classes there are
        spec = class_spec(np.random.default_rng([seed, 0, c]))
        rng = np.random.default_rng([seed, 1, c])
        images[c * n:(c + 1) * n] = render_class(spec, n, size, grid, rng)

    # Threading inside each small element-wise operation costs more than it gains here (and
    # stalls badly on a busy machine), so every class renders on one thread and classes
    # render in parallel on as many threads as torch may use. The images do not depend on
    # the number of threads; torch's setting is restored afterwards.
    from ..core.threads import threads_set_to

    threads = torch.get_num_threads()
    with threads_set_to(1):
        if threads == 1 or num_classes == 1:
            for c in range(num_classes):
                render(c)
        else:
            with ThreadPoolExecutor(min(threads, num_classes)) as pool:
                list(pool.map(render, range(num_classes)))

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
