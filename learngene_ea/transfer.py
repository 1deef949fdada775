"""Downstream transfer: does a descendant that inherits the learngene learn unseen classes better?

``python -m learngene_ea.transfer --learngene runs/<name>/learngene.pt`` evaluates on *test*
classes, in three kinds of setting: N-way K-shot episodes for every ``transfer.shots`` value and
a "limited data" setting with ``transfer.limited_data`` support images per class. In every
episode each method starts from a fresh descendant, gets its transferred weights, a new N-way
head, fine-tunes on the support set and is scored on the query set. Methods (rows):

- ``scratch``: nothing transferred (random initialisation);
- ``pretrained``: the whole network of the recipe's family/width trained on all training
  classes (cached as ``pretrained.pt`` next to the learngene), every gene layer transferred;
- ``random-learngene``: random channels of the pre-trained network, as many per mask group as
  the learngene keeps (a new random choice per episode, seeded by the episode);
- ``l1-learngene``: the pre-trained network's channels with the largest filter L1 norm, as many
  per mask group as the learngene keeps (what plain magnitude pruning of the ancestry gives,
  with no evolution: the learngene must beat it to be worth evolving);
- ``layerwise``: whole gene layers of the pre-trained network from the input side, as many as
  come closest to the learngene's parameter count (the style of earlier learngene work);
- ``instincts``: the learngene descendant with no update at all (nearest-centroid on the
  support set, ``fitness.metric``);
- ``learngene``: the learngene written into the descendant;
- per ``--descendants`` item (``family@width``): ``learngene`` and ``scratch`` rows for that
  architecture (scalability).

Fairness: all methods see exactly the same episodes (support and query indices) and, per
episode, the same initialisation seed (so parts that are not transferred, and the head, are
bit-identical across methods of one architecture) and the same fine-tuning seed (batch order
and augmentation). Fine-tuning: ``transfer.steps`` steps of ``transfer.optimizer`` (SGD with
momentum 0.9, or Adam) at a constant ``transfer.lr``, weight decay ``transfer.weight_decay``,
batches of up to ``transfer.batch_size`` support images with light augmentation (random crop
with 4-pixel padding + horizontal flip; ``transfer.augment``), every parameter trained and
BatchNorm in training mode; the query set is scored in evaluation mode.

Defaults are sized for a CPU (20 episodes x 60 steps per setting, 3 pre-training epochs); the
community standard is 600 episodes, e.g. ``--set transfer.episodes=600`` on a GPU. Under SCOOP
(``python -m scoop -n 8 -m learngene_ea.transfer ...``, or at the end of a run under SCOOP) every
(method, setting, episode) is one job for any process; the numbers are the same as in one process.
Outputs (atomic writes): ``transfer.json`` (every number), ``transfer.md`` (the table),
``transfer.png`` (bar chart with 95% CI error bars).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import config as config_module
from .checkpoint import atomic_write_bytes, atomic_write_text
from .config import Config, ConfigError
from .data import load_dataset
from .data.base import FewShotDataset
from .errors import UserError
from .fitness import configure_memory
from .learngene import (Learngene, channel_importance, extract_learngene, full_masks, inherit_learngene,
                        load_learngene)
from .models import FAMILIES, ArchSpec, Backbone, build_model
from .operators import keep_top_channels
from .recipe_checks import check_transfer_fits
from .sampling import Episode, Task, mean_and_ci95, mix_seed, sample_episode
from .training import (draw_crops, episode_images, episode_tensors, features_of, images_on, make_batch,
                       normalisation, prototype_accuracies, resolve_device, train_on_task)
from .workers import available_cores, default_threads, scoop_running, worker_count

__all__ = [
    "load_learngene", "parse_descendant", "build_descendant", "check_descendant", "transferred_params",
    "copy_gene_layers", "layerwise_layers", "random_masks_like", "top_l1_masks_like", "Setting", "make_settings",
    "episode_digest", "Method", "baseline_methods", "evaluate_episode", "summarise_episodes", "evaluate_method",
    "evaluate_transfer", "share_transfer_context", "evaluate_episode_job", "add_paired_differences",
    "finetune_and_score", "finetune_head_accuracies", "pretrain_network", "load_or_pretrain", "run_transfer",
    "transfer_after_run", "markdown_table", "plot_transfer", "write_reports", "main",
]

FORMAT = "learngene-ea/transfer-v1"
PRETRAINED_FORMAT = "learngene-ea/pretrained-v1"
PRETRAINED_FILE = "pretrained.pt"

# Tags mixed into seeds, so that every random stream is independent of the others.
_SHOT_SETTING, _LIMITED_SETTING, _PRETRAIN = 1, 2, 3
_INIT, _FINETUNE, _RANDOM_MASK = 1, 2, 3


# ------------------------------------------------------------------------- descendants

def parse_descendant(text: str, default_width: float) -> tuple[str, float]:
    """``'vgg11@0.5'`` -> ``('vgg11', 0.5)``; ``'conv6'`` -> ``('conv6', default_width)``."""
    text = str(text).strip()
    family, _, width_text = text.partition("@")
    family = family.strip().lower()
    if family not in FAMILIES:
        raise UserError(f"Descendant {text!r} names an unknown family {family!r}; "
                        f"choose one of {', '.join(FAMILIES)} (e.g. conv4@2.0).")
    if not width_text:
        return family, float(default_width)
    try:
        width = float(width_text)
    except ValueError:
        raise UserError(f"Descendant {text!r} must look like family@width with a number as width, "
                        "e.g. conv4@2.0.") from None
    if not (0.0 < width <= 16.0) or not math.isfinite(width):
        raise UserError(f"Descendant {text!r} has width {width_text}; it must be greater than 0 and "
                        "at most 16.")
    return family, width


def arch_label(family: str, width: float) -> str:
    """``conv4 x0.5``: how a descendant architecture is named in tables."""
    return f"{family} x{width:g}"


def build_descendant(learngene: Learngene, family: str | None = None, width: float | None = None,
                     num_classes: int = 5, seed: int = 0, device: str | torch.device = "cpu") -> Backbone:
    """A fresh descendant (initialised from ``seed``) with the learngene written into it.

    ``family``/``width`` default to the learngene's ancestry architecture. The returned model
    carries ``model.inherited``: gene layer name -> (output, input) channel indices written
    (what :func:`inherit_learngene` returns). Raises :class:`UserError` when nothing of the
    learngene can be written into that family (e.g. a Conv4 learngene into a ResNet12).
    """
    family = family or learngene.family
    width = learngene.width if width is None else float(width)
    model = build_model(family, width, learngene.in_channels, num_classes, seed=seed, device=device)
    written = inherit_learngene(model, learngene)
    if not written:
        raise UserError(f"A {arch_label(learngene.family, learngene.width)} learngene cannot be inherited by "
                        f"a {arch_label(family, width)} descendant: no gene layer matches (layers match by "
                        "name within a family, else by stage, index and role); drop that descendant.")
    model.inherited = written
    return model


def transferred_params(spec: ArchSpec, written: dict[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """Parameters written into a descendant (conv sub-kernels + BatchNorm affine), as in a learngene size."""
    total = 0
    for name, (out_idx, in_idx) in written.items():
        total += spec.layer(name).num_params(len(out_idx), len(in_idx))
    return total


def copy_gene_layers(source: Backbone, target: Backbone, names) -> int:
    """Copy whole gene layers (conv, BatchNorm affine and statistics) by name; return parameters copied."""
    total = 0
    with torch.no_grad():
        for name in names:
            src, dst = source.gene_module(name), target.gene_module(name)
            dst.load_state_dict(src.state_dict())
            total += target.spec.layer(name).num_params()
    return total


def layerwise_layers(spec: ArchSpec, budget: int) -> list[str]:
    """Whole gene layers from the input side whose total is closest to ``budget`` (at least one)."""
    best, best_gap, total = [], None, 0
    for i, layer in enumerate(spec.layers):
        total += layer.num_params()
        gap = abs(total - budget)
        if best_gap is None or gap < best_gap:
            best, best_gap = [l.name for l in spec.layers[:i + 1]], gap
    return best


def top_l1_masks_like(learngene: Learngene, network: Backbone) -> dict[str, np.ndarray]:
    """``network``'s channels of largest filter L1 norm, as many per mask group as ``learngene`` keeps."""
    full = full_masks(network.spec)
    scores = channel_importance(extract_learngene(network, full), "l1")
    return {group: keep_top_channels(full[group], scores[group], int(learngene.masks[group].sum()))
            for group, _ in learngene.spec.groups}


