"""The ``slimming`` row: Network Slimming (Liu et al. 2017) at the evolution's compute.

What a pruning reviewer asks for: the evolution's training images spent on pruning instead.

1. **Warm start.** The whole network trains on every training class for as many images as the
   evolution's warm start (``learngene.meta["warm_start_images"]``), with the pre-trained
   baseline's data and optimiser (:func:`~.pretrain.pretrain_network`) and a seed of its own
   (:func:`~.episodes.slimming_seed`).
2. **Pruning.** Per mask group it keeps the channels of largest mean |BatchNorm scale|
   (:func:`bn_masks_like`), as many as the learngene keeps.
3. **Training the sub-network.** That sub-network is written into a fresh network with every other
   channel silent (complement scale 0, as a default-recipe descendant trains its learngene) and
   trains on the training classes for the rest of the evolution's images
   (``training_images`` minus the warm start's), with the same optimiser.
4. **Transfer.** It is read out as a learngene under the same masks and transferred like the
   learngene (``transfer.complement_scale``).

Unlike the paper, no L1 penalty on the BatchNorm scales is added while training: every row
trains with the same optimiser. The network is cached like the pre-trained one, as
``slimming-<digest>.pt`` (:func:`slimming_key`; see :mod:`.cache`). The row is left out, with a
one-line note, when the learngene does not record its compute (``training_images`` and
``warm_start_images``: learngenes saved before the warm start was recorded have to be evolved
again), when its evolution had no warm start, or when ``--pretrained`` gives the pre-trained network.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..config.schema import Config
from ..core.learngene import Learngene, channel_importance, extract_learngene, full_masks, inherit_learngene
from ..core.backbone import Backbone
from ..core.models import build_model
from ..data.base import FewShotDataset
from ..ea.operators import keep_top_channels
from ..fewshot.sampling import training_classes_task
from ..fewshot.training import TrainSettings, closing_observer, train_on_task
from ..reports.files import plural
from .cache import cache_file, find_cached, write_cached
from .episodes import slimming_seed
from .pretrain import Arch, CacheFolders, PretrainSource, pretrain_key, pretrain_network
from .target import pretrain_data

SLIMMING_FORMAT = "learngene-ea/slimming-v1"


def channel_counts(learngene: Learngene) -> dict[str, int]:
    """Channels the learngene keeps, per mask group."""
    return {group: int(mask.sum()) for group, mask in learngene.masks.items()}


@dataclass(frozen=True)
class SlimmingSteps:
    """The steps of the slimming network's two training stages: the warm start, then the sub-network."""

    warm_start: int
    sub_network: int

    @property
    def total(self) -> int:
        return self.warm_start + self.sub_network


def slimming_steps(cfg: Config, learngene: Learngene) -> SlimmingSteps | str:
    """The warm start's and the sub-network's steps at the learngene's compute, or why there is no row.

    Together they are the pre-trained baseline's steps at equal compute (the learngene's
    ``training_images`` in ``task.batch_size`` batches); the warm start takes its own share.
    """
    total, warm = learngene.meta.get("training_images"), learngene.meta.get("warm_start_images")
    if not total:
        return "the learngene does not record its compute (meta training_images)"
    if warm is None:
        return ("the learngene does not record its warm start's images (meta warm_start_images, recorded "
                "since the slimming row exists); evolve it again")
    if not warm:
        return "its evolution had no warm start (meta warm_start_images 0), so there is no network to prune"
    batch = cfg.task.batch_size
    total_steps = math.ceil(total / batch)
    warm_steps = min(math.ceil(warm / batch), total_steps)
    return SlimmingSteps(warm_steps, total_steps - warm_steps)


def slimming_key(cfg: Config, arch: Arch, counts: dict[str, int], steps: SlimmingSteps, data_cfg=None,
                 trained_on: str = "source") -> dict:
    """Everything the slimming network's weights depend on: the pre-trained baseline's key (model,
    data, optimiser, seed) with both stages' steps and the channels kept per group."""
    key = pretrain_key(cfg, arch.family, arch.width, arch.in_channels, steps.warm_start, data_cfg, trained_on)
    del key["steps"]
    return {**key, "format": SLIMMING_FORMAT, "warm_start_steps": int(steps.warm_start),
            "sub_network_steps": int(steps.sub_network),
            "criterion": "bn", "sub_network_complement_scale": 0.0,
            "channels_kept": {g: int(n) for g, n in sorted(counts.items())}}


def bn_masks_like(learngene: Learngene, network: Backbone) -> dict[str, np.ndarray]:
    """``network``'s channels of largest mean |BatchNorm scale|, as many per mask group as ``learngene`` keeps."""
    full = full_masks(network.spec)
    scores = channel_importance(extract_learngene(network, full), "bn")
    return {group: keep_top_channels(full[group], scores[group], int(learngene.masks[group].sum()))
            for group, _ in learngene.spec.groups}


def warm_start_network(cfg: Config, dataset: FewShotDataset, arch: Arch, device, steps: int,
                       augment: bool | None = None, progress=None) -> tuple[Backbone, dict]:
    """Stage 1: the whole network trained on every training class for ``steps`` batches (its own seed)."""
    with closing_observer(progress, steps, "slimming: warm start") as observe:
        return pretrain_network(cfg, dataset, arch, device, TrainSettings.of_task(cfg, steps, augment),
                                seed=slimming_seed(cfg.transfer.seed, 0), observe=observe)


