"""Training and scoring descendants: the tensor work inside fitness and transfer.

Batches are built by indexing the dataset's uint8 tensor (already on the training device),
then normalised and augmented in torch. The training loop never synchronises with the host
per step: each block of steps' random draws (image order, crops, flips) is made on the CPU and
copied to the device in one transfer (:meth:`TaskBatches.plan`), and losses stay on the device
until they are checked once at the end. A step is the same operations for one descendant or P
stacked ones (:class:`PopulationTrainer`): one gather builds every descendant's batch.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .batched import PlannedBatches, StackedDescendants
from .data.base import FewShotDataset
from .models import memory_format
from .sampling import Episode, Task, mean_and_ci95, prototype_predict

# id(dataset) -> (weak reference to it, {device: its images there}). The weak reference's callback
# drops the entry when the dataset goes away, so a later dataset that gets the same id never sees
# another's images, and the device memory is freed with the dataset.
_DEVICE_IMAGES: dict = {}

# Steps whose draws are copied to the device at once: one host-device transfer (and sync) per
# block, and a bounded amount of device memory however long the training.
PLAN_BLOCK = 128


def resolve_device(name: str = "auto", worker_index: int = 0) -> torch.device:
    """``auto``: ``cuda:{worker_index % device_count}`` when GPUs exist, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{worker_index % torch.cuda.device_count()}")
        return torch.device("cpu")
    return canonical_device(name)


def canonical_device(device) -> torch.device:
    """``device`` with its index filled in: ``cuda`` is the current CUDA device (``cuda:0`` unless
    set otherwise), so that ``cuda`` and ``cuda:0`` name one device (and one cached copy)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


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

    In the process's memory format (:func:`~learngene_ea.models.use_channels_last`).
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


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss."""


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


@dataclass(frozen=True)
class StepSettings:
    """What a training step needs besides the network and its batches."""

    lr: float
    weight_decay: float = 5e-4
    augment: bool = True


_PRECISION = ["fp32"]


def use_precision(name: str) -> None:
    """Train in ``name`` (``fp32`` or ``bf16``, ``runtime.precision``) in this process from now on."""
    _PRECISION[0] = name


def autocast(device: torch.device):
    """bf16 autocast of the forward pass (CUDA or CPU) when this process trains in bf16, else nothing."""
    if _PRECISION[0] == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class PopulationTrainer:
    """SGD steps of one descendant or of P stacked ones: each step is the same operations for any P
    (one gather builds all P batches, one forward and backward pass, one optimiser update)."""

    def __init__(self, network: nn.Module, dataset: FewShotDataset, device: torch.device, steps: int,
                 settings: StepSettings):
        self.network, self.device, self.augment = network, torch.device(device), settings.augment
        self.stacked = isinstance(network, StackedDescendants)
        self.layout = network.layout if self.stacked else memory_format()
        self.images = images_on(dataset, self.device)
        self.mean, self.std = (v.view(-1, 1, 1) for v in normalisation(dataset, self.device))
        self.optimizer, self.schedule = _optimizer(network.parameters(), settings.lr, settings.weight_decay, steps)

    def plan(self, streams: list[TaskBatches], steps: int) -> PlannedBatches:
        """The next ``steps`` batches of every stream, copied to the device in one transfer."""
        draws = torch.stack([stream.plan(steps, self.augment) for stream in streams], dim=1)  # [S, P, 5, B]
        return PlannedBatches(draws.to(self.device), self.images.shape[1:], self.augment, self.layout)

    def step(self, block: PlannedBatches, t: int) -> torch.Tensor:
        """One SGD step on ``block``'s batch ``t``; returns each descendant's loss ``[P]`` (on the device)."""
        x, labels = block.batch(self.images, t, self.mean, self.std), block.labels[t]  # labels [P, B]
        with autocast(self.device):
            logits = self.network(x)
        if _PRECISION[0] != "fp32":
            logits = logits.float()
        if self.stacked:  # logits [B, P, K]
            per_model = nn.functional.cross_entropy(logits.permute(0, 2, 1), labels.T, reduction="none").mean(0)
        else:
            per_model = nn.functional.cross_entropy(logits, labels[0]).unsqueeze(0)
        self.optimizer.zero_grad(set_to_none=True)
        per_model.sum().backward()  # parameters are disjoint: each descendant gets its own gradient
        self.optimizer.step()
        self.schedule.step()
        return per_model.detach()


