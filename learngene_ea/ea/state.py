"""What a checkpoint holds: the evolution state as a payload, and back; seeding a population from one.

A payload is a plain dict (generation, population, hall of fame, logbook, RNG states, the resolved
config, the recipe's name, the Pareto front, the lineage, the gene pool), pickled by
:mod:`learngene_ea.io.checkpoint`. A payload written before a field existed still loads: the
front and the lineage are rebuilt from the population and the hall of fame.
"""
from __future__ import annotations

import copy
import os

from deap import tools

from ..config.loading import to_dict
from ..config.schema import Config, ModelConfig
from ..core.backbone import spec_to_state
from ..core.individual import same_individual
from ..core.models import arch_spec
from ..core.traced import is_traced
from ..io.checkpoint import CheckpointError, load_checkpoint, load_latest_valid
from .evolve import EvolutionState, new_state
from .gene_pool import GenePool
from .lineage import record_lineage

# a population cannot survive a change of these keys; data.name, root, seed and split decide which
# classes are training, validation and test classes: a resumed population must never meet another split's
FIXED_KEYS = [("model", "family"), ("model", "width"), ("model", "kwargs"), ("model", "module"), ("data", "name"),
              ("data", "channels"), ("data", "image_size"), ("data", "root"), ("data", "seed"), ("data", "split"),
              ("data", "images_per_class")]
ABSENT_MEANS = {("model", "kwargs"): {}, ("model", "module"): None}  # keys older checkpoints lack


def traced_network(model: ModelConfig, channels: int) -> dict | None:
    """The spec of a traced network (the recipe's ``model`` section, reading ``channels`` image channels) as
    plain data (what checkpoints record); ``None`` for our families."""
    if not is_traced(model.network):
        return None
    return spec_to_state(arch_spec(model.network, model.width, channels))


def rebuilt_front(*groups) -> tools.ParetoFront:
    """A front rebuilt from what a checkpoint written before fronts were kept still holds."""
    front = tools.ParetoFront(similar=same_individual)
    for group in groups:
        front.update([ind for ind in group if ind is not None and ind.fitness.valid
                      and not ind.evaluation.get("error")])
    return front


def checkpoint_payload(state: EvolutionState, cfg: Config, recipe: str) -> dict:
    """The checkpoint of ``state`` (``recipe``: the run's name, what titles call it)."""
    return {
        "generation": state.generation, "population": state.population, "halloffame": state.halloffame,
        "logbook": state.logbook, "next_id": state.next_id, "best_at_target": state.best_at_target,
        "stale_generations": state.stale_generations, "errors": state.errors, "rng": state.rng,
        "seconds": state.seconds, "config": to_dict(cfg), "recipe": recipe,
        "pareto": state.pareto, "lineage": state.lineage,
        "pool": state.pool.to_payload() if state.pool is not None else None,
        "network": traced_network(cfg.model, cfg.data.channels),
    }


def state_from_checkpoint(payload: dict) -> EvolutionState:
    """The evolution state a checkpoint payload holds (older payloads: front and lineage rebuilt)."""
    state = EvolutionState(population=payload["population"], halloffame=payload["halloffame"],
                           logbook=payload["logbook"])
    for key in ("generation", "next_id", "best_at_target", "stale_generations",
                "errors", "rng", "seconds"):
        setattr(state, key, payload[key])
    # older checkpoints compared masks, which dropped more accurate learngenes with equal masks
    state.halloffame.similar = same_individual
    # checkpoints written before the front and the lineage were kept: rebuilt from what they hold
    state.pareto = payload.get("pareto") or rebuilt_front(state.population, state.halloffame, [state.best_at_target])
    state.lineage = payload.get("lineage") or {}
    state.pool = GenePool.from_payload(payload["pool"]) if payload.get("pool") else None
    record_lineage(state.lineage, [*state.halloffame, *state.population])  # adds nothing to a full lineage
    return state


