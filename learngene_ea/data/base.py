"""The in-memory few-shot dataset every loader returns.

Images live in one uint8 tensor ``[N, C, H, W]``; tasks and episodes are index lists into it,
so building a batch is an indexing operation (no per-image decoding in training loops).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

SPLITS = ("train", "val", "test")


@dataclass
class FewShotDataset:
    """Images and labels of every class, with the class split used by few-shot learning.

    Attributes:
        images: uint8 tensor ``[N, C, H, W]``.
        labels: int64 tensor ``[N]`` of global class ids (``0 .. len(class_names) - 1``).
        class_names: name of each global class id.
        splits: ``{"train": [...], "val": [...], "test": [...]}``, disjoint lists of class ids.
        mean, std: per-channel statistics (0..1 scale) used to normalise batches.
        name: short dataset name (``synthetic``, ``cifarfs``, ...).
        cache_path: file the decoded images were cached in, if any.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    splits: dict[str, list[int]]
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    name: str = "dataset"
    cache_path: str | None = None
    _by_class: dict[int, torch.Tensor] = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("images must be a uint8 tensor [N, C, H, W]")
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError("labels and images differ in length")
        self.labels = self.labels.to(torch.int64)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def indices_of_class(self, class_id: int) -> torch.Tensor:
        """Sorted indices of every image of one global class (computed once, then cached)."""
        if self._by_class is None:
            order = torch.argsort(self.labels, stable=True)
            counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
            self._by_class = dict(enumerate(torch.split(order, counts)))
        return self._by_class[int(class_id)]

    def images_per_class(self) -> dict[int, int]:
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return dict(enumerate(counts))

    def describe(self) -> dict:
        """Plain-data summary (what ``python -m learngene_ea.data`` prints)."""
        per_class = self.images_per_class()
        return {
            "name": self.name,
            "images": int(self.images.shape[0]),
            "image_size": self.image_size,
            "channels": self.channels,
            "cache_path": self.cache_path,
            "splits": {
                split: {
                    "classes": len(ids),
                    "names": [self.class_names[i] for i in ids],
                    "images_per_class": sorted({per_class[i] for i in ids}),
                }
                for split, ids in self.splits.items()
            },
        }
