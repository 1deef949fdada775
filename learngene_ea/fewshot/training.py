"""Training and scoring descendants: the tensor work inside fitness and transfer.

The training loop never synchronises with the host per step: each block of steps' random draws is
copied to the device in one transfer (:mod:`~learngene_ea.fewshot.batches`), and losses stay on the
device until they are checked once at the end. A step is the same operations for one descendant or P
stacked ones (:class:`PopulationTrainer`): one gather builds every descendant's batch, one forward
and backward pass and one foreach SGD update train them all.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.batched import StackedDescendants
from ..core.models import memory_format
from ..core.process_settings import THIS_PROCESS
from ..data.base import FewShotDataset
from .batches import PLAN_BLOCK, PlannedBatches, TaskBatches, images_on, make_batch, normalisation
from .sampling import Episode, Task, prototype_predict


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@dataclass(frozen=True)
class TrainSettings:
    """How a network learns a task: ``steps`` SGD steps (momentum 0.9, cosine decay) of ``batch_size``
    images at learning rate ``lr`` with ``weight_decay``, crop + flip augmented when ``augment``."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float = 5e-4
    augment: bool = True

    @classmethod
    def of_task(cls, cfg, steps: int | None = None, augment: bool | None = None) -> "TrainSettings":
        """The recipe's ``task`` section (and ``data.augment``); ``steps``/``augment`` replace its own."""
        return cls(cfg.task.steps if steps is None else steps, cfg.task.batch_size, cfg.task.lr,
                   cfg.task.weight_decay, cfg.data.augment if augment is None else augment)


def use_precision(name: str) -> None:
    """Train in ``name`` (``fp32`` or ``bf16``, ``runtime.precision``) in this process from now on (kept in
    :data:`~learngene_ea.core.process_settings.THIS_PROCESS`)."""
    THIS_PROCESS.precision = name


def autocast(device: torch.device):
    """bf16 autocast of the forward pass (CUDA or CPU) when this process trains in bf16, else nothing."""
    if THIS_PROCESS.precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class PopulationTrainer:
    """SGD steps of one descendant or of P stacked ones: each step is the same operations for any P
    (one gather builds all P batches, one forward and backward pass, one optimiser update)."""

    def __init__(self, network: nn.Module, dataset: FewShotDataset, device: torch.device, settings: TrainSettings):
        self.network, self.device, self.augment = network, torch.device(device), settings.augment
        self.stacked = isinstance(network, StackedDescendants)
        self.layout = network.layout if self.stacked else memory_format()
        self.images = images_on(dataset, self.device)
        self.mean, self.std = (v.view(-1, 1, 1) for v in normalisation(dataset, self.device))
        self.optimizer, self.schedule = _optimizer(network.parameters(), settings.lr, settings.weight_decay,
                                                   settings.steps)

    def plan(self, streams: list[TaskBatches], steps: int) -> PlannedBatches:
        """The next ``steps`` batches of every stream, copied to the device in one transfer."""
        draws = torch.stack([stream.plan(steps, self.augment) for stream in streams], dim=1)  # [S, P, 5, B]
        return PlannedBatches(draws.to(self.device), self.images.shape[1:], self.augment, self.layout)

    def step(self, block: PlannedBatches, t: int) -> torch.Tensor:
        """One SGD step on ``block``'s batch ``t``; returns each descendant's loss ``[P]`` (on the device)."""
        x, labels = block.batch(self.images, t, self.mean, self.std), block.labels[t]  # labels [P, B]
        with autocast(self.device):
            logits = self.network(x)
        if THIS_PROCESS.precision != "fp32":
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


def train_on_task(model: nn.Module, dataset: FewShotDataset, task: Task, settings: TrainSettings, seed: int = 0,
                  device: torch.device | str = "cpu", observe=None) -> float:
    """Train ``model`` (head sized to the task) with SGD + cosine decay; return the final mean loss.

    Raises :class:`DivergedError` when the loss is not finite (checked once, after training);
    ``observe`` as :func:`train_stacked`'s.
    """
    return train_stacked([model], dataset, [task], settings, [seed], device, observe)[0]


def stacked_layout(device: torch.device) -> torch.memory_format:
    """Memory format of a stacked network: channels-last on a CPU, where its grouped convolutions
    are 1.3-1.8x faster so (README "Population batching"), else this process's."""
    return torch.channels_last if torch.device(device).type == "cpu" else memory_format()