def random_masks_like(learngene: Learngene, seed: int) -> dict[str, np.ndarray]:
    """Random channels with as many kept per mask group as ``learngene`` keeps."""
    rng = np.random.default_rng(seed)
    masks = {}
    for group, size in learngene.spec.groups:
        mask = np.zeros(size, dtype=bool)
        mask[rng.choice(size, size=int(learngene.masks[group].sum()), replace=False)] = True
        masks[group] = mask
    return masks


# ---------------------------------------------------------------------------- settings

@dataclass
class Setting:
    """One column of the table: N-way K-shot (or limited-data) episodes on test classes.

    ``episode_seeds[i]`` made ``episodes[i]``; the initialisation and fine-tuning seeds of every
    method in that episode are derived from it (:func:`episode_init_seed`).
    """

    name: str
    label: str
    n_way: int
    k_shot: int
    n_query: int
    seed: int
    episode_seeds: list[int]
    episodes: list[Episode]


def episode_init_seed(episode_seed: int) -> int:
    """Seed of every descendant's fresh initialisation (head included) in one episode."""
    return mix_seed(episode_seed, _INIT)


def episode_finetune_seed(episode_seed: int) -> int:
    """Seed of batch order and augmentation while fine-tuning in one episode."""
    return mix_seed(episode_seed, _FINETUNE)


def make_settings(tcfg, dataset: FewShotDataset) -> list[Setting]:
    """The settings of ``transfer`` config ``tcfg`` with their test episodes.

    Episode ``i`` of a setting depends only on ``(transfer.seed, kind, K, i)``, so adding a
    setting or more episodes never changes the others.
    """
    check_transfer_fits(tcfg, dataset)
    kinds = [(_SHOT_SETTING, k, f"{k}-shot", f"{tcfg.n_way}-way {k}-shot") for k in tcfg.shots]
    if tcfg.limited_data:
        kinds.append((_LIMITED_SETTING, tcfg.limited_data, f"limited-{tcfg.limited_data}",
                      f"{tcfg.n_way}-way {tcfg.limited_data}/class"))
    settings = []
    for kind, k, name, label in kinds:
        seed = mix_seed(tcfg.seed, kind, k)
        seeds = [mix_seed(seed, i) for i in range(tcfg.episodes)]
        episodes = [sample_episode(dataset, s, tcfg.n_way, k, tcfg.n_query, "test") for s in seeds]
        settings.append(Setting(name, label, tcfg.n_way, k, tcfg.n_query, seed, seeds, episodes))
    return settings


def episode_digest(episode: Episode) -> str:
    """Short fingerprint of an episode's classes, support and query (to prove methods saw the same)."""
    h = hashlib.sha1()
    for part in (np.asarray(episode.class_ids), episode.support, episode.support_labels,
                 episode.query, episode.query_labels):
        h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------- fine-tuning

