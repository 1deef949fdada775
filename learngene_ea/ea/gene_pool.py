"""The shared gene pool: learngene weights that every evaluated descendant trains.

With ``fitness.inheritance: pool`` the learngene weights do not travel down one lineage. They
live in one pool (the weights of a whole network, every channel of every gene layer) that all
descendants of a generation inherit from, each under its own masks; after the generation every
weight moves by ``pool.step`` times the mean update of the descendants that carried it (Reptile /
local SGD: with step 1.0, the mean of their trained values). So all of the evolution's training
feeds what is inherited, not only the product's lineage.

The pool also keeps a *learngene score* per channel: an exponentially decayed (``pool.score_decay``)
record of how much more accurate the descendants that carried the channel were than the
generation's mean. ``ea.criterion: score`` makes mutation keep the best-scored channels.

The merge sorts the descendants by id and sums in float64, so it is the same whatever the number
of workers and the order their results return in. The pool is published once per generation
(:func:`publish`: a SCOOP shared constant or one Ray ``put``); workers read it by the key each
individual carries (:func:`pool_for`).
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from ..config.schema import EAConfig, PoolConfig
from ..core.learngene import WEIGHT_KEYS, Learngene, extract_learngene, full_masks, kept_indices
from ..core.backbone import input_mask
from ..core.models import arch_spec, build_model
from ..core.threads import available_cores, threads_set_to
from ..fewshot.sampling import mix_seed
from .workers import Workers

POOL_SEED = 0x9E9E  # the pool's initial weights: one network's initialisation, shared by generation 0
WARM_START_SEED = 0x3A4D  # the warm start's task and batches
# A process-wide store, key -> pool, one at a time, in the process that published it: the serial backend's
# "workers" are this process, and read it back by the key an individual carries (pool_for), as others
# read a SCOOP constant or a Ray object.
_LOCAL: dict = {}


@dataclass
class GenePool:
    """The pool's weights (a whole-network :class:`Learngene`), channel scores and history.

    Attributes:
        learngene: full masks; its weights are the pool's current values.
        scores: group name -> float array over the group's channels (learngene scores).
        warm_start: what seeded the pool: ``{"kind": "init" | "pretrained" | "warm_start", "images": n, ...}``.
        history: one plain record per merged generation (scores, carriers, update size).
        head: with ``task.head_init: pool``, the warm start's linear head over every training class,
            ``{"classes": dataset class ids, "weight": [C, F], "bias": [C]}``; descendants inherit the rows
            of their task's classes and the merge moves each row as it moves the gene weights. Else None.
    """

    learngene: Learngene
    scores: dict[str, np.ndarray]
    warm_start: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    head: dict | None = None

    def to_payload(self) -> dict:
        """Plain data for a checkpoint (what :func:`from_payload` reads back)."""
        head = None if self.head is None else {k: np.copy(v) if k != "classes" else list(v)
                                              for k, v in self.head.items()}
        return {"learngene": self.learngene, "scores": {g: s.copy() for g, s in self.scores.items()},
                "warm_start": dict(self.warm_start), "history": list(self.history), "head": head}

    @classmethod
    def from_payload(cls, payload: dict) -> "GenePool":
        return cls(payload["learngene"], {g: np.asarray(s, dtype=np.float64) for g, s in payload["scores"].items()},
                   dict(payload.get("warm_start", {})), list(payload.get("history", [])), payload.get("head"))

    def head_rows(self, classes) -> tuple[np.ndarray, np.ndarray]:
        """The head's weight and bias rows of dataset classes ``classes``, in that order."""
        rows = [self.head["classes"].index(int(c)) for c in classes]
        return self.head["weight"][rows], self.head["bias"][rows]

    def restrict(self, masks: dict[str, np.ndarray]) -> Learngene:
        """The pool's weights under ``masks``, with the kept channels' scores in ``meta['scores']``."""
        learngene = self.learngene.restrict(masks)
        learngene.meta = {"scores": {g: s.tolist() for g, s in self.scores.items()}, "from": "gene pool"}
        return learngene


