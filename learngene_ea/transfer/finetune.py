"""Fine-tuning: one method on one episode (fresh descendant, transfer, fine-tune, score) and its summary.

:func:`evaluate_episode` depends only on its arguments (every seed comes from the episode), so
any process may compute it; :func:`summarise_episodes` turns one method's per-episode records
on one setting into the numbers of a table cell.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..data.base import FewShotDataset
from ..core.backbone import Backbone
from ..core.models import build_model
from ..fewshot.sampling import Episode, mean_and_ci95
from ..fewshot.batches import draw_crops, images_on, make_batch, normalisation
from ..fewshot.training import prototype_accuracies
from .baselines import Method
from .episodes import Setting, episode_digest, episode_finetune_seed, episode_init_seed


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


@dataclass
class Bench:
    """What every episode of a transfer evaluation runs on: the test ``dataset``, the ``transfer``
    section (``tcfg``), the learngene's image channels, the device and the prototype metric."""

    dataset: FewShotDataset
    tcfg: object
    in_channels: int
    device: object = "cpu"
    metric: str = "cosine"


def evaluate_episode(method: Method, bench: Bench, setting: Setting, index: int) -> dict:
    """Method ``method`` on episode ``index`` of ``setting``: a fresh descendant, transfer, fine-tune, score.

    Depends only on its arguments (seeds come from the episode), so any process may compute it.
    """
    start = time.perf_counter()
    dataset, tcfg, in_channels, device, metric = bench.dataset, bench.tcfg, bench.in_channels, bench.device, bench.metric
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


def evaluate_method(method: Method, bench: Bench, setting: Setting, progress=None) -> dict:
    """Evaluate one method on every episode of ``setting`` in this process (see :func:`summarise_episodes`)."""
    start = time.perf_counter()
    indices = range(len(setting.episodes))
    records = [evaluate_episode(method, bench, setting, i) for i in (progress(indices) if progress else indices)]
    return summarise_episodes(records, time.perf_counter() - start)