def train_sub_network(cfg: Config, dataset: FewShotDataset, pruned: Learngene, device, steps: int,
                      augment: bool | None = None, progress=None) -> tuple[Learngene, float | None]:
    """Stage 3: ``pruned`` written into a fresh network (other channels silent), trained on every
    training class for ``steps`` batches, read out again under its masks; and the final loss."""
    task = training_classes_task(dataset)
    seed = slimming_seed(cfg.transfer.seed, 1)
    model = build_model(pruned.family, pruned.width, pruned.in_channels, len(task.class_ids), seed=seed,
                        device=device)
    inherit_learngene(model, pruned, complement_scale=0.0)
    loss = None
    if steps:
        with closing_observer(progress, steps, "slimming: sub-network") as observe:
            loss = train_on_task(model, dataset, task, TrainSettings.of_task(cfg, steps, augment), seed, device,
                                 observe)
    return extract_learngene(model, pruned.masks, meta={"from": "slimming"}), loss


def slim_network(cfg: Config, dataset: FewShotDataset, learngene: Learngene, device, steps: SlimmingSteps,
                 augment: bool | None = None, progress=None) -> tuple[Learngene, dict]:
    """Stages 1-3 (module docstring): the slimming learngene and what it cost (``progress``: a bar factory
    that shows each stage's steps, or None)."""
    start, batch = time.perf_counter(), cfg.task.batch_size
    warm, warm_info = warm_start_network(cfg, dataset, Arch.of(learngene), device, steps.warm_start, augment,
                                         progress)
    masks = bn_masks_like(learngene, warm)
    slim, loss = train_sub_network(cfg, dataset, extract_learngene(warm, masks), device, steps.sub_network, augment,
                                   progress)
    info = {"classes": warm_info["classes"], "images": warm_info["images"],
            "warm_start_steps": steps.warm_start, "warm_start_images": steps.warm_start * batch,
            "warm_start_final_loss": warm_info["final_loss"],
            "sub_network_steps": steps.sub_network, "sub_network_images": steps.sub_network * batch,
            "final_loss": loss, "training_images": steps.total * batch, "channels_kept": channel_counts(slim),
            "kept": {g: np.flatnonzero(m).tolist() for g, m in slim.masks.items()},
            "seeds": [slimming_seed(cfg.transfer.seed, 0), slimming_seed(cfg.transfer.seed, 1)],
            "seconds": time.perf_counter() - start}
    return slim, info


def load_or_slim(cfg: Config, dataset: FewShotDataset, learngene: Learngene, cache_dir: str, device, log=print,
                 source: PretrainSource | None = None) -> tuple[Learngene | None, dict]:
    """The cached slimming learngene whose key matches, else build it (:func:`slim_network`) and cache
    it in ``cache_dir``; ``(None, {"left_out": why})`` when the learngene does not record its compute.

    ``dataset`` and ``source`` as for :func:`~.pretrain.load_or_pretrain` (its
    ``evolution_images`` is not used: the learngene's metadata gives the compute).
    """
    source = source or PretrainSource()
    steps = slimming_steps(cfg, learngene)
    if isinstance(steps, str):
        log(f"slimming: left out: {steps}")
        return None, {"left_out": steps}
    data_cfg = source.data_cfg or cfg.data
    key = slimming_key(cfg, Arch.of(learngene), channel_counts(learngene), steps, data_cfg, source.trained_on)
    budget = {"evolution_training_images": learngene.meta.get("training_images"),
              "evolution_warm_start_images": learngene.meta.get("warm_start_images"), "trained_on": source.trained_on}
    found = find_cached(key, [cache_dir, *source.also_look_in], log, kind="slimming")
    if found is not None:
        state, path = found
        log(f"slimming baseline: reusing {path}")
        return Learngene.from_state(state["learngene"]), {**state["info"], **budget, "path": path, "reused": True}
    log(f"slimming baseline: a warm start of {plural(steps.warm_start, 'step')}, its channels of largest BatchNorm "
        f"scale kept, then {plural(steps.sub_network, 'step')} of that sub-network "
        f"({steps.total * cfg.task.batch_size:,} images in all, the evolution's) on the training classes of the "
        f"{source.trained_on}")
    slim, info = slim_network(cfg, dataset, learngene, device, steps, data_cfg.augment, source.progress)
    final = "none" if info["final_loss"] is None else f"{info['final_loss']:.3f}"
    log(f"slimming baseline: warm-start loss {info['warm_start_final_loss']:.3f}, final loss {final}, "
        f"{info['seconds']:.0f}s")
    path = cache_file(cache_dir, key, "slimming")
    write_cached(path, {"format": SLIMMING_FORMAT, "key": key, "info": info, "learngene": slim.to_state()}, log)
    return slim, {**info, **budget, "path": path, "reused": False}


def get_slimming(cfg: Config, learngene: Learngene, target: FewShotDataset, folders: CacheFolders, device, log,
                 options=None) -> tuple[Learngene | None, dict]:
    """The slimming learngene of the table and its info, on the pre-trained baseline's data
    (:func:`~.target.pretrain_data`); cached in ``folders.cache_dir`` and reused from the run folder
    (``folders.run_dir``). ``options``: the transfer's
    :class:`~.pipeline.TransferOptions` (its ``pretrained_path`` and ``progress``), if any. Left out when
    ``--pretrained`` gives the pre-trained network."""
    pretrained_path, progress = getattr(options, "pretrained_path", None), getattr(options, "progress", None)
    if pretrained_path:
        why = "--pretrained gives the pre-trained network, so there is no pre-training of the evolution's compute"
        log(f"slimming: left out: {why}")
        return None, {"left_out": why}
    if isinstance(slimming_steps(cfg, learngene), str):  # before loading any data
        return load_or_slim(cfg, target, learngene, folders.cache_dir, device, log)
    data, dataset = pretrain_data(cfg, learngene, target, folders.run_dir)
    return load_or_slim(cfg, dataset, learngene, folders.cache_dir, device, log,
                        PretrainSource(data, cfg.transfer.pretrain_on, None, folders.also_look_in(), progress))