def pool_from_model(model, warm_start: dict, head_classes=None) -> GenePool:
    """A pool holding every gene layer of ``model``, scores at zero; with ``head_classes`` (the dataset classes
    of ``model``'s head, in order) its head too (``task.head_init: pool``)."""
    spec = model.spec
    learngene = extract_learngene(model, full_masks(spec), meta={"from": "gene pool"})
    head = None
    if head_classes is not None:
        head = {"classes": [int(c) for c in head_classes], "weight": model.head.weight.detach().cpu().numpy().copy(),
                "bias": model.head.bias.detach().cpu().numpy().copy()}
    return GenePool(learngene, {g: np.zeros(size) for g, size in spec.groups}, warm_start, head=head)


def initial_pool(cfg, device="cpu", workers: Workers | None = None, progress=None) -> GenePool:
    """Generation 0's pool: one fresh initialisation (every descendant starts from it), or a warm
    start trained here on the training classes for ``pool.warm_start_fraction`` of the evolution's
    planned images (``--from-pretrained`` gives a user's network instead: ``api.run.given_pool``);
    ``workers`` set up this process's memory for it; ``progress`` (the run's bar factory) shows its steps."""
    spec = arch_spec(cfg.model.network, cfg.model.width, cfg.data.channels)
    model = build_model(spec.family, spec.width, spec.in_channels, cfg.task.num_classes,
                        seed=mix_seed(cfg.seed, POOL_SEED), device=device)
    images = warm_start_images(cfg)
    if not images:
        return pool_from_model(model, {"kind": "init", "images": 0})
    return pool_from_model(*warm_start(cfg, images, device, workers or Workers(), progress))


def started_pool(cfg, workers: Workers, log=print, progress=None) -> GenePool:
    """:func:`initial_pool` on the ``workers``' origin device, saying in ``log`` what its warm start trains
    (the run's first compute) and showing its steps on a bar from ``progress`` when given."""
    images = warm_start_images(cfg)
    if images:
        log(f"gene pool: warm start, one network on every training class for {images // cfg.task.batch_size:,} "
            f"steps ({images:,} images, counted in the equal-compute budget)"
            + (f", {cfg.pool.warm_start_subnets:.0%} of them a random sub-network's" if cfg.pool.warm_start_subnets
               else ""))
    start = time.perf_counter()
    pool = initial_pool(cfg, workers.device(cfg.runtime.device), workers, progress)
    if images:
        log(f"gene pool: warm start done, final loss {pool.warm_start['final_loss']:.3f}, "
            f"{time.perf_counter() - start:.0f}s")
    return pool


def planned_evaluations(ea: EAConfig) -> int:
    """Evaluations of a run that goes all ``ea.generations`` (generation 0, then the offspring; ``ea``: the
    recipe's ``ea`` section)."""
    return ea.population_size + ea.generations * (ea.population_size - ea.elites)


def warm_start_images(cfg) -> int:
    """Training images of the warm start: ``pool.warm_start_fraction`` of the planned evolution's."""
    planned = planned_evaluations(cfg.ea) * cfg.task.steps * cfg.task.batch_size
    steps = math.ceil(cfg.pool.warm_start_fraction * planned / cfg.task.batch_size)
    return steps * cfg.task.batch_size


def warm_start(cfg, images: int, device, workers: Workers, progress=None):
    """Train one whole network on every training class for ``images`` images (the task optimiser): the
    network, a record of its training, and the classes of its head when descendants inherit it."""
    from ..data import load_dataset
    from ..fewshot.sampling import training_classes_task
    from ..fewshot.training import TrainSettings, closing_observer, train_stacked

    workers.configure_memory(cfg.runtime)  # the run's layout (channels-last or not) before its first network
    dataset = load_dataset(cfg.data)
    task = training_classes_task(dataset)
    seed = mix_seed(cfg.seed, WARM_START_SEED)
    spec = arch_spec(cfg.model.network, cfg.model.width, cfg.data.channels)
    model = build_model(spec.family, spec.width, spec.in_channels, len(task.class_ids),
                        seed=mix_seed(cfg.seed, POOL_SEED), device=device)
    steps = images // cfg.task.batch_size
    # before generation 0 every worker is idle: unless runtime.threads says otherwise, the origin
    # takes every core of its host (as the transfer's pre-training does)
    threads = cfg.runtime.threads if cfg.runtime.threads > 0 else available_cores()
    subnets = RandomSubnetworks(model, cfg.pool.warm_start_subnets, math.sqrt(cfg.ea.target_fraction),
                                mix_seed(cfg.seed, WARM_START_SEED, 1), steps)
    try:
        with closing_observer(progress, steps, "gene pool warm start",
                              subnets if cfg.pool.warm_start_subnets else None) as observe, threads_set_to(threads):
            loss = train_stacked([model], dataset, [task], TrainSettings.of_task(cfg, steps), [seed], device,
                                 observe)[0]
    finally:
        subnets.close()
    record = {"kind": "warm_start", "images": images, "steps": steps, "final_loss": float(loss),
              "classes": len(task.class_ids), "threads": threads, "subnet_steps": subnets.trained}
    return model, record, (task.class_ids if cfg.task.head_init == "pool" else None)


