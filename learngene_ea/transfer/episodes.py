"""Test episodes: the settings (columns of the table), their episodes, and every seed derived from them.

A setting is N-way K-shot (one per ``transfer.shots`` value) or limited data
(``transfer.limited_data`` support images per class) on test classes. Episode ``i`` of a
setting has its own seed; everything random in that episode (the descendants' initialisation,
the fine-tuning batches, the random-learngene channels) is drawn from streams derived from it,
so every method sees the same episode with the same seeds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..data.base import FewShotDataset
from ..config.checks import check_transfer_fits
from ..fewshot.sampling import Episode, mix_seed, sample_episode

# Tags mixed into seeds, so that every random stream is independent of the others.
_SHOT_SETTING, _LIMITED_SETTING, _PRETRAIN, _SLIMMING = 1, 2, 3, 4  # mixed into transfer.seed
_INIT, _FINETUNE, _RANDOM_MASK = 1, 2, 3  # mixed into an episode's seed


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


def episode_mask_seed(episode_seed: int) -> int:
    """Seed of the ``random-learngene`` row's choice of channels in one episode."""
    return mix_seed(episode_seed, _RANDOM_MASK)


def pretrain_seed(transfer_seed: int) -> int:
    """Seed of the pre-trained baseline's initialisation and batches (from ``transfer.seed``)."""
    return mix_seed(transfer_seed, _PRETRAIN)


def slimming_seed(transfer_seed: int, stage: int) -> int:
    """Seed of the ``slimming`` network's stage ``stage`` (0: the warm start, 1: its pruned sub-network):
    initialisation and batches, from ``transfer.seed``."""
    return mix_seed(transfer_seed, _SLIMMING, stage)


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
        episodes = [sample_episode(dataset, s, tcfg.n_way, k, tcfg.n_query, tcfg.classes) for s in seeds]
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