def finetune_and_score(model: Backbone, dataset: FewShotDataset, episode: Episode, tcfg, seed: int,
                       device) -> tuple[float, float]:
    """Fine-tune ``model`` (its head already sized N-way) on the support set; return (query accuracy, loss).

    Every parameter is trained (BatchNorm in training mode) for ``tcfg.steps`` steps; the query
    set is then scored in evaluation mode without augmentation. Modifies ``model``.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(int(seed))
    images = images_on(dataset, device)
    mean, std = normalisation(dataset, device)
    support = torch.as_tensor(episode.support, dtype=torch.long)
    labels = torch.as_tensor(episode.support_labels, dtype=torch.long)
    loss_value = float("nan")
    if tcfg.steps > 0:
        params = list(model.parameters())
        if tcfg.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=tcfg.lr, momentum=0.9, weight_decay=tcfg.weight_decay)
        model.train()
        n = len(support)
        picks, crops = [], []
        for _ in range(tcfg.steps):  # every step's draws first: one copy to the device, no sync per step
            pick = torch.randperm(n, generator=generator)[:tcfg.batch_size] if n > tcfg.batch_size \
                else torch.arange(n)
            picks.append(pick)
            if tcfg.augment:
                crops.append(draw_crops(len(pick), generator))
        picks = torch.stack(picks)
        step_images, step_labels = support[picks].to(device), labels[picks].to(device)
        step_crops = torch.stack(crops).to(device) if tcfg.augment else None
        losses = torch.zeros(tcfg.steps, device=device)
        for step in range(tcfg.steps):
            x = make_batch(images, step_images[step], mean, std, None if step_crops is None else step_crops[step])
            loss = nn.functional.cross_entropy(model(x), step_labels[step])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
        loss_value = float(losses[-max(1, tcfg.steps // 10):].mean())
    model.eval()
    with torch.no_grad():
        query = torch.as_tensor(episode.query, dtype=torch.long, device=device)
        q_labels = torch.as_tensor(episode.query_labels, dtype=torch.long, device=device)
        correct = 0
        for i in range(0, len(query), 512):
            logits = model(make_batch(images, query[i:i + 512], mean, std))
            correct += int((logits.argmax(dim=1) == q_labels[i:i + 512]).sum())
    return correct / len(query), loss_value


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


# ---------------------------------------------------------------------------- methods

@dataclass
class Method:
    """One row of the table: how a fresh descendant gets its transferred weights.

    ``transfer(model, episode_seed)`` writes into the freshly initialised descendant and returns
    the number of parameters transferred. ``finetune=False`` scores the descendant's prototypes
    on the support set with no update at all (``instincts``).
    """

    name: str
    family: str
    width: float
    transfer: Callable[[Backbone, int], int]
    finetune: bool = True
    note: str = ""

    @property
    def arch(self) -> str:
        return arch_label(self.family, self.width)


def evaluate_episode(method: Method, dataset: FewShotDataset, setting: Setting, index: int, tcfg, in_channels: int,
                     device, metric: str = "cosine") -> dict:
    """Method ``method`` on episode ``index`` of ``setting``: a fresh descendant, transfer, fine-tune, score.

    Depends only on its arguments (seeds come from the episode), so any process may compute it.
    """
    start = time.perf_counter()
    episode_seed, episode = setting.episode_seeds[index], setting.episodes[index]
    init_seed = episode_init_seed(episode_seed)
    model = build_model(method.family, method.width, in_channels, setting.n_way, seed=init_seed, device=device)
    params = int(method.transfer(model, episode_seed))
    before = float(prototype_accuracies(model, dataset, [episode], metric, device)[0])
    if method.finetune:
        accuracy, loss = finetune_and_score(model, dataset, episode, tcfg, episode_finetune_seed(episode_seed), device)
    else:
        accuracy, loss = before, float("nan")
    return {"accuracy": float(accuracy), "before": before,
            "loss": loss if math.isfinite(loss) else None,  # None: no update (strict JSON has no NaN)
            "digest": episode_digest(episode), "init_seed": int(init_seed), "params": params,
            "gene_params": model.spec.num_gene_params(), "seconds": time.perf_counter() - start}


def summarise_episodes(records: list[dict], seconds: float | None = None) -> dict:
    """One method's result on one setting from its per-episode records (in episode order).

    Returns a dict with ``accuracies`` (query accuracy per episode), ``prototype_before`` (the
    nearest-centroid accuracy of the descendant before any update), ``mean``/``ci95``, ``params``
    transferred, ``gene_params`` of the descendant, ``fraction``, the ``init_seeds`` used,
    ``episode_digests`` (fingerprints of the episodes evaluated on), losses and seconds (the sum
    over episodes unless ``seconds`` is given).
    """
    accuracies = [r["accuracy"] for r in records]
    before = [r["before"] for r in records]
    params = max((r["params"] for r in records), default=0)
    gene_params = records[-1]["gene_params"] if records else None
    mean, ci95 = mean_and_ci95(accuracies)
    return {
        "mean": mean, "ci95": ci95, "accuracies": accuracies,
        "prototype_before": mean_and_ci95(before)[0], "prototype_before_accuracies": before,
        "final_losses": [r["loss"] for r in records], "params": params, "gene_params": gene_params,
        "fraction": (params / gene_params) if params and gene_params else 0.0,
        "init_seeds": [r["init_seed"] for r in records], "episode_digests": [r["digest"] for r in records],
        "seconds": sum(r["seconds"] for r in records) if seconds is None else seconds,
    }


def evaluate_method(method: Method, dataset: FewShotDataset, setting: Setting, tcfg, in_channels: int,
                    device, metric: str = "cosine", progress=None) -> dict:
    """Evaluate one method on every episode of ``setting`` in this process (see :func:`summarise_episodes`)."""
    start = time.perf_counter()
    indices = range(len(setting.episodes))
    records = [evaluate_episode(method, dataset, setting, i, tcfg, in_channels, device, metric)
               for i in (progress(indices) if progress else indices)]
    return summarise_episodes(records, time.perf_counter() - start)


def _new_row(method: Method) -> dict:
    return {"method": method.name, "arch": method.arch, "family": method.family, "width": method.width,
            "fine_tuned": method.finetune, "note": method.note, "results": {}}


def _record_result(row: dict, setting: Setting, result: dict, log) -> None:
    row["results"][setting.name] = result
    row.update(params=result["params"], gene_params=result["gene_params"], fraction=result["fraction"])
    log(f"  {row['method']:16s} {row['arch']:12s} {setting.name:11s} {100 * result['mean']:5.1f} "
        f"± {100 * result['ci95']:4.1f}  ({result['seconds']:.1f}s)")


def evaluate_transfer(methods: list[Method], dataset: FewShotDataset, settings: list[Setting], tcfg,
                      in_channels: int, device, metric: str = "cosine", log=print, progress=None,
                      map_function=None, context_key: str | None = None) -> list[dict]:
    """Every method on every setting (the same episodes for all); one row dict per method.

    With ``map_function`` (SCOOP's map), every (method, setting, episode) is one job spread over
    the workers, which rebuild the methods from the context shared under ``context_key`` (see
    :func:`share_transfer_context`); the rows are the same as in this process alone.
    """
    if map_function is not None:
        return _evaluate_transfer_jobs(methods, settings, log, progress, map_function, context_key)
    rows = []
    for method in methods:
        row = _new_row(method)
        for setting in settings:
            bar = None
            if progress is not None:
                def bar(items, _m=method, _s=setting):
                    return progress(items, total=len(_s.episodes), desc=f"{_m.name} [{_m.arch}] {_s.name}")
            _record_result(row, setting, evaluate_method(method, dataset, setting, tcfg, in_channels, device,
                                                         metric, bar), log)
        rows.append(row)
    add_paired_differences(rows)
    return rows


# ----------------------------------------------------------- episodes spread over workers
#
# Under SCOOP the origin shares one context (recipe, learngene, pre-trained weights) with every
# worker once, through SCOOP's shared constants; each job is then four small values. A process
# rebuilds the dataset, episodes and methods from the context on its first job and keeps them.

_CONTEXT_IDS = itertools.count()
_CONTEXTS: dict = {}  # context key -> (cfg, dataset, settings, methods, device, in_channels) in this process


def share_transfer_context(key: str, cfg: Config, learngene: Learngene, pretrained: Backbone | None,
                           descendants, local: tuple) -> None:
    """Make ``key`` resolvable by :func:`evaluate_episode_job` here (``local``) and on SCOOP workers."""
    _CONTEXTS[key] = local
    if scoop_running():
        from scoop import shared

        state = None if pretrained is None else cpu_state(pretrained)
        shared.setConst(**{key: {"config": cfg, "learngene": learngene, "pretrained": state,
                                 "descendants": list(descendants)}})


def _context(key: str) -> tuple:
    if key not in _CONTEXTS:
        from scoop import shared

        from .fitness import configure_process, worker_device

        shared_context = shared.getConst(key, timeout=600)
        if shared_context is None:
            raise RuntimeError(f"transfer context {key} never reached this SCOOP worker")
        cfg, learngene = shared_context["config"], shared_context["learngene"]
        configure_process(cfg.runtime)
        device = worker_device(cfg.runtime.device)
        dataset = load_dataset(cfg.data)
        pretrained = None
        if shared_context["pretrained"] is not None:
            pretrained = pretrained_from_state(shared_context["pretrained"], learngene.family, learngene.width,
                                               learngene.in_channels, dataset, device).eval()
        methods = baseline_methods(learngene, pretrained, shared_context["descendants"])
        _CONTEXTS.clear()  # one transfer evaluation at a time: free the previous one
        _CONTEXTS[key] = (cfg, dataset, make_settings(cfg.transfer, dataset), methods, device, learngene.in_channels)
    return _CONTEXTS[key]


def evaluate_episode_job(job: tuple) -> dict:
    """``(context key, method index, setting index, episode index)`` -> :func:`evaluate_episode`'s record."""
    key, m, s, e = job
    cfg, dataset, settings, methods, device, in_channels = _context(key)
    return evaluate_episode(methods[m], dataset, settings[s], e, cfg.transfer, in_channels, device,
                            cfg.fitness.metric)


def _evaluate_transfer_jobs(methods, settings, log, progress, map_function, key) -> list[dict]:
    jobs = [(key, m, s, e) for m in range(len(methods)) for s, setting in enumerate(settings)
            for e in range(len(setting.episodes))]
    results = map_function(evaluate_episode_job, jobs)
    if progress is not None:
        results = progress(results, total=len(jobs), desc="transfer episodes")
    records = dict(zip((job[1:] for job in jobs), results))  # (method, setting, episode) -> record
    rows = []
    for m, method in enumerate(methods):
        row = _new_row(method)
        for s, setting in enumerate(settings):
            _record_result(row, setting, summarise_episodes([records[m, s, e] for e in range(len(setting.episodes))]),
                           log)
        rows.append(row)
    add_paired_differences(rows)
    return rows


# ------------------------------------------------------------------------ pre-training

def pretrain_key(cfg: Config, family: str, width: float, in_channels: int) -> dict:
    """What a cached pre-trained network must match to be reused (model, data and its training)."""
    return {
        "format": PRETRAINED_FORMAT, "family": family, "width": float(width), "in_channels": int(in_channels),
        "data": json.loads(json.dumps(dataclasses.asdict(cfg.data))),
        "epochs": cfg.transfer.pretrain_epochs, "lr": cfg.task.lr, "batch_size": cfg.task.batch_size,
        "weight_decay": cfg.task.weight_decay, "augment": cfg.data.augment, "seed": cfg.transfer.seed,
    }


def pretrain_network(cfg: Config, dataset: FewShotDataset, family: str, width: float, in_channels: int,
                     device) -> tuple[Backbone, dict]:
    """Supervised training of the full network on ALL training classes (never val/test images).

    The same optimiser as the descendants' tasks (``task.lr``, ``task.batch_size``,
    ``task.weight_decay``, SGD momentum 0.9 + cosine decay, ``data.augment``) for
    ``transfer.pretrain_epochs`` epochs over every image of every training class.
    """
    start = time.perf_counter()
    classes = [int(c) for c in dataset.splits["train"]]
    indices = np.concatenate([dataset.indices_of_class(c).numpy() for c in classes])
    labels = np.concatenate([np.full(len(dataset.indices_of_class(c)), i) for i, c in enumerate(classes)])
    task = Task(tuple(classes), indices, labels)
    seed = mix_seed(cfg.transfer.seed, _PRETRAIN)
    model = build_model(family, width, in_channels, len(classes), seed=seed, device=device)
    steps = cfg.transfer.pretrain_epochs * math.ceil(len(indices) / cfg.task.batch_size)
    loss = train_on_task(model, dataset, task, steps, cfg.task.batch_size, cfg.task.lr, cfg.task.weight_decay,
                         cfg.data.augment, seed, device)
    info = {"classes": len(classes), "images": int(len(indices)), "steps": steps, "final_loss": loss,
            "seconds": time.perf_counter() - start, "seed": seed}
    return model, info


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict on the CPU (to cache it or to share it with SCOOP workers)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def pretrained_from_state(state_dict: dict, family: str, width: float, in_channels: int, dataset: FewShotDataset,
                          device) -> Backbone:
    """The pre-trained network (a head over every training class) with ``state_dict``'s weights."""
    model = build_model(family, width, in_channels, len(dataset.splits["train"]), device=device)
    model.load_state_dict(state_dict)
    return model


def load_or_pretrain(cfg: Config, dataset: FewShotDataset, family: str, width: float, in_channels: int,
                     cache_path: str, device, log=print) -> tuple[Backbone, dict]:
    """The cached pre-trained network at ``cache_path`` when its key matches, else train and cache it."""
    key = pretrain_key(cfg, family, width, in_channels)
    if os.path.isfile(cache_path):
        try:
            state = torch.load(cache_path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and state.get("key") == key:
                model = pretrained_from_state(state["state_dict"], family, width, in_channels, dataset, device)
                log(f"pre-trained baseline: reusing {cache_path}")
                return model, {**state["info"], "path": cache_path, "reused": True}
            log(f"pre-trained baseline: {cache_path} was trained with other model/data/pre-training keys; "
                "retraining it")
        except Exception as err:  # an unreadable cache is rebuilt, never trusted
            log(f"pre-trained baseline: cannot read {cache_path} ({type(err).__name__}); retraining it")
    log(f"pre-trained baseline: training {arch_label(family, width)} on all {len(dataset.splits['train'])} "
        f"training classes for {cfg.transfer.pretrain_epochs} epochs")
    model, info = pretrain_network(cfg, dataset, family, width, in_channels, device)
    log(f"pre-trained baseline: {info['steps']} steps, final loss {info['final_loss']:.3f}, "
        f"{info['seconds']:.0f}s")
    buffer = io.BytesIO()
    torch.save({"format": PRETRAINED_FORMAT, "key": key, "info": info,
                "state_dict": cpu_state(model)}, buffer)
    try:
        atomic_write_bytes(cache_path, buffer.getvalue())
        log(f"pre-trained baseline: cached as {cache_path}")
    except OSError as err:
        log(f"pre-trained baseline: cannot cache it at {cache_path} ({err.strerror}); continuing without cache")
    return model, {**info, "path": cache_path, "reused": False}


# ------------------------------------------------------------------------ method set

def baseline_methods(learngene: Learngene, pretrained: Backbone | None, descendants=()) -> list[Method]:
    """The rows of a transfer table: baselines, learngene, and scalability descendants.

    ``pretrained`` (the full network of the learngene's architecture trained on all training
    classes) feeds ``pretrained``, ``random-learngene``, ``l1-learngene`` and ``layerwise``; with ``None`` those
    rows are left out. ``descendants``: ``(family, width)`` pairs, each adding ``learngene`` and
    ``scratch`` rows for that architecture.
    """
    family, width = learngene.family, learngene.width

    def nothing(model, episode_seed):
        return 0

    def inherit(model, episode_seed, lg=learngene):
        written = inherit_learngene(model, lg)
        return transferred_params(model.spec, written)

    methods = [Method("scratch", family, width, nothing, note="random initialisation")]
    if pretrained is not None:
        all_layers = [layer.name for layer in pretrained.spec.layers]
        budget_layers = layerwise_layers(pretrained.spec, learngene.num_params)

        def whole(model, episode_seed):
            return copy_gene_layers(pretrained, model, all_layers)

        def random_channels(model, episode_seed):
            masks = random_masks_like(learngene, mix_seed(episode_seed, _RANDOM_MASK))
            return inherit(model, episode_seed, extract_learngene(pretrained, masks))

        top_l1 = extract_learngene(pretrained, top_l1_masks_like(learngene, pretrained))

        def l1_channels(model, episode_seed):
            return inherit(model, episode_seed, top_l1)

        def layerwise(model, episode_seed):
            return copy_gene_layers(pretrained, model, budget_layers)

        methods += [
            Method("pretrained", family, width, whole, note="all gene layers of the pre-trained network"),
            Method("random-learngene", family, width, random_channels,
                   note="random pre-trained channels, as many per group as the learngene"),
            Method("l1-learngene", family, width, l1_channels,
                   note="pre-trained channels of largest L1 norm, as many per group as the learngene"),
            Method("layerwise", family, width, layerwise,
                   note="whole pre-trained gene layers from the input: " + ", ".join(budget_layers)),
        ]
    methods += [
        Method("instincts", family, width, inherit, finetune=False, note="learngene descendant, no update"),
        Method("learngene", family, width, inherit, note="the learngene"),
    ]
    for d_family, d_width in descendants:
        methods += [Method("scratch", d_family, d_width, nothing, note="scalability: random initialisation"),
                    Method("learngene", d_family, d_width, inherit, note="scalability: learngene inherited")]
    return methods


def check_descendant(learngene: Learngene, family: str, width: float) -> dict[str, list[int]]:
    """What inheriting into ``family``/``width`` writes (layer -> [#out, #in]); UserError when nothing."""
    model = build_descendant(learngene, family, width, num_classes=2, seed=0)
    return {name: [len(o), len(i)] for name, (o, i) in model.inherited.items()}


def add_paired_differences(rows: list[dict]) -> None:
    """Add ``results[setting]["paired"][other method]`` to every row: the per-episode difference.

    All rows of one architecture were scored on the same episodes with the same seeds, so the
    right comparison is paired: mean and 95% CI of ``accuracy(row) - accuracy(other)`` over
    episodes, plus how many episodes the row won. Only rows of the same architecture are paired.
    """
    for row in rows:
        for name, result in row["results"].items():
            paired = {}
            for other in rows:
                if other is row or other["arch"] != row["arch"] or name not in other["results"]:
                    continue
                diff = np.asarray(result["accuracies"]) - np.asarray(other["results"][name]["accuracies"])
                mean, ci95 = mean_and_ci95(diff)
                paired[other["method"]] = {"mean": mean, "ci95": ci95, "wins": int((diff > 0).sum()),
                                           "losses": int((diff < 0).sum()), "episodes": int(diff.size)}
            result["paired"] = paired


# ------------------------------------------------------------------------------ reports

def markdown_table(results: dict) -> str:
    """The paper-ready table: rows methods, columns settings (``acc ± ci`` in %), params column."""
    settings = results["settings"]
    info = results["evaluation"]
    lg = results["learngene"]
    lines = [
        f"### Transfer to test classes: {lg['family']} x{lg['width']:g} learngene "
        f"({lg['num_params']:,} parameters, {100 * lg['fraction']:.1f}% of its gene layers)",
        "",
        f"Dataset `{results['dataset']['name']}` ({results['dataset']['test_classes']} test classes); "
        f"{info['episodes']} episodes per setting, {info['n_query']} queries per class; fine-tuning "
        f"{info['steps']} steps of {info['optimizer']} (lr {info['lr']:g}"
        f"{', crop+flip' if info['augment'] else ''}). Mean query accuracy (%) ± 95% CI.",
        "",
        "| Method | Descendant | Params transferred | " + " | ".join(s["label"] for s in settings) + " |",
        "|:--|:--|--:|" + "--:|" * len(settings),
    ]
    for row in results["rows"]:
        cells = []
        for s in settings:
            r = row["results"][s["name"]]
            cells.append(f"{100 * r['mean']:.1f} ± {100 * r['ci95']:.1f}")
        name = row["method"] + ("" if row["fine_tuned"] else " (no update)")
        lines.append(f"| {name} | {row['arch']} | {row['params']:,} ({100 * row['fraction']:.1f}%) | "
                     + " | ".join(cells) + " |")
    lines += ["", "Params transferred: conv sub-kernels + BatchNorm affine parameters written into the "
              "descendant, and their share of the descendant's gene-layer parameters. Every method saw the "
              "same episodes and, per episode, the same initialisation and fine-tuning seeds."]
    comparisons = [(row, ref) for row in results["rows"] for ref in ("scratch", "random-learngene", "l1-learngene")
                   if row["method"] != ref and (row["method"] == "learngene" or ref == "scratch")
                   and ref in row["results"][settings[0]["name"]].get("paired", {})]
    if comparisons:
        lines += ["", "Paired differences on the same episodes (percentage points, mean ± 95% CI; episodes won):", "",
                  "| Comparison | Descendant | " + " | ".join(s["label"] for s in settings) + " |",
                  "|:--|:--|" + "--:|" * len(settings)]
        for row, ref in comparisons:
            cells = []
            for s in settings:
                d = row["results"][s["name"]]["paired"][ref]
                cells.append(f"{100 * d['mean']:+.1f} ± {100 * d['ci95']:.1f} ({d['wins']}/{d['episodes']})")
            lines.append(f"| {row['method']} − {ref} | {row['arch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_transfer(results: dict, path: str | os.PathLike) -> None:
    """Grouped bar chart: one group per setting, one bar per row, 95% CI error bars (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = results["settings"]
    rows = results["rows"]
    main_arch = rows[0]["arch"] if rows else ""
    fig, ax = plt.subplots(figsize=(max(7.5, 3.2 + 0.3 * len(rows) * len(settings)), 4.2), dpi=110)
    width = 0.8 / max(1, len(rows))
    cmap = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    x = np.arange(len(settings))
    for i, row in enumerate(rows):
        means = [100 * row["results"][s["name"]]["mean"] for s in settings]
        cis = [100 * row["results"][s["name"]]["ci95"] for s in settings]
        label = row["method"] + ("" if row["arch"] == main_arch else f" [{row['arch']}]")
        ax.bar(x - 0.4 + width * (i + 0.5), means, width, yerr=cis, capsize=2, color=cmap(i % cmap.N),
               label=label, edgecolor="black", linewidth=0.3)
    chance = 100.0 / results["evaluation"]["n_way"]
    ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(x, [s["label"] for s in settings])
    ax.set_ylabel("query accuracy (%), 95% CI")
    ax.set_ylim(0, 100)
    lg = results["learngene"]
    ax.set_title(f"Transfer to test classes ({results['dataset']['name']}): "
                 f"{lg['family']} x{lg['width']:g} learngene, {100 * lg['fraction']:.0f}% of parameters",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_reports(results: dict, out_dir: str) -> dict[str, str]:
    """``transfer.json``, ``transfer.md`` and ``transfer.png`` in ``out_dir``; return their paths."""
    paths = {name: os.path.join(out_dir, f"transfer.{name}") for name in ("json", "md", "png")}
    atomic_write_text(paths["json"], json.dumps(results, indent=1, default=_json_default) + "\n")
    atomic_write_text(paths["md"], markdown_table(results))
    plot_transfer(results, paths["png"])
    return paths


# ---------------------------------------------------------------------------- pipeline

def check_compatible(cfg: Config, learngene: Learngene, dataset: FewShotDataset, path: str) -> None:
    """A recipe whose model or image channels differ from the learngene's is a user error."""
    if (cfg.model.family, float(cfg.model.width)) != (learngene.family, float(learngene.width)):
        raise ConfigError(f"The learngene {path!r} is {arch_label(learngene.family, learngene.width)} but the "
                          f"recipe's model is {arch_label(cfg.model.family, cfg.model.width)}; pass the run's "
                          "config.yaml (or fix model.family/model.width) and use --descendants for other "
                          "architectures.")
    if dataset.channels != learngene.in_channels:
        raise ConfigError(f"The learngene {path!r} reads {learngene.in_channels}-channel images but the "
                          f"dataset '{cfg.data.name}' has {dataset.channels}; use the dataset it was evolved on.")


def seen_test_classes(learngene: Learngene, data_cfg, dataset: FewShotDataset) -> list[str]:
    """The dataset's test classes that the learngene was evolved on (its training or validation classes).

    Only for the same dataset (same ``data.name``; for the synthetic one, the same ``data.seed``,
    since its classes are drawn from it). Learngenes saved before their classes were recorded
    give an empty list.
    """
    source, classes = learngene.meta.get("data"), learngene.meta.get("classes")
    if not source or not classes or source.get("name") != data_cfg.name:
        return []
    if data_cfg.name == "synthetic" and source.get("seed") != data_cfg.seed:
        return []
    seen = set(classes.get("train", [])) | set(classes.get("val", []))
    return [dataset.class_names[i] for i in dataset.splits["test"] if dataset.class_names[i] in seen]


def check_unseen_classes(learngene: Learngene, data_cfg, dataset: FewShotDataset, path: str) -> None:
    """Refuse test classes that the learngene saw while it evolved: that would not be transfer."""
    seen = seen_test_classes(learngene, data_cfg, dataset)
    if seen:
        shown = ", ".join(repr(name) for name in seen[:3]) + (", ..." if len(seen) > 3 else "")
        raise ConfigError(f"{len(seen)} of the {len(dataset.splits['test'])} test classes ({shown}) were training "
                          f"or validation classes of the evolution that made {path!r}, so the table would not "
                          "measure unseen classes; use the class split of its run (its config.yaml) or pass "
                          "--allow-seen-classes.")


def run_transfer(cfg: Config, learngene_path: str, out_dir: str | None = None, descendants=None,
                 log=print, progress=None, write=True, allow_seen_classes: bool = False) -> dict:
    """Evaluate the learngene at ``learngene_path`` and every baseline on test episodes.

    ``descendants``: ``family@width`` strings (default ``cfg.transfer.descendants``).
    ``out_dir`` (default: the learngene's folder) receives ``transfer.json``/``.md``/``.png``
    unless ``write`` is false; the pre-trained baseline is cached next to the learngene.
    Returns the results dict written to ``transfer.json``. Under SCOOP with several processes,
    pre-training runs here and the episodes are spread over every process.
    """
    started = time.perf_counter()
    learngene_path = os.fspath(learngene_path)
    learngene = load_learngene(learngene_path)
    run_dir = os.path.dirname(os.path.abspath(learngene_path))
    out_dir = out_dir or run_dir
    tcfg = cfg.transfer
    device = resolve_device(cfg.runtime.device)
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    configure_memory(cfg.runtime)  # threads: set above, all cores for the origin's pre-training
    specs = [parse_descendant(d, learngene.width) for d in (tcfg.descendants if descendants is None else descendants)]
    seen, extra = {(learngene.family, float(learngene.width))}, []
    for family, width in specs:
        if (family, width) in seen:
            log(f"descendant {arch_label(family, width)}: already evaluated, skipped")
            continue
        seen.add((family, width))
        written = check_descendant(learngene, family, width)
        log(f"descendant {arch_label(family, width)}: inherits into {len(written)} gene layers")
        extra.append((family, width))

    timings = {}
    t = time.perf_counter()
    dataset = load_dataset(cfg.data)
    timings["load_dataset"] = time.perf_counter() - t
    check_compatible(cfg, learngene, dataset, learngene_path)
    seen = seen_test_classes(learngene, cfg.data, dataset)
    if not allow_seen_classes:
        check_unseen_classes(learngene, cfg.data, dataset, learngene_path)
    elif seen:
        log(f"warning: {len(seen)} test classes were seen by the learngene's evolution (--allow-seen-classes)")
    meta_dataset = learngene.meta.get("dataset")
    if meta_dataset and meta_dataset != cfg.data.name:
        log(f"note: the learngene was evolved on '{meta_dataset}', evaluated here on '{cfg.data.name}'")
    settings = make_settings(tcfg, dataset)

    t = time.perf_counter()
    pretrained, pretrain_info = load_or_pretrain(cfg, dataset, learngene.family, learngene.width,
                                                 learngene.in_channels, os.path.join(run_dir, PRETRAINED_FILE),
                                                 device, log)
    pretrained.eval()
    timings["pretrained"] = time.perf_counter() - t

    methods = baseline_methods(learngene, pretrained, extra)
    processes = worker_count()
    log(f"transfer: {len(methods)} rows x {len(settings)} settings x {tcfg.episodes} episodes on test classes "
        f"({device}" + (f", spread over {processes} SCOOP processes)" if processes > 1 else ")"))
    t = time.perf_counter()
    map_function, key, threads = None, None, torch.get_num_threads()
    if processes > 1:
        from .evolve import parallel_map

        key = f"learngene_ea_transfer_{os.getpid()}_{next(_CONTEXT_IDS)}"
        share_transfer_context(key, cfg, learngene, pretrained, extra,
                               (cfg, dataset, settings, methods, device, learngene.in_channels))
        map_function = parallel_map(cfg.runtime.stall_timeout, hint="no transfer report was written; run the "
                                    "transfer again (the pre-trained baseline is cached next to the learngene).")
        # the workers are busy now too: the origin goes back to its share of the cores
        torch.set_num_threads(cfg.runtime.threads if cfg.runtime.threads > 0 else default_threads())
    try:
        rows = evaluate_transfer(methods, dataset, settings, tcfg, learngene.in_channels, device,
                                 cfg.fitness.metric, log, progress, map_function, key)
    finally:
        torch.set_num_threads(threads)
        _CONTEXTS.pop(key, None)
    timings["evaluation"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started

    results = {
        "format": FORMAT,
        "learngene": {"path": os.path.abspath(learngene_path), "family": learngene.family,
                      "width": learngene.width, "in_channels": learngene.in_channels,
                      "num_params": int(learngene.num_params), "fraction": float(learngene.fraction),
                      "num_gene_params": int(learngene.spec.num_gene_params()),
                      "channels_kept": {g: int(m.sum()) for g, m in learngene.masks.items()},
                      "meta": learngene.meta},
        "evaluation": {**dataclasses.asdict(tcfg), "descendants": [arch_label(*d) for d in extra],
                       "metric": cfg.fitness.metric, "batchnorm": "training mode while fine-tuning",
                       "trained_parameters": "all (new N-way head)", "lr_schedule": "constant"},
        "dataset": {"name": dataset.name, "config": dataclasses.asdict(cfg.data), "images": int(dataset.images.shape[0]),
                    "image_size": dataset.image_size, "channels": dataset.channels,
                    "train_classes": len(dataset.splits["train"]), "val_classes": len(dataset.splits["val"]),
                    "test_classes": len(dataset.splits["test"]), "test_class_ids": list(dataset.splits["test"]),
                    "test_classes_seen_by_learngene": seen},
        "device": str(device),
        "pretrained": pretrain_info,
        "settings": [{"name": s.name, "label": s.label, "n_way": s.n_way, "k_shot": s.k_shot, "n_query": s.n_query,
                      "seed": s.seed, "episode_seeds": s.episode_seeds,
                      "episodes": [{"seed": seed, "digest": episode_digest(e), "classes": list(e.class_ids),
                                    "support": e.support.tolist(), "query": e.query.tolist()}
                                   for seed, e in zip(s.episode_seeds, s.episodes)]}
                     for s in settings],
        "rows": rows,
        "timings": timings,
    }
    if write:
        try:
            paths = write_reports(results, out_dir)
        except OSError as err:
            raise UserError(f"Cannot write the transfer reports into {out_dir!r} ({err.strerror}); "
                            "pass a writable --out folder.") from err
        log(f"transfer reports: {paths['md']}, {paths['json']}, {paths['png']}")
    return results


def transfer_after_run(cfg: Config, run_dir: str, log=print) -> dict:
    """The transfer evaluation at the end of an evolution run, on ``run_dir/learngene.pt``.

    The pre-trained baseline trains in the origin process alone: the SCOOP workers are idle by
    then, so unless ``runtime.threads`` says otherwise the origin takes every core of its host.
    The episodes are then spread over all SCOOP processes (:func:`run_transfer`).
    """
    if cfg.runtime.threads <= 0:
        torch.set_num_threads(available_cores())
    results = run_transfer(cfg, os.path.join(run_dir, "learngene.pt"), run_dir, log=log)
    log(markdown_table(results))
    return results


# ---------------------------------------------------------------------------------- CLI

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m learngene_ea.transfer",
        description="Evaluate a learngene on test-class few-shot episodes against scratch, pre-trained, "
                    "random-learngene, top-L1 learngene, layer-wise and no-update baselines (same episodes and seeds).")
    parser.add_argument("--learngene", required=True, help="learngene.pt written by a run")
    parser.add_argument("--config", help="recipe YAML (default: config.yaml next to the learngene, else "
                                         "genomes/default.yaml, else the built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe key (repeatable), e.g. --set transfer.episodes=600")
    parser.add_argument("--out", help="folder for transfer.json/.md/.png (default: the learngene's folder)")
    parser.add_argument("--descendants", nargs="+", metavar="FAMILY@WIDTH",
                        help="scalability descendants, e.g. conv4@2.0 conv6 vgg11@0.5 "
                             "(default: transfer.descendants)")
    parser.add_argument("--allow-seen-classes", action="store_true",
                        help="evaluate even on test classes the learngene's evolution trained or validated on")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, log lines only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return parser.parse_args(argv)


def resolve_config(args) -> Config:
    """The recipe: --config, else the run's config.yaml, else genomes/default.yaml, else defaults."""
    path = args.config
    if path is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(args.learngene)), "config.yaml")
        if os.path.isfile(beside):
            path = beside
        elif os.path.isfile(config_module.DEFAULT_RECIPE):
            path = config_module.DEFAULT_RECIPE
    return config_module.load_config(path, args.overrides)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = parse_args(argv)
        if not os.path.isfile(args.learngene):
            raise UserError(f"Learngene file {args.learngene!r} does not exist; pass the learngene.pt of a "
                            "finished run (runs/<name>/learngene.pt).")
        cfg = resolve_config(args)
        progress = None
        if not args.quiet:
            from tqdm import tqdm

            def progress(iterable, total, desc):
                return tqdm(iterable, total=total, desc=desc, unit="episode", leave=False, file=sys.stderr)
        results = run_transfer(cfg, args.learngene, args.out, args.descendants, log=print, progress=progress,
                               allow_seen_classes=args.allow_seen_classes)
        print(markdown_table(results))
        return 0
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no transfer report was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