class RandomSubnetworks:
    """A warm start's ``observe``: before each step, with probability ``share``, the step trains a random
    sub-network (every channel kept with probability ``keep``, one at least per group; the network's
    own silencing), the whole network otherwise. Dropped channels get no gradient on such a step."""

    def __init__(self, model, share: float, keep: float, seed: int, steps: int):
        self.model, self.share, self.keep, self.steps = model, share, keep, steps
        self.rng = np.random.default_rng(seed)
        self.handles, self.trained = [], 0
        if share:
            self(0)

    def __call__(self, steps_done: int, loss=None) -> None:
        self.close()
        if steps_done >= self.steps or self.rng.random() >= self.share:
            return
        masks = {g: self.rng.random(size) < self.keep for g, size in self.model.spec.groups}
        for mask in masks.values():
            mask[self.rng.integers(len(mask))] = True
        self.handles = self.model.silence_dropped_channels(masks)
        self.trained += 1

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


# ---------------------------------------------------------------------------- travel

@dataclass(frozen=True)
class PoolKey:
    """What each individual of a pool generation carries instead of its learngene: the key the pool is
    published under and the ``workers`` that read it back in any process (a user's evaluate too). Only
    between publishing and merging: never in a checkpoint."""

    key: str
    workers: Workers


def publish(pool: GenePool, runtime, workers: Workers) -> PoolKey:
    """Send the pool to every worker once (``workers.share``); the key each individual of the generation carries."""
    key = f"gene-pool-{uuid.uuid4().hex}"  # unique: SCOOP constants cannot be redefined
    _LOCAL.clear()  # one pool at a time in this process
    _LOCAL[key] = pool
    workers.share(runtime, key, pool)
    return PoolKey(key, workers)


def withdraw(pool_key: PoolKey) -> None:
    """The generation is merged: the published pool may be freed (Ray; SCOOP keeps constants)."""
    _LOCAL.pop(pool_key.key, None)
    pool_key.workers.forget(pool_key.key)


def pool_for(pool_key: PoolKey) -> GenePool:
    """The pool published under ``pool_key``: this process's own, or the shared constant."""
    if pool_key.key in _LOCAL:
        return _LOCAL[pool_key.key]
    return pool_key.workers.shared(pool_key.key)


# ---------------------------------------------------------------------------- merge

def merge(pool: GenePool, contributions: list, step: float = 1.0) -> dict:
    """Move every pool weight by ``step`` x the mean update of the descendants that carried it.

    ``contributions``: ``(id, masks, trained learngene)`` of each descendant; what it inherited
    is the pool under its masks, so its update is trained minus pool. Returns, per gene layer,
    the number of conv weights that moved (for the history). Changes ``pool`` in place.
    """
    spec = pool.learngene.spec
    weights = pool.learngene.weights
    moved = {}
    for layer in spec.layers:
        current = weights[layer.name]
        sums = {k: np.zeros(current[k].shape, dtype=np.float64) for k in WEIGHT_KEYS}
        counts = {"conv": np.zeros(current["conv"].shape[:2]), "bn": np.zeros(current["bn_weight"].shape)}
        for _, masks, trained in sorted(contributions, key=lambda c: c[0]):
            if layer.name not in trained.weights:
                continue
            out = kept_indices(masks[layer.group])
            reads = input_mask(layer, masks)
            inn = np.arange(layer.in_channels) if reads is None else kept_indices(reads)
            grid = np.ix_(out, inn)
            new = trained.weights[layer.name]
            sums["conv"][grid] += new["conv"].astype(np.float64) - current["conv"][grid]
            counts["conv"][grid] += 1
            for key in WEIGHT_KEYS[1:]:
                sums[key][out] += new[key].astype(np.float64) - current[key][out]
            counts["bn"][out] += 1
        carried = counts["conv"] > 0
        conv_count = np.maximum(counts["conv"], 1)[:, :, None, None]
        current["conv"] = (current["conv"] + step * sums["conv"] / conv_count).astype(np.float32)
        bn_count = np.maximum(counts["bn"], 1)
        for key in WEIGHT_KEYS[1:]:
            current[key] = (current[key] + step * sums[key] / bn_count).astype(np.float32)
        # a step above 1 may overshoot a variance below zero
        current["bn_var"] = np.maximum(current["bn_var"], 1e-5).astype(np.float32)
        moved[layer.name] = int(carried.sum())
    return moved


