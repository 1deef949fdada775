"""The GTL evolution loop, in the spirit of ``deap.algorithms``: short and readable.

Generation 0 trains randomly initialised descendants (their learngene: the whole network or a
random mask). Each later generation: elites survive (with NSGA-II, ``toolbox.survive`` picks the
survivors of parents and offspring), a tournament picks parents, their clones are mutated (and
optionally mated), the new individuals are evaluated (``toolbox.map``: SCOOP when running under
it), the hall of fame, Pareto front, lineage and logbook are updated, and a checkpoint is written.
Where the work runs comes in with the toolbox (``toolbox.map``, ``toolbox.workers``): no engine is
imported here.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from deap import algorithms, base, tools

from . import gene_pool
from . import operators
from ..config.schema import Config, EAConfig, PoolConfig
from .diversity import diversity_record
from .lineage import mark_operator, record_lineage
from .fitness import Evaluation
from ..core.individual import make_individual, masks_of, same_individual
from ..core.learngene import full_masks
from ..core.models import arch_spec
from .workers import Workers, workers_of
from ..errors import EvaluationFailure, OperatorFailure  # defined there: the command lines catch them without torch

FRACTION_SLACK = 1e-9


def _guarded(toolbox, role: str, generation: int):
    """``toolbox.<role>`` wrapped so that a failure names the operator."""
    function = getattr(toolbox, role)

    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as err:
            raise OperatorFailure(role, function, generation, err) from err

    return call


@dataclass
class EvolutionState:
    """Everything needed to continue an evolution exactly: what a checkpoint holds."""

    population: list
    halloffame: tools.HallOfFame
    logbook: tools.Logbook
    generation: int = -1  # last finished generation
    next_id: int = 0
    best_at_target: object = None
    stale_generations: int = 0
    errors: list = field(default_factory=list)
    rng: dict = field(default_factory=dict)
    seconds: float = 0.0
    # every non-dominated (accuracy, fraction) ever evaluated; copies of one individual are twins
    pareto: tools.ParetoFront = field(default_factory=lambda: tools.ParetoFront(similar=same_individual))
    lineage: dict = field(default_factory=dict)  # id -> plain record of every individual (lineage.py)
    pool: object = None  # the shared gene pool (gene_pool.GenePool) with fitness.inheritance pool

    def capture_rng(self) -> None:
        self.rng = {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state().numpy().copy()}  # numpy: no torch pickles

    def restore_rng(self) -> None:
        if self.rng:
            random.setstate(self.rng["python"])
            np.random.set_state(self.rng["numpy"])
            torch.set_rng_state(torch.from_numpy(np.asarray(self.rng["torch"], dtype=np.uint8).copy()))


def new_state(cfg: Config, population: list | None = None) -> EvolutionState:
    """A fresh state: seeds the RNGs, builds generation 0 unless a population is given."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    state = EvolutionState(population=[], halloffame=tools.HallOfFame(5, similar=same_individual),
                           logbook=tools.Logbook())
    if population is None:
        population = initial_population(cfg, state)
    else:
        for ind in population:
            ind.id, ind.parents, ind.born, ind.made_by = state.next_id, [ind.id], 0, "seed"
            state.next_id += 1
            del ind.fitness.values
    state.population = population
    return state


def initial_population(cfg: Config, state: EvolutionState) -> list:
    """Generation 0: learngenes are the whole network, or random masks of ``ea.init_fraction``."""
    spec = arch_spec(cfg.model.network, cfg.model.width, cfg.data.channels)
    population = []
    for _ in range(cfg.ea.population_size):
        ind = make_individual(spec, full_masks(spec), state.next_id, born=0)
        state.next_id += 1
        if cfg.ea.init_fraction < 1.0:
            operators.mut_shrink(ind, cfg.ea.init_fraction, "random", cfg.ea.min_channels)
        population.append(ind)
    return population


def apply_evaluation(individual, result) -> None:
    """Write an evaluation back into the individual (runs in the main process).

    Accepts our :class:`Evaluation` or, from a user's evaluate function, a plain fitness tuple.
    """
    if isinstance(result, Evaluation):
        individual.fitness.values = tuple(result.fitness)
        if result.learngene is not None:  # Lamarckian inheritance
            individual.learngene = result.learngene
        individual.evaluation = dict(result.info)
    else:
        individual.fitness.values = tuple(result)
        individual.evaluation = {}


def make_statistics() -> tools.Statistics:
    stats = tools.Statistics(key=lambda ind: ind.fitness.values)
    stats.register("min", np.min, axis=0)
    stats.register("avg", np.mean, axis=0)
    stats.register("max", np.max, axis=0)
    return stats