def _optimizer(params, lr, weight_decay, steps):
    # foreach: one operation per update for all parameters (the default on a GPU; on a CPU the same
    # arithmetic, element for element, as the per-parameter loop)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True, foreach=True)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def train_on_task(model: nn.Module, dataset: FewShotDataset, task: Task, steps: int, batch_size: int,
                  lr: float, weight_decay: float = 5e-4, augment: bool = True, seed: int = 0,
                  device: torch.device | str = "cpu") -> float:
    """Train ``model`` (head sized to the task) with SGD + cosine decay; return the final mean loss.

    Raises :class:`DivergedError` when the loss is not finite (checked once, after training).
    """
    return train_stacked([model], dataset, [task], steps, batch_size, lr, weight_decay, augment, [seed],
                         device)[0]


def stacked_layout(device: torch.device) -> torch.memory_format:
    """Memory format of a stacked network: channels-last on a CPU, where its grouped convolutions
    are 1.3-1.8x faster so (README "Population batching"), else this process's."""
    return torch.channels_last if torch.device(device).type == "cpu" else memory_format()


def train_stacked(models: list[nn.Module], dataset: FewShotDataset, tasks: list[Task], steps: int,
                  batch_size: int, lr: float, weight_decay: float = 5e-4, augment: bool = True,
                  seeds: list[int] = (0,), device: torch.device | str = "cpu") -> list[float]:
    """Train each model on its own task; several same-shape models train as one grouped network.

    With one model this is plain training. With several, they are stacked
    (:class:`~learngene_ea.batched.StackedDescendants`), trained together, and their weights
    are written back. Returns each model's final mean loss; raises :class:`DivergedError` if
    any loss is not finite.
    """
    device = torch.device(device)
    streams = [TaskBatches(task, batch_size, seed) for task, seed in zip(tasks, seeds)]
    if len(models) == 1:
        return train_network(models[0], dataset, streams, steps, StepSettings(lr, weight_decay, augment), device)
    stacked = StackedDescendants(models, stacked_layout(device))
    losses = train_network(stacked, dataset, streams, steps, StepSettings(lr, weight_decay, augment), device)
    stacked.split()
    return losses


def train_network(network: nn.Module, dataset: FewShotDataset, streams: list[TaskBatches], steps: int,
                  settings: StepSettings, device: torch.device) -> list[float]:
    """Train ``network``: one descendant (one stream) or a stack of P (P streams, descendant ``p``
    learning from ``streams[p]``); each block of steps' draws goes to the device in one transfer.
    Returns each descendant's final mean loss; raises :class:`DivergedError` if any is not finite."""
    trainer = PopulationTrainer(network, dataset, device, steps, settings)
    losses = torch.zeros(steps, len(streams), device=device)
    network.train()
    for step in range(steps):
        if step % PLAN_BLOCK == 0:
            block = trainer.plan(streams, min(PLAN_BLOCK, steps - step))
        losses[step] = trainer.step(block, step % PLAN_BLOCK)
    if not torch.isfinite(losses).all():
        raise DivergedError("training loss became NaN or infinite")
    tail = losses[-max(1, steps // 10):].mean(0)
    return [float(v) for v in tail.cpu()]


@torch.no_grad()
def features_of(model: nn.Module, dataset: FewShotDataset, indices: np.ndarray,
                device: torch.device | str = "cpu", batch_size: int = 512) -> torch.Tensor:
    """Pooled features of the images at ``indices`` (evaluation mode, no augmentation)."""
    device = torch.device(device)
    images = images_on(dataset, device)
    mean, std = normalisation(dataset, device)
    model.eval()
    index = torch.as_tensor(indices, dtype=torch.long, device=device)
    chunks = [model.forward_features(make_batch(images, index[i:i + batch_size], mean, std))
              for i in range(0, len(index), batch_size)]
    return torch.cat(chunks)


def episode_images(episodes: list[Episode]) -> np.ndarray:
    """The sorted distinct image indices of ``episodes``' support and query sets."""
    return np.unique(np.concatenate([np.concatenate([e.support, e.query]) for e in episodes]))


def episode_tensors(episodes: list[Episode], images: np.ndarray, device) -> list[tuple[torch.Tensor, ...]]:
    """Each episode's ``(support, support labels, query, query labels)`` as long tensors on
    ``device``, support and query given as positions in ``images`` (:func:`episode_images`):
    copied in one transfer for all episodes, not four per episode."""
    position = {int(idx): i for i, idx in enumerate(images)}
    parts = []
    for e in episodes:
        parts += [[position[int(i)] for i in e.support], e.support_labels,
                  [position[int(i)] for i in e.query], e.query_labels]
    flat = torch.as_tensor(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])).to(device)
    views = flat.split([len(p) for p in parts])
    return [tuple(views[i:i + 4]) for i in range(0, len(views), 4)]