def read_checkpoint(path: str, log=print) -> tuple[dict, str]:
    """The payload of a run folder's newest valid checkpoint, or of a ``.pkl`` file; and its file's path."""
    if os.path.isdir(path):
        return load_latest_valid(path, warn=log)
    if not os.path.exists(path):
        raise CheckpointError(f"{path!r} does not exist; pass a run directory (runs/<name>) or a checkpoint .pkl.")
    return load_checkpoint(path), path


def compatibility_problems(saved: dict, cfg: Config) -> list[str]:
    """What differs between a checkpoint's recipe and ``cfg`` in ways a population cannot survive."""
    problems = []
    for section, key in FIXED_KEYS:
        old = saved.get(section, {}).get(key, ABSENT_MEANS.get((section, key)))
        new = getattr(getattr(cfg, section), key)
        if old != new:
            problems.append(f"{section}.{key} is {old!r} in the checkpoint but {new!r} here")
    return problems


# what may change when a run is continued: how long it runs and how, and what is done after it; every
# other key shaped the population so far (a changed ea.population_size, seed or task would be recorded
# in config.yaml as if it had held from generation 0)
CHANGEABLE_ON_RESUME = ("name", "ea.generations", "ea.patience", "fitness.rescore_episodes", "fitness.retries",
                        "fitness.population_batch", "runtime.", "transfer.")


def _by_key(values: dict) -> dict:
    """``{"ea.population_size": 8, "seed": 0, ...}``: each section's keys, their values whole."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            flat[key] = value
    return flat


_CHANGEABLE_NAMES = [key + "*" if key.endswith(".") else key for key in CHANGEABLE_ON_RESUME]
RESUME_NOTE = (f"a resumed run may change only {', '.join(_CHANGEABLE_NAMES[:-1])} and {_CHANGEABLE_NAMES[-1]}; "
               "start a new run to change the rest")


def resume_problems(saved: dict, cfg: Config) -> list[str]:
    """Keys (outside :data:`FIXED_KEYS`, reported by :func:`compatibility_problems`) that differ between a
    checkpoint's recipe and ``cfg`` and cannot change in the middle of a run (a key the checkpoint's
    recipe lacks is not compared: it was added since)."""
    fixed = {f"{section}.{key}" for section, key in FIXED_KEYS}
    before, now = _by_key(saved), _by_key(to_dict(cfg))
    return [f"{key} is {before[key]!r} in the checkpoint but {now[key]!r} here" for key in now
            if key in before and before[key] != now[key] and key not in fixed
            and not key.startswith(CHANGEABLE_ON_RESUME)]


def network_problems(payload: dict, model: ModelConfig, channels: int) -> list[str]:
    """A traced network (``model``, the recipe's section; ``channels`` image channels) that traces differently
    now than when the checkpoint was written."""
    recorded = payload.get("network")
    if recorded is None or recorded == traced_network(model, channels):
        return []
    return [f"{model.network} traces into other gene layers than when it was saved (another torchvision "
            "or factory version?)"]


def seeded_state(cfg: Config, path: str, best_k: int = 0, log=print) -> EvolutionState:
    """A new run's state whose generation 0 is the (best ``best_k``) evaluated individuals of a checkpoint."""
    payload, source = read_checkpoint(path, log)
    problems = compatibility_problems(payload["config"], cfg) + network_problems(payload, cfg.model, cfg.data.channels)
    if problems:
        raise CheckpointError(f"cannot seed from {source!r}: " + "; ".join(problems) + ".")
    population = [ind for ind in payload["population"] if ind.fitness.valid]
    population.sort(key=lambda ind: (-ind.fitness.values[0], ind.fitness.values[1]))
    if best_k:
        population = population[: best_k]
    if not population:
        raise CheckpointError(f"{source!r} holds no evaluated individuals to seed from.")
    # fill up to the population size by cycling through the seeds
    population = [copy.deepcopy(population[i % len(population)]) for i in range(cfg.ea.population_size)]
    log(f"seeding generation 0 with {len(population)} individuals from {source}")
    return new_state(cfg, population)