def evaluate_population(population, toolbox, generation, progress=None) -> list:
    """Evaluate every individual whose fitness is invalid; return their evaluations' errors."""
    invalid = [ind for ind in population if not ind.fitness.valid]
    for ind in invalid:
        ind.evaluated_in = generation
    chunk = getattr(toolbox, "chunk_size", 1)
    if chunk > 1 and hasattr(toolbox, "evaluate_chunk"):
        chunks = [invalid[i:i + chunk] for i in range(0, len(invalid), chunk)]
        results = (result for batch in toolbox.map(toolbox.evaluate_chunk, chunks) for result in batch)
    else:
        results = toolbox.map(toolbox.evaluate, invalid)
    if progress is not None:
        results = progress(results, total=len(invalid), desc=f"gen {generation}")
    errors, ind = [], None
    try:
        for ind, result in zip(invalid, results):
            apply_evaluation(ind, result)
            if ind.evaluation.get("error"):
                errors.append(ind.evaluation["error"])
                if errors[-1].get("fatal"):
                    raise EvaluationFailure(generation, errors[-1])
    except EvaluationFailure:
        raise
    except Exception as err:  # raised by a user's own evaluate (ours reports its failures)
        import traceback

        raise EvaluationFailure(generation, {"id": getattr(ind, "id", "?"), "type": type(err).__name__,
                                             "message": str(err), "traceback": traceback.format_exc()}) from err
    if invalid and len(errors) == len(invalid):
        raise EvaluationFailure(generation, errors[-1], every=True)
    return invalid, errors


def next_generation(population, toolbox, ea: EAConfig, state: EvolutionState, generation: int) -> list:
    """Elites + mutated (and optionally mated) clones of tournament winners (a new list); ``ea``: the
    recipe's ``ea`` section.

    With a ``survive`` operator (NSGA-II), ``population`` is the last parents and offspring:
    ``ea.population_size`` of them survive, are kept instead of the elites and are the pool of
    the tournaments, which make ``population_size - elites`` offspring (as many evaluations).
    """
    if hasattr(toolbox, "survive"):
        population = _guarded(toolbox, "survive", generation)(population, ea.population_size)
        elites = [toolbox.clone(ind) for ind in population]
        count = ea.population_size - ea.elites
    else:
        size = len(population)
        population = scheduled_parents(population, ea, generation) if ea.scheduled_parents else population
        elites = [toolbox.clone(ind) for ind in operators.sel_elites(population, ea.elites)]
        count = size - len(elites)
    parents = _guarded(toolbox, "select", generation)(population, count)
    offspring = []
    for parent in parents:
        child = toolbox.clone(parent)
        child.id, child.parents, child.born, child.made_by = state.next_id, [parent.id], generation, "copy"
        state.next_id += 1
        offspring.append(child)
    guarded = base.Toolbox()
    guarded.register("clone", toolbox.clone)
    guarded.register("mate", mark_operator(_guarded(toolbox, "mate", generation), "crossover"))
    guarded.register("mutate", mark_operator(_guarded(toolbox, "mutate", generation), "mutation"))
    offspring = algorithms.varAnd(offspring, guarded, ea.cxpb, ea.mutpb)
    return elites + offspring


def scheduled_parents(population, ea: EAConfig, generation: int) -> list:
    """The individuals at or below the fraction the previous generation aimed at (all when none are;
    the schedule of the ``ea`` section).

    They alone are elites and enter tournaments (``ea.scheduled_parents``): a bigger learngene
    scores higher only for its size, and would otherwise win every tournament it enters.
    """
    goal = operators.shrink_schedule(generation - 1, ea.target_fraction, ea.schedule_generations, ea.schedule)
    within = [ind for ind in population if ind.fitness.values[1] <= goal + FRACTION_SLACK]
    return within or population


def rank_key(individual) -> tuple[float, float]:
    """How products rank: the more accurate first; at equal accuracy, the smaller learngene."""
    accuracy, fraction = individual.fitness.values
    return accuracy, -fraction


def record_generation(state: EvolutionState, ea: EAConfig, generation: int, evaluated: list,
                      errors: list, seconds: float) -> dict:
    """Hall of fame, best learngene at the target size, early-stop counter, logbook line (the target and
    schedule of the ``ea`` section)."""
    population = state.population
    state.halloffame.update(population)
    state.pareto.update([ind for ind in population if not ind.evaluation.get("error")])
    record_lineage(state.lineage, population)
    reached = [ind for ind in population if ind.fitness.values[1] <= ea.target_fraction + FRACTION_SLACK]
    improved = False
    if reached:
        best = max(reached, key=rank_key)
        if state.best_at_target is None or rank_key(best) > rank_key(state.best_at_target):
            state.best_at_target = best
            improved = True
    state.stale_generations = 0 if (improved or not reached) else state.stale_generations + 1
    state.errors.extend(errors)
    stats = make_statistics().compile(population)
    best = operators.sel_elites(population, 1)[0]
    record = {
        "gen": generation,
        "evals": len(evaluated),
        "acc_min": float(stats["min"][0]), "acc_avg": float(stats["avg"][0]), "acc_max": float(stats["max"][0]),
        "frac_min": float(stats["min"][1]), "frac_avg": float(stats["avg"][1]), "frac_max": float(stats["max"][1]),
        "best_id": best.id, "best_acc": float(best.fitness.values[0]),
        "best_ci95": float(best.evaluation.get("ci95", 0.0)), "best_fraction": float(best.fitness.values[1]),
        "goal_fraction": float(operators.shrink_schedule(generation, ea.target_fraction, ea.schedule_generations,
                                                          ea.schedule)),
        "errors": errors,
        **diversity_record(evaluated, population, ea.target_fraction, FRACTION_SLACK),
        "seconds": seconds,
    }
    state.logbook.record(**record)
    return record


