"""Fitness: inflate a descendant from the learngene, let it learn its task, score it on episodes.

``evaluate(individual, config)`` runs in whichever process SCOOP picks. Everything random in it
is seeded from ``(run seed, generation, individual id)``, so the result does not depend on the
worker or the order. It returns an :class:`Evaluation`: the DEAP fitness values plus the trained
learngene weights, which the main process writes back (Lamarckian inheritance) because workers
only ever see copies.
"""
from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.batched import StackedDescendants
from ..core.individual import individual_spec, masks_of
from ..core.learngene import Learngene, extract_learngene, inherit_learngene, learngene_fraction, learngene_from_weights
from ..core.models import build_model
from ..core.traced import is_traced
from ..data import load_dataset
from ..fewshot.batches import TaskBatches
from ..fewshot.sampling import mean_and_ci95, mix_seed, sample_episodes, sample_task
from ..fewshot.stacked_scoring import stacked_prototype_accuracies
from ..fewshot.training import (DivergedError, TrainSettings, finetune_head_accuracies, learngene_channels_only,
                                prototype_accuracies, prototype_head, stacked_layout, train_network, train_stacked)
from .gene_pool import pool_for
from .workers import Workers

WORST_ACCURACY = 0.0


@dataclass
class Evaluation:
    """What one fitness evaluation sends back to the main process."""

    fitness: tuple[float, float]
    learngene: Learngene | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Where:
    """Where an evaluation runs and since when: the dataset its descendants learn and are scored on, their
    device, and ``time.perf_counter()`` at its start (its info records the seconds since)."""

    dataset: object
    device: torch.device
    start: float


VALIDATION_SEED = 0xE915  # the run's fixed validation episodes, on which selection happens
RESCORE_SEED = 0x5C0FE  # fresh episodes and descendants for the product's unbiased figure
COMMON_DRAW = 0xC0DE  # stands for the individual's id in the seeds of fitness.common_draws


def validation_episodes(cfg, dataset, salt: int = VALIDATION_SEED, count: int | None = None):
    """The validation episodes every individual of the run is scored on (fixed per run).

    Another ``salt`` gives another set (the rescoring of the product), ``count`` its size.
    """
    f = cfg.fitness
    count = f.episodes if count is None else count
    return sample_episodes(dataset, mix_seed(cfg.seed, salt), count, f.n_way, f.k_shot, f.n_query, "val")


@dataclass(frozen=True)
class Draw:
    """Which descendant of an individual: the ``generation`` it is evaluated in, the ``attempt`` (a retry
    draws anew) and a ``salt`` (non-zero: a fresh draw, e.g. the product's rescoring)."""

    generation: int
    attempt: int = 0
    salt: int = 0


def inflate_descendant(individual, cfg, dataset, draw: Draw | int, device):
    """The descendant of ``individual`` (learngene written in) and its own task and seed.

    The seed is ``(run seed, generation, id, attempt)`` (with ``fitness.common_draws`` the same
    for every individual of the generation); a non-zero ``salt`` gives a fresh one (``draw``: a
    :class:`Draw`, or the generation).
    """
    draw = draw if isinstance(draw, Draw) else Draw(int(draw))
    # fitness.common_draws: one task and initialisation for the whole generation (paired comparisons)
    who = COMMON_DRAW if cfg.fitness.common_draws else individual.id
    parts = (cfg.seed, draw.generation, who, draw.attempt) + ((draw.salt,) if draw.salt else ())
    seed = mix_seed(*parts)
    spec = individual_spec(individual)
    model = build_model(spec.family, spec.width, spec.in_channels, cfg.task.num_classes, seed=seed, device=device)
    learngene, pool = individual.learngene, None
    if getattr(individual, "pool_key", None):  # fitness.inheritance pool: this generation's shared pool
        pool = pool_for(individual.pool_key)
        learngene = pool.learngene
    if learngene is not None:
        inherit_learngene(model, learngene.restrict(masks_of(individual)), cfg.fitness.complement_scale,
                          cfg.fitness.fresh_channels)
    task = sample_task(dataset, seed, cfg.task.num_classes, cfg.task.images_per_class, "train")
    if cfg.task.head_init == "prototypes":  # one batch's images, forward only
        prototype_head(model, dataset, task, math.ceil(cfg.task.batch_size / cfg.task.num_classes), device)
    elif cfg.task.head_init == "pool" and pool is not None and pool.head is not None:
        # the pool head's rows of the task's classes (outside a generation, e.g. the product's rescoring,
        # there is no published pool: the head stays random)
        weight, bias = pool.head_rows(task.class_ids)
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(weight))
            model.head.bias.copy_(torch.from_numpy(bias))
        model.inherited_head_classes = task.class_ids  # _finish sends the trained rows back to the merge
    return model, task, seed