def merge_head(pool: GenePool, contributions: list, step: float = 1.0) -> int:
    """Move every row of the pool's head by ``step`` x the mean update of the descendants whose task had its
    class (``trained.meta["head"]``: their classes and trained rows), as :func:`merge` moves the gene
    weights. Returns how many rows moved; nothing without a head."""
    if pool.head is None:
        return 0
    weight, bias = pool.head["weight"], pool.head["bias"]
    sums = [np.zeros(weight.shape, dtype=np.float64), np.zeros(bias.shape, dtype=np.float64)]
    counts = np.zeros(len(bias))
    for _, _, trained in sorted(contributions, key=lambda c: c[0]):
        rows = trained.meta.get("head")
        if rows is None:
            continue
        at = [pool.head["classes"].index(int(c)) for c in rows["classes"]]
        sums[0][at] += rows["weight"].astype(np.float64) - weight[at]
        sums[1][at] += rows["bias"].astype(np.float64) - bias[at]
        counts[at] += 1
    divide = np.maximum(counts, 1)
    pool.head["weight"] = (weight + step * sums[0] / divide[:, None]).astype(np.float32)
    pool.head["bias"] = (bias + step * sums[1] / divide).astype(np.float32)
    return int((counts > 0).sum())


def update_scores(pool: GenePool, evaluated: list, decay: float) -> dict:
    """Decay every channel's score, then credit each channel the generation's evidence.

    ``evaluated``: ``(masks, accuracy)`` of each descendant. A channel's evidence is the mean
    accuracy of the descendants that carried it minus the generation's mean; channels that all
    or none carried get none (nothing to tell them apart). Returns the carriers per group.
    """
    if not evaluated:
        return {}
    mean = float(np.mean([accuracy for _, accuracy in evaluated]))
    carriers = {}
    for group, score in pool.scores.items():
        carried = np.stack([masks[group] for masks, _ in evaluated]).astype(np.float64)
        accuracies = np.array([accuracy for _, accuracy in evaluated], dtype=np.float64)
        count = carried.sum(axis=0)
        informative = (count > 0) & (count < len(evaluated))
        evidence = np.zeros_like(score)
        evidence[informative] = (accuracies @ carried)[informative] / count[informative] - mean
        pool.scores[group] = decay * score + (1.0 - decay) * evidence
        carriers[group] = count.astype(int).tolist()
    return carriers


def merge_generation(pool: GenePool, pool_config: PoolConfig, generation: int, evaluated: list) -> dict:
    """Fold a generation's evaluated individuals into the pool and its scores (``pool.step``,
    ``pool.score_decay`` of ``pool_config``, the recipe's ``pool`` section); one history record."""
    ok = [ind for ind in evaluated if ind.learngene is not None and not ind.evaluation.get("error")]
    contributions = [(ind.id, dict(zip(_group_names(ind), ind)), ind.learngene) for ind in ok]
    moved = merge(pool, contributions, pool_config.step)
    if pool.head is not None:
        moved["head rows"] = merge_head(pool, contributions, pool_config.step)
    carriers = update_scores(pool, [(dict(zip(_group_names(ind), ind)), ind.fitness.values[0]) for ind in ok],
                             pool_config.score_decay)
    record = {"gen": generation, "descendants": len(ok), "moved": moved, "carriers": carriers,
              "scores": {g: s.tolist() for g, s in pool.scores.items()}}
    pool.history.append(record)
    return record


def _group_names(individual) -> list[str]:
    return arch_spec(*individual.arch).group_names