def should_stop(state: EvolutionState, patience: int) -> bool:
    """Target fraction reached and no improvement for ``patience`` generations (``ea.patience``)."""
    return state.best_at_target is not None and state.stale_generations >= patience


def lend_pool(state: EvolutionState, cfg: Config, workers: Workers, log=print) -> gene_pool.PoolKey | None:
    """With the gene pool: publish it once, and point every individual to be evaluated at it.

    Those individuals travel without their own learngene (the pool replaces it); the key is
    all they carry (with the ``workers`` that share the pool with the processes evaluating them).
    Generation 0 first makes the pool (a warm start trains here, said in ``log``).
    """
    if cfg.fitness.inheritance != "pool":
        return None
    if state.pool is None:
        state.pool = gene_pool.started_pool(cfg, workers, log)
    key = gene_pool.publish(state.pool, cfg.runtime, workers)
    for ind in state.population:
        if not ind.fitness.valid:
            ind.learngene, ind.pool_key = None, key
    return key


def absorb_generation(state: EvolutionState, pool_config: PoolConfig, generation: int, evaluated: list,
                      key: gene_pool.PoolKey) -> None:
    """Merge what the generation's descendants learned into the pool (by the recipe's ``pool`` section);
    every individual then holds the pool under its masks (what its offspring's mutation reads, and what a
    product ships)."""
    gene_pool.merge_generation(state.pool, pool_config, generation, evaluated)
    gene_pool.withdraw(key)
    for ind in state.population:
        ind.pool_key = None
        ind.learngene = state.pool.restrict(masks_of(ind))


def evolve(cfg: Config, toolbox: base.Toolbox, state: EvolutionState, on_generation=None, progress=None,
           log=print, on_start=None) -> EvolutionState:
    """Run (or continue) the evolution until ``ea.generations`` or early stop.

    ``on_generation(state)`` is called after every finished generation (checkpoints, reports);
    ``on_start(state)`` before generation 0, and again after a gene pool's warm start (a checkpoint
    then keeps it); ``progress(iterable, total, desc, unit=...)``, a tqdm-like factory, when given, wraps
    the stream of evaluations and shows the warm start's steps.
    """
    state.restore_rng()
    if state.generation < 0 and on_start is not None:
        state.capture_rng()  # the RNG it starts from, for a resume to continue from exactly there
        on_start(state)
        if cfg.fitness.inheritance == "pool" and state.pool is None:
            state.pool = gene_pool.started_pool(cfg, workers_of(toolbox), log, progress)
            state.capture_rng()
            on_start(state)
    while state.generation < cfg.ea.generations:
        if state.generation >= 0 and should_stop(state, cfg.ea.patience):
            log(f"stopping early: no improvement at the target fraction for {cfg.ea.patience} generations")
            break
        generation = state.generation + 1
        start = time.perf_counter()
        if generation > 0:
            state.population = next_generation(state.population, toolbox, cfg.ea, state, generation)
        pool_key = lend_pool(state, cfg, workers_of(toolbox), log)
        evaluated, errors = evaluate_population(state.population, toolbox, generation, progress)
        if pool_key is not None:
            absorb_generation(state, cfg.pool, generation, evaluated, pool_key)
        for error in errors:
            log(f"gen {generation}: evaluation of individual {error['id']} failed "
                f"({error['type']}: {error['message']}); it gets the worst fitness")
        record = record_generation(state, cfg.ea, generation, evaluated, errors, time.perf_counter() - start)
        state.generation = generation
        state.seconds += record["seconds"]
        state.capture_rng()
        log(f"gen {generation:3d} | acc {record['acc_min']:.3f}/{record['acc_avg']:.3f}/{record['acc_max']:.3f} "
            f"(min/avg/max) | fraction {record['frac_min']:.3f}-{record['frac_max']:.3f} "
            f"(goal {record['goal_fraction']:.3f}) | best #{record['best_id']} {record['best_acc']:.3f}"
            f"±{record['best_ci95']:.3f} | {record['seconds']:.1f}s")
        if on_generation is not None:
            on_generation(state)
    return state


__all__ = ["evolve", "new_state", "EvolutionState"]