def train_stacked(models: list[nn.Module], dataset: FewShotDataset, tasks: list[Task], settings: TrainSettings,
                  seeds: list[int] = (0,), device: torch.device | str = "cpu", observe=None) -> list[float]:
    """Train each model on its own task; several same-shape models train as one grouped network.

    With one model this is plain training. With several, they are stacked
    (:class:`~learngene_ea.core.batched.StackedDescendants`), trained together, and their weights
    are written back. Returns each model's final mean loss; raises :class:`DivergedError` if
    any loss is not finite. ``observe(steps_done, loss)``, for one model only, is called after every
    step (the model back in training mode after it): a learning curve is measured there, a
    progress bar moves there (:class:`StepProgress`).
    """
    if observe is not None and len(models) != 1:
        raise ValueError("observe watches one model's training; stacked models are observed after splitting")
    streams = [TaskBatches(task, settings.batch_size, seed) for task, seed in zip(tasks, seeds)]
    if len(models) == 1:
        return train_network(models[0], dataset, streams, settings, device, observe)
    stacked = StackedDescendants(models, stacked_layout(device))
    losses = train_network(stacked, dataset, streams, settings, device)
    stacked.split()
    return losses


def train_network(network: nn.Module, dataset: FewShotDataset, streams: list[TaskBatches], settings: TrainSettings,
                  device: torch.device | str = "cpu", observe=None) -> list[float]:
    """Train ``network``: one descendant (one stream) or a stack of P (P streams, descendant ``p``
    learning from ``streams[p]``); each block of steps' draws goes to the device in one transfer.
    Returns each descendant's final mean loss; raises :class:`DivergedError` if any is not finite.
    ``observe(steps_done, loss)`` is called after every step (the network back in training mode after
    it), ``loss`` the step's loss per descendant as a tensor on the device (reading it waits for a GPU).
    """
    device, steps = torch.device(device), settings.steps
    trainer = PopulationTrainer(network, dataset, device, settings)
    losses = torch.zeros(steps, len(streams), device=device)
    network.train()
    for step in range(steps):
        if step % PLAN_BLOCK == 0:
            block = trainer.plan(streams, min(PLAN_BLOCK, steps - step))
        losses[step] = trainer.step(block, step % PLAN_BLOCK)
        if observe is not None:
            observe(step + 1, losses[step])
            network.train()
    if not torch.isfinite(losses).all():
        raise DivergedError("training loss became NaN or infinite")
    tail = losses[-max(1, steps // 10):].mean(0)
    return [float(v) for v in tail.cpu()]


class StepProgress:
    """An ``observe`` callback (:func:`train_stacked`) that moves a progress bar one step per training
    step and shows the loss, then calls ``then`` (another observer) if given. ``bar``: a tqdm-like
    object (``update``, ``set_postfix``, ``close``) sized to the training's steps."""

    LOSS_EVERY = 10  # steps between loss readings: each one waits for a GPU

    def __init__(self, bar, then=None):
        self.bar, self.then = bar, then

    def __call__(self, steps_done: int, loss=None) -> None:
        if self.then is not None:
            self.then(steps_done, loss)
        self.bar.update(1)
        if loss is not None and (steps_done % self.LOSS_EVERY == 0 or steps_done == self.bar.total):
            self.bar.set_postfix(loss=f"{float(loss.float().mean()):.3f}", refresh=False)

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def closing_observer(progress, steps: int, desc: str, then=None):
    """:func:`step_observer` for one training, its bar (if it made one) closed afterwards, also when the
    training fails; ``then`` is left to its owner."""
    observe = step_observer(progress, steps, desc, then)
    try:
        yield observe
    finally:
        if isinstance(observe, StepProgress):
            observe.close()


def step_observer(progress, steps: int, desc: str, then=None):
    """What :func:`train_stacked` should call after each of ``steps`` steps: a :class:`StepProgress` on a bar
    from ``progress(None, steps, desc, unit="step")`` (the run's bar factory), or ``then`` alone
    (``progress`` None: ``--quiet``)."""
    if progress is None:
        return then
    return StepProgress(progress(None, steps, desc, unit="step"), then)


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


@torch.no_grad()
def prototype_head(model: nn.Module, dataset: FewShotDataset, task: Task, per_class: int,
                   device: torch.device | str = "cpu") -> None:
    """Start ``model.head`` as its task's nearest-prototype classifier (Proto-MAML's initialisation,
    Triantafillou et al. 2020): ``W_k = 2 c_k``, ``b_k = -|c_k|^2``, ``c_k`` the mean feature of the
    first ``per_class`` images of class ``k``. The logits then rank the classes as the squared distance
    to their prototypes does. Meant to keep a random head's first gradients out of the body, it lost on
    validation classes: squared distances of unnormalised features make large logits, and a misclassified
    image's gradient wrecks the inherited body (docs/gene-pool.md, round seven)."""
    ways = len(task.class_ids)
    picks = [task.indices[task.labels == k][:per_class] for k in range(ways)]
    features = features_of(model, dataset, np.concatenate(picks), device)
    owner = torch.as_tensor(np.repeat(np.arange(ways), [len(p) for p in picks]), device=features.device)
    centroids = torch.stack([features[owner == k].mean(0) for k in range(ways)]).to(model.head.weight.dtype)
    model.head.weight.copy_(2 * centroids)
    model.head.bias.copy_(-(centroids ** 2).sum(1))


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
    handles = model.silence_dropped_channels(masks)
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