def trained_head_rows(classes, weight: torch.Tensor, bias: torch.Tensor) -> dict:
    """A descendant's trained head rows for the pool's merge (``learngene.meta["head"]``)."""
    return {"classes": list(classes), "weight": weight.detach().float().cpu().numpy().copy(),
            "bias": bias.detach().float().cpu().numpy().copy()}


def train_descendant(individual, cfg, dataset, draw: Draw | int, device, curve: "LearningCurve | None" = None):
    """Build the descendant of ``individual``, let it learn its own task; return (model, loss).

    ``draw``: a :class:`Draw`, or the generation. With a ``curve``, the descendant is scored at
    the curve's points while it learns.
    """
    model, task, seed = inflate_descendant(individual, cfg, dataset, draw, device)
    observe = None if curve is None else curve.watch(model)
    loss = train_stacked([model], dataset, [task], TrainSettings.of_task(cfg), [seed], device, observe)[0]
    return model, loss


def curve_points(steps: int, points: int) -> list[int]:
    """The steps after which a learning curve is measured: ``points`` evenly spaced, the last at the end."""
    return sorted({max(1, round(steps * i / points)) for i in range(1, points + 1)})


class LearningCurve:
    """A descendant's accuracy on the run's validation episodes at ``fitness.speed_points`` points of its
    task (:func:`curve_points`). :meth:`per_episode` is the mean over the points, per episode: the area
    under the learning curve, higher for a learngene its descendants learn fast from."""

    def __init__(self, cfg, dataset, device, masks):
        self.cfg, self.dataset, self.device, self.masks = cfg, dataset, device, masks
        self.points = curve_points(cfg.task.steps, cfg.fitness.speed_points)
        self.episodes = validation_episodes(cfg, dataset)
        self.accuracies: dict[int, np.ndarray] = {}  # steps done -> accuracy per episode

    def watch(self, model):
        """The ``observe`` callback of :func:`~learngene_ea.fewshot.training.train_stacked` for ``model``."""
        def observe(steps_done: int, loss=None) -> None:
            if steps_done in self.points:
                self.accuracies[steps_done] = episode_accuracies(model, self.cfg, self.dataset, self.device,
                                                                 self.episodes, self.masks)
        self.accuracies.clear()  # a retried attempt measures its own curve
        return observe

    def per_episode(self) -> np.ndarray:
        """Each validation episode's accuracy averaged over the curve's points."""
        return np.mean([self.accuracies[p] for p in self.points], axis=0)

    def record(self) -> list[list[float]]:
        """``[steps done, mean accuracy]`` per point, for the evaluation's info."""
        return [[p, float(np.mean(self.accuracies[p]))] for p in self.points]


def score_descendant(model, cfg, dataset, device, episodes=None, masks=None, score=None) -> tuple[float, float]:
    """Few-shot accuracy on validation episodes and its 95% CI half-width (:func:`episode_accuracies`)."""
    return mean_and_ci95(episode_accuracies(model, cfg, dataset, device, episodes, masks, score))


def episode_accuracies(model, cfg, dataset, device, episodes=None, masks=None, score=None) -> np.ndarray:
    """Few-shot accuracy on each validation episode (prototype classifier, or a fine-tuned head).

    ``episodes`` defaults to the run's fixed validation episodes. ``fitness.score`` says what is
    scored: the whole trained descendant, its learngene sub-network alone (``masks``), or the
    mean of both (``score`` overrides it).
    """
    episodes = validation_episodes(cfg, dataset) if episodes is None else episodes
    score = score or cfg.fitness.score

    def accuracies():
        if cfg.fitness.classifier == "finetune":
            return finetune_head_accuracies(model, dataset, episodes, cfg.fitness.finetune_steps, device)
        return prototype_accuracies(model, dataset, episodes, cfg.fitness.metric, device)

    if score == "descendant" or masks is None:
        return accuracies()
    with learngene_channels_only(model, masks):
        inherited = accuracies()
    if score == "learngene":
        return inherited
    return (accuracies() + inherited) / 2