@torch.no_grad()
def prototype_accuracies(model: nn.Module, dataset: FewShotDataset, episodes: list[Episode],
                         metric: str = "cosine", device: torch.device | str = "cpu") -> np.ndarray:
    """Accuracy of the nearest-centroid classifier on each episode (features computed once)."""
    if not episodes:
        return np.zeros(0)
    all_indices = episode_images(episodes)
    feats = features_of(model, dataset, all_indices, device)
    correct = []
    for e, (s, s_labels, q, q_labels) in zip(episodes, episode_tensors(episodes, all_indices, feats.device)):
        pred = prototype_predict(feats[s], s_labels, feats[q], len(e.class_ids), metric)
        correct.append((pred == q_labels).float().mean())
    return torch.stack(correct).cpu().numpy()


def prototype_score(model, dataset, episodes, metric="cosine", device="cpu") -> tuple[float, float]:
    """Mean prototype accuracy over ``episodes`` and its 95% CI half-width."""
    return mean_and_ci95(prototype_accuracies(model, dataset, episodes, metric, device))


def finetune_head_accuracies(model: nn.Module, dataset: FewShotDataset, episodes: list[Episode], steps: int,
                             device: torch.device | str = "cpu", lr: float = 0.5) -> np.ndarray:
    """Per-episode accuracy of a linear head trained on the frozen features of the support set.

    Features are computed once (evaluation mode) and L2-normalised; every episode gets a head
    initialised at zero and trained with ``steps`` steps of full-batch SGD (momentum 0.9), so
    its first step points at the centred class prototypes and later steps refine it into a
    logistic regression. Deterministic; does not modify ``model`` (its training flag is restored).
    """
    if not episodes:
        return np.zeros(0)
    was_training = model.training
    try:
        all_indices = episode_images(episodes)
        feats = nn.functional.normalize(features_of(model, dataset, all_indices, device).float(), dim=1)
    finally:
        model.train(was_training)
    accuracies = []
    for e, (s, y, q, q_labels) in zip(episodes, episode_tensors(episodes, all_indices, feats.device)):
        n_way = len(e.class_ids)
        s, q = feats[s], feats[q]
        weight = torch.zeros(n_way, feats.shape[1], device=feats.device, requires_grad=True)
        bias = torch.zeros(n_way, device=feats.device, requires_grad=True)
        optimizer = torch.optim.SGD([weight, bias], lr=lr, momentum=0.9)
        with torch.enable_grad():
            for _ in range(steps):
                loss = nn.functional.cross_entropy(s @ weight.T + bias, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            pred = (q @ weight.T + bias).argmax(dim=1)
            accuracies.append((pred == q_labels).float().mean())
    return torch.stack(accuracies).cpu().numpy().astype(np.float64)


@contextlib.contextmanager
def learngene_channels_only(model: nn.Module, masks: dict[str, np.ndarray]):
    """Inside the block, ``model`` is its learngene sub-network: dropped channels output zero.

    Every gene layer's output (after BatchNorm) is multiplied by its mask group's mask, so the
    kept layers read only kept input channels: exactly ``W[kept_out][:, kept_in]`` and the kept
    BatchNorms, the knowledge a descendant would inherit.
    """
    handles = []
    device = next(model.parameters()).device
    for layer in model.spec.layers:
        keep = torch.as_tensor(np.asarray(masks[layer.group]), dtype=torch.float32, device=device).view(1, -1, 1, 1)
        handles.append(model.gene_module(layer.name).register_forward_hook(
            lambda module, inputs, output, keep=keep: output * keep))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
