"""The DEAP toolbox of a run: GTL's default operators, or the recipe's own (``operators.*``).

Users may ``register`` their own operators on the returned toolbox before calling
:func:`learngene_ea.ea.evolve.evolve`, exactly as with any DEAP toolbox. Where evaluations run is
handed in (``map``, ``workers``: see :mod:`.workers`); a run's toolbox, with its engine, is
:func:`learngene_ea.parallel.workers.run_toolbox`.
"""
from __future__ import annotations

from deap import base, tools

from . import operators
from ..config.schema import Config
from .fitness import evaluate, evaluate_chunk
from .plugins import resolve_operator
from .workers import Workers


def build_toolbox(cfg: Config, map=map, workers: Workers | None = None) -> base.Toolbox:
    """The default GTL toolbox, with any operator the recipe names in ``operators.*`` instead.

    ``map`` spreads the evaluations (the builtin: this process) and ``workers`` is what the evaluations
    and the loop know of where they run (``toolbox.workers``; default: one process as it is).
    """
    ea = cfg.ea
    toolbox = base.Toolbox()
    toolbox.register("map", map)
    toolbox.workers = workers or Workers()
    if ea.selection == "nsga2":
        # (mu + lambda): parents and offspring compete for the next population, then parents are
        # drawn from the survivors (evolve.next_generation calls ``survive`` when registered)
        toolbox.register("survive", tools.selNSGA2)
        toolbox.register("select", operators.sel_crowded_tournament, tournsize=ea.tournsize)
    elif ea.selection == "random":  # the no-selection ablation: parents drawn blind
        toolbox.register("select", tools.selRandom)
    else:
        toolbox.register("select", operators.sel_parsimony_tournament, tournsize=ea.tournsize,
                         tolerance=ea.parsimony_tolerance)
    schedule = operators.ShrinkSchedule(ea.target_fraction, ea.schedule, ea.schedule_generations)
    choice = operators.ChannelChoice(ea.criterion, ea.shrink_temperature)
    toolbox.register("mutate", operators.mut_learngene, schedule=schedule, criterion=choice,
                     min_channels=ea.min_channels, grow_fraction=ea.grow_fraction, flip_prob=ea.flip_prob,
                     swap_fraction=ea.swap_fraction)
    toolbox.register("mate", operators.cx_channels, indpb=0.5)
    toolbox.register("evaluate", evaluate, config=cfg, workers=toolbox.workers)
    for name in ("select", "mutate", "mate", "evaluate"):
        spec = getattr(cfg.operators, name)
        if spec is not None:
            function, kwargs = resolve_operator(name, spec.function, spec.kwargs, cfg)
            toolbox.register(name, function, **kwargs)
    if cfg.fitness.population_batch > 1 and cfg.operators.evaluate is None:
        # a worker trains a chunk of descendants as one grouped network (see batched.py)
        toolbox.register("evaluate_chunk", evaluate_chunk, config=cfg, workers=toolbox.workers)
        toolbox.chunk_size = cfg.fitness.population_batch
    return toolbox
