"""Training batches on the device: one descendant's (:func:`make_batch`, :class:`TaskBatches`) or P
stacked descendants' at once (:class:`PlannedBatches`).

Batches are built by indexing the dataset's uint8 tensor (already on the training device), then
normalised and augmented in torch. Each block of steps' random draws (image order, crops, flips) is
made on the CPU and copied to the device in one transfer (:meth:`TaskBatches.plan`).
:class:`PlannedBatches` builds every step's input of all P descendants at once: one gather from the
dataset's uint8 images (crop and flip are in the indices), one normalisation and one copy into the
stack's memory layout, the same few operations for any P.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from ..core.devices import canonical_device
from ..core.models import memory_format
from ..data.base import FewShotDataset
from .sampling import Task

# A process-wide cache of the datasets' images on devices: a worker's evaluations are plain function calls
# that each get the dataset, and its copy on the GPU must outlive them. id(dataset) -> (weak reference
# to it, {device: its images there}). The weak reference's callback drops the entry when the dataset
# goes away, so a later dataset that gets the same id never sees another's images, and the device
# memory is freed with the dataset.
_DEVICE_IMAGES: dict = {}

# Steps whose draws are copied to the device at once: one host-device transfer (and sync) per
# block, and a bounded amount of device memory however long the training.
PLAN_BLOCK = 128


def images_on(dataset: FewShotDataset, device: torch.device) -> torch.Tensor:
    """The dataset's uint8 images on ``device``: copied once per dataset and device, the copy freed
    with the dataset (on a CPU, the dataset's own tensor)."""
    device = canonical_device(device)
    if device.type == "cpu":
        return dataset.images
    entry = _DEVICE_IMAGES.get(id(dataset))
    if entry is None or entry[0]() is not dataset:
        key = id(dataset)
        entry = (weakref.ref(dataset, lambda _, key=key: _DEVICE_IMAGES.pop(key, None)), {})
        _DEVICE_IMAGES[key] = entry
    copies = entry[1]
    source, copy = copies.get(device, (None, None))
    if source is not dataset.images:  # first use here, or the dataset's images were replaced
        source, copy = dataset.images, dataset.images.to(device)
        copies[device] = (source, copy)
    return copy


def draw_crops(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """Random augmentation of ``n`` images, drawn on the CPU: a long tensor ``[3, n]`` of crop
    offsets ``dy``, ``dx`` (0-8 into the 4-pixel-padded image) and horizontal flips (0/1)."""
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.stack([dy, dx, flip.long()])


def make_batch(images: torch.Tensor, indices: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
               crops: torch.Tensor | None = None) -> torch.Tensor:
    """Float batch from uint8 ``images[indices]``, normalised; with ``crops`` (:func:`draw_crops`,
    on the images' device) each image is cropped from its 4-pixel reflect padding and flipped.

    In the process's memory format (:func:`~learngene_ea.core.models.use_channels_last`).
    """
    batch = images.index_select(0, indices).float().div_(255.0)
    if crops is not None:
        n, _, h, w = batch.shape
        dy, dx, flip = crops
        padded = nn.functional.pad(batch, (4, 4, 4, 4), mode="reflect")
        rows = (dy.view(n, 1) + torch.arange(h, device=batch.device).view(1, h))  # [n, h]
        cols = (dx.view(n, 1) + torch.arange(w, device=batch.device).view(1, w))  # [n, w]
        batch = padded[torch.arange(n, device=batch.device).view(n, 1, 1, 1),
                       torch.arange(batch.shape[1], device=batch.device).view(1, -1, 1, 1),
                       rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
        batch = torch.where(flip.bool().view(n, 1, 1, 1), batch.flip(3), batch)
    return ((batch - mean) / std).contiguous(memory_format=memory_format())


def normalisation(dataset: FewShotDataset, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset's per-channel mean and std on ``device``, shaped to broadcast over a batch."""
    mean = torch.tensor(dataset.mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    return mean, std


class TaskBatches:
    """Endless mini-batches over one task's images: reshuffled every epoch, full batches only.

    All randomness (order, crops, flips) comes from one generator seeded with ``seed``, in a
    fixed order of draws, so a descendant sees the same batches whether it trains alone or
    stacked with others (:func:`train_stacked`), and whatever the block size of :meth:`plan`.
    """

    def __init__(self, task: Task, batch_size: int, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self.indices = torch.as_tensor(task.indices, dtype=torch.long)
        self.labels = torch.as_tensor(task.labels, dtype=torch.long)
        self.batch_size = min(batch_size, len(self.indices))
        self.order = torch.randperm(len(self.indices), generator=self.generator)
        self.cursor = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Image indices and labels of the next batch."""
        if self.cursor + self.batch_size > len(self.indices):  # next epoch over the task
            self.order, self.cursor = torch.randperm(len(self.indices), generator=self.generator), 0
        pick = self.order[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return self.indices[pick], self.labels[pick]

    def plan(self, steps: int, augment: bool) -> torch.Tensor:
        """The next ``steps`` batches as one long tensor ``[steps, 5, batch]``: image indices,
        labels, then (with ``augment``, else zeros) the crops of :func:`draw_crops`."""
        rows = []
        for _ in range(steps):
            indices, labels = self.next()
            if augment:
                crops = draw_crops(len(indices), self.generator)
            else:
                crops = torch.zeros(3, len(indices), dtype=torch.long)
            rows.append(torch.cat([indices.view(1, -1), labels.view(1, -1), crops]))
        return torch.stack(rows)


def reflect(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Indices into a dimension of ``size`` of ``positions`` in its reflect padding (``-1`` is ``1``,
    ``size`` is ``size - 2``), as :func:`torch.nn.functional.pad` with ``mode="reflect"`` reads them."""
    return (size - 1) - ((size - 1) - positions.abs()).abs()


class PlannedBatches:
    """A block of steps' batches of P descendants on the device, as gather indices.

    ``draws``: ``[S, P, 5, B]`` (each descendant's :meth:`~learngene_ea.fewshot.batches.TaskBatches.plan`,
    stacked). :meth:`batch` gives step ``t``'s input ``[B, P*C, H, W]`` (descendant ``p``'s images in
    channels ``p*C..``) in ``layout``: exactly the images that
    :func:`~learngene_ea.fewshot.batches.make_batch` builds for each descendant, side by side.
    """

    def __init__(self, draws: torch.Tensor, image_shape, augment: bool, layout: torch.memory_format):
        c, h, w = image_shape
        device = draws.device
        self.labels = draws[:, :, 1]  # [S, P, B]
        image = draws[:, :, 0].transpose(1, 2)  # [S, B, P]
        if augment:  # a crop at (dy, dx) of the 4-pixel padded image, read through the padding
            dy, dx, flip = (draws[:, :, k].transpose(1, 2).unsqueeze(3) for k in (2, 3, 4))
            cols = torch.arange(w, device=device)
            rows = reflect(dy - 4 + torch.arange(h, device=device), h)  # [S, B, P, H]
            cols = reflect(dx - 4 + torch.where(flip.bool(), w - 1 - cols, cols), w)  # [S, B, P, W]
        else:
            steps = draws.shape[0]
            rows = torch.arange(h, device=device).view(1, 1, 1, h).expand(steps, 1, 1, h)
            cols = torch.arange(w, device=device).view(1, 1, 1, w).expand(steps, 1, 1, w)
        self.layout = layout
        # gathered as [B, P, C, H, W] (rows of pixels read in order), indices contiguous in that order:
        # the gather's output follows its indices' strides
        self.image = image[..., None, None, None].contiguous()
        self.channel = torch.arange(c, device=device).view(c, 1, 1)
        self.rows, self.cols = rows[:, :, :, None, :, None].contiguous(), cols[:, :, :, None, None, :].contiguous()

    def batch(self, images: torch.Tensor, t: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Step ``t``'s normalised float input ``[B, P*C, H, W]``; ``mean``, ``std``: ``[C, 1, 1]``."""
        x = images[self.image[t], self.channel, self.rows[t], self.cols[t]].float().div_(255.0)
        x = (x - mean) / std  # normalised in rows of pixels, then laid out once
        return x.view(x.shape[0], -1, *x.shape[3:]).contiguous(memory_format=self.layout)
