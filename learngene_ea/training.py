"""Training and scoring descendants: the tensor work inside fitness and transfer.

Batches are built by indexing the dataset's uint8 tensor (already on the training device),
then normalised and augmented in torch. The training loop never synchronises with the host
per step (losses are kept on the device and checked once at the end).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .data.base import FewShotDataset
from .sampling import Episode, Task, mean_and_ci95, prototype_predict

_DEVICE_IMAGES: dict = {}


def resolve_device(name: str = "auto", worker_index: int = 0) -> torch.device:
    """``auto``: ``cuda:{worker_index % device_count}`` when GPUs exist, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{worker_index % torch.cuda.device_count()}")
        return torch.device("cpu")
    return torch.device(name)


def images_on(dataset: FewShotDataset, device: torch.device) -> torch.Tensor:
    """The dataset's uint8 images on ``device`` (copied once per process and device)."""
    device = torch.device(device)
    if device.type == "cpu":
        return dataset.images
    key = (id(dataset), str(device))
    if key not in _DEVICE_IMAGES:
        _DEVICE_IMAGES[key] = dataset.images.to(device)
    return _DEVICE_IMAGES[key]


def make_batch(images: torch.Tensor, indices: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
               augment: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Float batch from uint8 ``images[indices]``: optional random crop (pad 4) + flip, normalised."""
    batch = images.index_select(0, indices).float().div_(255.0)
    if augment:
        n, _, h, w = batch.shape
        padded = nn.functional.pad(batch, (4, 4, 4, 4), mode="reflect")
        dy = torch.randint(0, 9, (n,), generator=generator, device="cpu").to(batch.device)
        dx = torch.randint(0, 9, (n,), generator=generator, device="cpu").to(batch.device)
        rows = (dy.view(n, 1) + torch.arange(h, device=batch.device).view(1, h))  # [n, h]
        cols = (dx.view(n, 1) + torch.arange(w, device=batch.device).view(1, w))  # [n, w]
        batch = padded[torch.arange(n, device=batch.device).view(n, 1, 1, 1),
                       torch.arange(batch.shape[1], device=batch.device).view(1, -1, 1, 1),
                       rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
        flip = torch.rand(n, generator=generator, device="cpu").to(batch.device) < 0.5
        batch = torch.where(flip.view(n, 1, 1, 1), batch.flip(3), batch)
    return (batch - mean) / std


def _stats(dataset: FewShotDataset, device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(dataset.mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    return mean, std


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def train_on_task(model: nn.Module, dataset: FewShotDataset, task: Task, steps: int, batch_size: int,
                  lr: float, weight_decay: float = 5e-4, augment: bool = True, seed: int = 0,
                  device: torch.device | str = "cpu", params=None) -> float:
    """Train ``model`` (head sized to the task) with SGD + cosine decay; return the final mean loss.

    Raises :class:`DivergedError` when the loss is not finite (checked once, after training).
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    images = images_on(dataset, device)
    mean, std = _stats(dataset, device)
    indices = torch.as_tensor(task.indices, dtype=torch.long)
    labels = torch.as_tensor(task.labels, dtype=torch.long)
    params = list(model.parameters()) if params is None else list(params)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    losses = torch.zeros(steps, device=device)
    model.train()
    n = len(indices)
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for step in range(steps):
        if cursor + batch_size > n:  # next epoch over the task's images
            order, cursor = torch.randperm(n, generator=generator), 0
        pick = order[cursor:cursor + batch_size]
        cursor += batch_size
        x = make_batch(images, indices[pick].to(device), mean, std, augment, generator)
        y = labels[pick].to(device)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses[step] = loss.detach()
    tail = losses[-max(1, steps // 10):]
    if not torch.isfinite(losses).all():
        raise DivergedError("training loss became NaN or infinite")
    return float(tail.mean())


@torch.no_grad()
def features_of(model: nn.Module, dataset: FewShotDataset, indices: np.ndarray,
                device: torch.device | str = "cpu", batch_size: int = 512) -> torch.Tensor:
    """Pooled features of the images at ``indices`` (evaluation mode, no augmentation)."""
    device = torch.device(device)
    images = images_on(dataset, device)
    mean, std = _stats(dataset, device)
    model.eval()
    index = torch.as_tensor(indices, dtype=torch.long, device=device)
    chunks = [model.forward_features(make_batch(images, index[i:i + batch_size], mean, std))
              for i in range(0, len(index), batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def prototype_accuracies(model: nn.Module, dataset: FewShotDataset, episodes: list[Episode],
                         metric: str = "cosine", device: torch.device | str = "cpu") -> np.ndarray:
    """Accuracy of the nearest-centroid classifier on each episode (features computed once)."""
    if not episodes:
        return np.zeros(0)
    all_indices = np.unique(np.concatenate([np.concatenate([e.support, e.query]) for e in episodes]))
    feats = features_of(model, dataset, all_indices, device)
    position = {int(idx): i for i, idx in enumerate(all_indices)}
    correct = []
    for e in episodes:
        s = torch.as_tensor([position[int(i)] for i in e.support], device=feats.device)
        q = torch.as_tensor([position[int(i)] for i in e.query], device=feats.device)
        s_labels = torch.as_tensor(e.support_labels, device=feats.device)
        q_labels = torch.as_tensor(e.query_labels, device=feats.device)
        pred = prototype_predict(feats[s], s_labels, feats[q], len(e.class_ids), metric)
        correct.append((pred == q_labels).float().mean())
    return torch.stack(correct).cpu().numpy()


def prototype_score(model, dataset, episodes, metric="cosine", device="cpu") -> tuple[float, float]:
    """Mean prototype accuracy over ``episodes`` and its 95% CI half-width."""
    return mean_and_ci95(prototype_accuracies(model, dataset, episodes, metric, device))