def can_pass_on_retry(error: BaseException) -> bool:
    """Failures that another attempt (a fresh seed, freed memory) may not repeat.

    A diverged loss or an out-of-memory error depends on the seed and on what else holds memory;
    anything else (a bad setting, a bug) would fail the same way every time.
    """
    if isinstance(error, (DivergedError, MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _error_record(err: BaseException) -> dict:
    return {"type": type(err).__name__, "message": str(err).splitlines()[0] if str(err) else "",
            "traceback": traceback.format_exc(limit=8)}


def evaluate(individual, config, workers: Workers | None = None) -> Evaluation:
    """Fitness of one learngene individual: ``((accuracy, fraction), trained learngene, info)``.

    A failure that can pass on retry (NaN/inf loss, out of memory) is retried
    ``fitness.retries`` times with a fresh seed; after that the individual gets the worst
    accuracy and the error is reported in ``info["error"]``. Any other failure is not retried:
    it is reported with ``"fatal": True`` and its traceback, and the loop stops the run.
    ``workers`` set this process up and give its device (a run's toolbox hands them in).
    """
    workers = workers or Workers()
    device = workers.prepare(config)
    start = time.perf_counter()
    generation = getattr(individual, "evaluated_in", individual.born)
    spec = individual_spec(individual)
    masks = masks_of(individual)
    fraction = learngene_fraction(spec, masks)
    dataset = load_dataset(config.data)
    errors, where = [], Where(dataset, device, start)
    curve = LearningCurve(config, dataset, device, masks) if config.fitness.speed_points else None
    for attempt in range(config.fitness.retries + 1):
        try:
            model, loss = train_descendant(individual, config, dataset, Draw(generation, attempt), device, curve)
            return _finish(individual, model, loss, config, where, attempt + 1, curve)
        except Exception as err:  # recorded: retried when it may pass, else reported as fatal
            if device.type == "cuda":
                torch.cuda.empty_cache()
            errors.append(_error_record(err))
            if not can_pass_on_retry(err):
                errors[-1]["fatal"] = True
                break
    last = errors[-1]
    error = {"type": last["type"], "message": last["message"], "id": individual.id, "generation": generation}
    if last.get("fatal"):
        error.update(fatal=True, traceback=last["traceback"])
    info = {"accuracy": WORST_ACCURACY, "ci95": 0.0, "attempts": len(errors),
            "seconds": time.perf_counter() - start, "device": str(device), "error": error}
    return Evaluation((WORST_ACCURACY, fraction), None, info)


def rescore(individual, config, episodes: int, workers: Workers | None = None) -> dict:
    """The product's accuracy measured again, free of the selection's bias.

    During the run every individual is scored on the same fixed validation episodes, and the
    product is the best of many such scores: its figure is biased upward. Here a descendant
    with a fresh seed learns a fresh task from the product's learngene (exactly what the next
    generation would do), scored on ``episodes`` fresh validation episodes.
    """
    workers = workers or Workers()
    device = workers.prepare(config)
    dataset = load_dataset(config.data)
    generation = getattr(individual, "evaluated_in", individual.born)
    model, _ = train_descendant(individual, config, dataset, Draw(generation, salt=RESCORE_SEED), device)
    fresh = validation_episodes(config, dataset, salt=RESCORE_SEED, count=episodes)
    # whatever fitness.score selected on, the figure is the whole fresh descendant's (comparable
    # across variants); the learngene sub-network's own accuracy is given beside it
    accuracy, ci95 = score_descendant(model, config, dataset, device, fresh, score="descendant")
    alone, alone_ci95 = score_descendant(model, config, dataset, device, fresh, masks_of(individual), "learngene")
    return {"accuracy": accuracy, "ci95": ci95, "learngene_alone": alone, "learngene_alone_ci95": alone_ci95,
            "episodes": episodes, "seed": RESCORE_SEED}


def _finish(individual, model, loss, config, where: Where, attempts=1, curve=None) -> Evaluation:
    """Score a trained descendant ``model`` (its final ``loss``; the area under its ``curve`` when it has one)
    and package its evaluation."""
    dataset, device = where.dataset, where.device
    masks = masks_of(individual)
    if curve is None:
        per_episode = episode_accuracies(model, config, dataset, device, masks=masks)
    else:
        per_episode = curve.per_episode()
    accuracy, ci95 = mean_and_ci95(per_episode)
    keep = config.fitness.inheritance == "lamarckian" or individual.learngene is None
    learngene = extract_learngene(model, masks, meta={"id": individual.id}) if keep else None
    classes = getattr(model, "inherited_head_classes", None)
    if learngene is not None and classes is not None:
        learngene.meta["head"] = trained_head_rows(classes, model.head.weight, model.head.bias)
    info = {"accuracy": accuracy, "ci95": ci95, "loss": loss, "attempts": attempts,
            "seconds": time.perf_counter() - where.start, "device": str(device),
            "episode_accuracies": [float(a) for a in per_episode]}  # what the logbook's noise figure pairs
    if curve is not None:
        info["curve"] = curve.record()  # its last point is the final accuracy
    return Evaluation((accuracy, learngene_fraction(individual_spec(individual), masks)), learngene, info)


def score_stacked(stack: StackedDescendants, cfg, dataset, device, masks: list) -> list[np.ndarray] | None:
    """:func:`episode_accuracies` of every descendant of ``stack`` (with its ``masks``) in one stacked pass
    on the run's validation episodes; None for ``fitness.classifier: finetune`` (scored one by one)."""
    if cfg.fitness.classifier == "finetune":
        return None
    episodes = validation_episodes(cfg, dataset)

    def accuracies():  # [P, episodes]
        return stacked_prototype_accuracies(stack, dataset, episodes, cfg.fitness.metric, device)

    if cfg.fitness.score == "descendant":
        return list(accuracies())
    together = {group: np.concatenate([m[group] for m in masks]) for group in masks[0]}
    with learngene_channels_only(stack.stack, together):
        inherited = accuracies()
    chosen = inherited if cfg.fitness.score == "learngene" else (accuracies() + inherited) / 2
    return list(chosen)


def _train_and_score_stacked(individuals, inflated, config, where: Where) -> list[Evaluation]:
    """Train the inflated descendants as one stack, score them together and extract their learngenes
    from one copy of the stack's weights (the models themselves are left untrained).

    ``inflated``: :func:`inflate_descendant`'s ``(model, task, seed)`` of each individual.
    """
    dataset, device = where.dataset, where.device
    stack = StackedDescendants([model for model, _, _ in inflated], stacked_layout(device))
    streams = [TaskBatches(task, config.task.batch_size, seed) for _, task, seed in inflated]
    losses = train_network(stack, dataset, streams, TrainSettings.of_task(config), device)
    masks = [masks_of(ind) for ind in individuals]
    scores = score_stacked(stack, config, dataset, device, masks)
    if scores is None:
        scores = [episode_accuracies(m, config, dataset, device, masks=mk) for m, mk in zip(stack.split(), masks)]
    evaluations = []
    for at, (ind, own_masks, loss, per_episode, weights) in enumerate(
            zip(individuals, masks, losses, scores, stack.gene_weights())):
        accuracy, ci95 = mean_and_ci95(per_episode)
        keep = config.fitness.inheritance == "lamarckian" or ind.learngene is None
        learngene = learngene_from_weights(stack.models[0].spec, weights, own_masks, {"id": ind.id}) if keep else None
        classes = getattr(inflated[at][0], "inherited_head_classes", None)
        if learngene is not None and classes is not None:
            learngene.meta["head"] = trained_head_rows(classes, stack.stack.head.weight[at], stack.stack.head.bias[at])
        info = {"accuracy": accuracy, "ci95": ci95, "loss": loss, "attempts": 1, "stacked": stack.size,
                "seconds": time.perf_counter() - where.start, "device": str(device),
                "episode_accuracies": [float(a) for a in per_episode]}
        evaluations.append(Evaluation((accuracy, learngene_fraction(individual_spec(ind), own_masks)), learngene, info))
    return evaluations


def evaluate_chunk(individuals, config, workers: Workers | None = None) -> list[Evaluation]:
    """Evaluate several individuals at once: their descendants trained, scored and read as one grouped
    network (each step, the scoring and the extraction are one pass for all of them).

    Gives the same results as :func:`evaluate` on each (up to float summation order). Falls
    back to one-by-one evaluation when the descendants differ in shape, when the chunk has a
    single individual, when fitness measures learning curves (``fitness.speed_points``), for traced
    networks (``torchvision:``, ``module:``), or when the
    batched training fails (each then gets its own retries).
    """
    individuals = list(individuals)
    # a learning curve is measured on one network (scores between steps); a traced network has layers
    # that are not gene layers, which a stack cannot group: one by one
    if (len(individuals) < 2 or len({ind.arch for ind in individuals}) > 1 or config.fitness.speed_points
            or is_traced(individuals[0].arch[0])):
        return [evaluate(ind, config, workers) for ind in individuals]
    workers = workers or Workers()
    device = workers.prepare(config)
    start = time.perf_counter()
    dataset = load_dataset(config.data)
    try:
        inflated = [inflate_descendant(ind, config, dataset, getattr(ind, "evaluated_in", ind.born), device)
                    for ind in individuals]
        if len({len(task.indices) for _, task, _ in inflated}) > 1:  # unequal tasks cannot share steps
            return [evaluate(ind, config, workers) for ind in individuals]
        return _train_and_score_stacked(individuals, inflated, config, Where(dataset, device, start))
    except Exception:  # one bad descendant spoils the batch: evaluate each on its own
        return [evaluate(ind, config, workers) for ind in individuals]
