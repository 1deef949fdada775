"""Command line of a GTL run: ``python -m scoop -n 8 -m learngene_ea.run --config genomes/<recipe>.yaml``.

Reads the recipe (or a checkpoint to resume), builds the toolbox, runs :func:`evolve`, and after
every generation writes the run directory: ``config.yaml``, ``logbook.jsonl``,
``checkpoints/gen_NNNN.pkl`` + ``latest.pkl``, ``learngene.pt``, ``evolution.png``,
``summary.json``. Mistakes in the input end with one sentence on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback

from learngene_ea import config as config_module
from learngene_ea.checkpoint import CheckpointError, load_checkpoint, load_latest_valid, save_checkpoint
from learngene_ea.config import Config, ConfigError
from learngene_ea.errors import UserError
from learngene_ea.data import load_dataset
from learngene_ea.evolve import (EvaluationFailure, EvolutionState, OperatorFailure, build_toolbox, evolve,
                                 new_state, product_learngene)
from learngene_ea.fitness import rescore
from learngene_ea.gene_pool import GenePool, given_pool
from learngene_ea.individual import same_individual
from learngene_ea.lineage import record_lineage, write_lineage
from learngene_ea.pool_report import write_pool_report
from learngene_ea.pareto import rebuilt_front, write_front
from learngene_ea.recipe_checks import check_run_fits, silent_caps
from learngene_ea.report import plot_evolution, write_json, write_logbook
from learngene_ea.tensorboard_log import TensorBoardLog, require_tensorboard
from learngene_ea.engines import start_engine


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m learngene_ea.run",
        description="Extract a learngene by Genetic Transfer Learning (run under SCOOP to spread "
                    "fitness evaluations: python -m scoop -n 8 -m learngene_ea.run ...).")
    parser.add_argument("--config", help="recipe YAML (default: genomes/default.yaml when it exists, "
                                         "else the built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe key (repeatable), e.g. --set ea.generations=10")
    parser.add_argument("--run-dir", help="run directory (default: runs/<name>-<timestamp>)")
    parser.add_argument("--resume", metavar="RUN_DIR_OR_PKL",
                        help="continue a run from its newest valid checkpoint (or from a .pkl file)")
    parser.add_argument("--seed-population", metavar="PKL",
                        help="start a new run from the population of another run's checkpoint")
    parser.add_argument("--best-k", type=int, default=0,
                        help="with --seed-population: take only the best k individuals")
    parser.add_argument("--from-pretrained", metavar="FILE",
                        help="with fitness.inheritance pool: start the gene pool from this state dict")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, log lines only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------ setup

def recipe_path(args) -> str | None:
    """The recipe file a new run reads: --config, else genomes/default.yaml when it exists, else none."""
    if args.config is None and os.path.isfile(config_module.DEFAULT_RECIPE):
        return config_module.DEFAULT_RECIPE
    return args.config


def resolve_config(args) -> Config:
    return config_module.load_config(recipe_path(args), args.overrides)


def recipe_of(cfg: Config) -> str:
    """The recipe's name that :func:`prepare` noted on ``cfg`` (``cfg.recipe``: not a recipe key, so it is
    not saved in config.yaml, where a reused file would carry it to another dataset)."""
    return getattr(cfg, "recipe", None) or cfg.name or "defaults"


def run_title(cfg: Config, recipe: str) -> str:
    """``default on synthetic``: the recipe and the dataset, as plots and summaries name a run."""
    return f"{recipe} on {config_module.dataset_label(cfg.data)}"


def new_run_dir(cfg: Config, requested: str | None, recipe: str | None = None) -> str:
    """A fresh run directory's path (made later); an existing run is never reused or overwritten.

    Unless ``--run-dir`` says where: ``runs/<name>-<timestamp>`` when the recipe sets ``name``, else
    ``runs/<recipe>-<dataset>-<timestamp>`` (``recipe``: the recipe file's name).
    """
    if requested:
        if os.path.isdir(requested) and os.listdir(requested):
            raise UserError(f"run directory {requested!r} already exists and is not empty; resume it with "
                            f"--resume {requested} or pass another --run-dir.")
        return requested
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    prefix = cfg.name or f"{recipe or 'defaults'}-{config_module.dataset_label(cfg.data)}"
    path = os.path.join("runs", f"{prefix}-{stamp}")
    suffix = 1
    while os.path.exists(path):
        suffix += 1
        path = os.path.join("runs", f"{prefix}-{stamp}-{suffix}")
    return path


def make_run_dir(path: str) -> None:
    """Create the run directory and its checkpoints folder (once every input has been checked)."""
    try:
        os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create run directory {path!r} ({err.strerror}); pass a writable --run-dir.") from err


def compatibility_problems(saved: dict, cfg: Config) -> list[str]:
    """What differs between a checkpoint's recipe and ``cfg`` in ways a population cannot survive."""
    # data.name, root, seed and split decide which classes are training, validation and test
    # classes: a resumed population must never meet classes that were another split's
    keys = [("model", "family"), ("model", "width"), ("data", "name"), ("data", "channels"),
            ("data", "image_size"), ("data", "root"), ("data", "seed"), ("data", "split"),
            ("data", "images_per_class")]
    problems = []
    for section, key in keys:
        old = saved.get(section, {}).get(key)
        new = getattr(getattr(cfg, section), key)
        if old != new:
            problems.append(f"{section}.{key} is {old!r} in the checkpoint but {new!r} here")
    return problems


def keep_layout(saved: dict, cfg: Config, overrides: list[str], log) -> None:
    """A resumed run keeps the memory layout it was run in, unless --set says otherwise.

    Float sums differ between layouts, so only the recorded one continues bit for bit (a
    recipe whose default changed since, e.g. genomes/default.yaml, must not switch it).
    """
    recorded = bool(saved.get("runtime", {}).get("channels_last", False))
    if cfg.runtime.channels_last != recorded and not any(
            config_module.parse_override(text)[0] == ["runtime", "channels_last"] for text in overrides):
        cfg.runtime.channels_last = recorded
        log(f"resuming in the layout the run was started with (runtime.channels_last={str(recorded).lower()})")


def state_from_checkpoint(payload: dict) -> EvolutionState:
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


def checkpoint_payload(state: EvolutionState, cfg: Config) -> dict:
    return {
        "generation": state.generation, "population": state.population, "halloffame": state.halloffame,
        "logbook": state.logbook, "next_id": state.next_id, "best_at_target": state.best_at_target,
        "stale_generations": state.stale_generations, "errors": state.errors, "rng": state.rng,
        "seconds": state.seconds, "config": config_module.to_dict(cfg), "recipe": recipe_of(cfg),
        "pareto": state.pareto, "lineage": state.lineage,
        "pool": state.pool.to_payload() if state.pool is not None else None,
    }


def read_checkpoint_arg(path: str, log) -> tuple[dict, str]:
    if os.path.isdir(path):
        return load_latest_valid(path, warn=log)
    if not os.path.exists(path):
        raise CheckpointError(f"{path!r} does not exist; pass a run directory (runs/<name>) or a checkpoint .pkl.")
    return load_checkpoint(path), path


def prepare(args, log) -> tuple[Config, EvolutionState, str]:
    """Config, evolution state and run directory (not made yet) for a new, resumed or seeded run."""
    if args.resume and args.seed_population:
        raise UserError("use either --resume or --seed-population, not both.")
    if args.from_pretrained and (args.resume or args.seed_population):
        raise UserError("--from-pretrained starts a new run's gene pool; not with --resume or --seed-population.")
    if args.best_k < 0 or (args.best_k and not args.seed_population):
        raise UserError(f"--best-k {args.best_k}: " + ("it must be a positive number of individuals (0, the default: "
                        "all of them)." if args.best_k < 0 else "it only goes with --seed-population."))
    if args.resume:
        payload, source = read_checkpoint_arg(args.resume, log)
        saved = payload["config"]
        base = config_module.read_recipe(args.config) if args.config else saved
        cfg = config_module.from_dict(config_module.apply_overrides(base, args.overrides))
        problems = compatibility_problems(saved, cfg)
        if problems:
            raise CheckpointError(f"cannot resume {source!r}: " + "; ".join(problems) + ".")
        cfg.recipe = cfg.name or payload.get("recipe") or config_module.recipe_name(cfg, args.config)
        keep_layout(saved, cfg, args.overrides, log)
        check_run_fits(cfg, load_dataset(cfg.data))
        run_dir = args.run_dir or (args.resume if os.path.isdir(args.resume)
                                   else os.path.dirname(os.path.dirname(os.path.abspath(source))))
        log(f"resuming {source} after generation {payload['generation']}")
        return cfg, state_from_checkpoint(payload), run_dir
    cfg = resolve_config(args)
    cfg.recipe = config_module.recipe_name(cfg, recipe_path(args))  # not a key: what titles call the run
    check_run_fits(cfg, load_dataset(cfg.data))  # before the run folder exists
    if args.seed_population:
        payload, source = read_checkpoint_arg(args.seed_population, log)
        problems = compatibility_problems(payload["config"], cfg)
        if problems:
            raise CheckpointError(f"cannot seed from {source!r}: " + "; ".join(problems) + ".")
        population = [ind for ind in payload["population"] if ind.fitness.valid]
        population.sort(key=lambda ind: (-ind.fitness.values[0], ind.fitness.values[1]))
        if args.best_k:
            population = population[: args.best_k]
        if not population:
            raise CheckpointError(f"{source!r} holds no evaluated individuals to seed from.")
        # fill up to the population size by cycling through the seeds
        population = [population[i % len(population)] for i in range(cfg.ea.population_size)]
        import copy

        population = [copy.deepcopy(ind) for ind in population]
        state = new_state(cfg, population)
        log(f"seeding generation 0 with {len(population)} individuals from {source}")
        return cfg, state, new_run_dir(cfg, args.run_dir, cfg.recipe)
    state = new_state(cfg)
    if args.from_pretrained:  # checked before anything is trained or made
        state.pool = given_pool(args.from_pretrained, cfg)
    return cfg, state, new_run_dir(cfg, args.run_dir, cfg.recipe)


# ---------------------------------------------------------------------------- outputs

class RunOutputs:
    """Writes every output file after each generation (checkpoint first: it is what resumes)."""

    def __init__(self, run_dir: str, cfg: Config, log=print, caps=()):
        self.run_dir = run_dir
        self.cfg = cfg
        self.log = log
        self.caps = list(caps)  # the warnings of recipe values the run lowers (recipe_checks.silent_caps)
        self.title = run_title(cfg, recipe_of(cfg))
        self.started = time.perf_counter()
        self.checkpoint_bytes = 0
        self.checkpoint_seconds = 0.0
        config_module.save_config(cfg, self.path("config.yaml"))

    def path(self, *parts) -> str:
        return os.path.join(self.run_dir, *parts)

    def __call__(self, state: EvolutionState) -> None:
        start = time.perf_counter()
        payload = checkpoint_payload(state, self.cfg)
        self.checkpoint_bytes = save_checkpoint(payload, self.path("checkpoints", f"gen_{state.generation:04d}.pkl"))
        save_checkpoint(payload, self.path("checkpoints", "latest.pkl"))
        self.checkpoint_seconds = time.perf_counter() - start
        write_logbook(state.logbook, self.path("logbook.jsonl"))
        learngene, individual, reached = product_learngene(state, self.cfg)
        learngene.meta["recipe"] = recipe_of(self.cfg)
        learngene.save(self.path("learngene.pt"))
        plot_evolution(state.logbook, self.path("evolution.png"), f"GTL: {self.title}")
        write_front(state, self.cfg, self.run_dir, f"Pareto front: {self.title} ({self.cfg.ea.selection})")
        write_lineage(state.lineage, individual.id, self.run_dir, f"Lineage of #{individual.id}: {self.title}")
        if state.pool is not None:
            write_pool_report(state.pool, self.run_dir, f"Learngene scores of the gene pool: {self.title}")
        write_json(self.summary(state, learngene, individual, reached), self.path("summary.json"))

    def finish(self, state: EvolutionState, fresh: dict | None) -> None:
        """The evolution is over: learngene.pt and summary.json with the product's score on fresh
        validation episodes (``None``: not rescored), and ``"finished": true`` in the summary,
        which tells learngene_ea.study never to run this seed again."""
        learngene, individual, reached = product_learngene(state, self.cfg)
        if fresh is not None:
            learngene.meta["fresh_validation"] = fresh
        learngene.meta["recipe"] = recipe_of(self.cfg)
        learngene.save(self.path("learngene.pt"))
        summary = self.summary(state, learngene, individual, reached)
        if fresh is not None:
            summary["best"]["fresh_validation"] = fresh
        write_json({**summary, "finished": True}, self.path("summary.json"))

    def summary(self, state, learngene, individual, reached) -> dict:
        generations = len(state.logbook)
        return {
            "run_dir": self.run_dir,
            "title": self.title, "recipe": recipe_of(self.cfg), "dataset": config_module.dataset_label(self.cfg.data),
            "caps": self.caps,
            "generations_run": generations,
            "last_generation": state.generation,
            "best": {
                "id": individual.id,
                # the score it was selected on: the best of every evaluation on the run's fixed
                # validation episodes, so biased upward (fresh_validation is not)
                "accuracy": float(individual.fitness.values[0]),
                "ci95": float(individual.evaluation.get("ci95", 0.0)),
                "selected_among_evaluations": sum(record["evals"] for record in state.logbook),
                "fraction": float(learngene.fraction),
                "num_params": int(learngene.num_params),
                "born": individual.born,
                "reached_target": reached,
            },
            "target_fraction": self.cfg.ea.target_fraction,
            "wall_seconds": state.seconds,
            "seconds_per_generation": state.seconds / max(1, generations),
            "checkpoint_bytes": self.checkpoint_bytes,
            "checkpoint_bytes_per_individual": self.checkpoint_bytes / max(1, len(state.population)),
            "failed_evaluations": len(state.errors),
            "numerics": {key: getattr(self.cfg.runtime, key) for key in ("device", "deterministic", "tf32", "precision")},
        }


# ------------------------------------------------------------------------------- main

def run(args) -> int:
    log = print
    cfg, state, run_dir = prepare(args, log)
    workers = start_engine(cfg.runtime)  # a backend it cannot give (no Ray, no cluster): exit 2 now
    toolbox = build_toolbox(cfg)  # users' operators are checked before the run folder exists
    if cfg.runtime.tensorboard:
        require_tensorboard()
    make_run_dir(run_dir)
    board = TensorBoardLog(run_dir) if cfg.runtime.tensorboard else None
    log(f"run directory: {run_dir} | {recipe_of(cfg)}: {cfg.model.family} x{cfg.model.width} on "
        f"{config_module.dataset_label(cfg.data)} | population {cfg.ea.population_size}, generations "
        f"{cfg.ea.generations} | {workers}")
    caps = silent_caps(cfg)
    for line in caps:
        log(line)
    outputs = RunOutputs(run_dir, cfg, log, caps)
    progress = None
    if not args.quiet:
        from tqdm import tqdm

        def progress(iterable, total, desc):
            return tqdm(iterable, total=total, desc=desc, unit="descendant", leave=False, file=sys.stderr)

    def on_generation(state):
        outputs(state)
        if board is not None:
            board.generation(state.logbook[-1])

    state = evolve(cfg, toolbox, state, on_generation=on_generation, progress=progress, log=log)
    learngene, individual, reached = product_learngene(state, cfg)
    note = "" if reached else f" (target {cfg.ea.target_fraction} not reached: best overall saved)"
    evaluations = sum(record["evals"] for record in state.logbook)
    log(f"learngene: {outputs.path('learngene.pt')} | fraction {learngene.fraction:.3f} "
        f"({learngene.num_params} parameters) | val accuracy {individual.fitness.values[0]:.3f}"
        f"±{individual.evaluation.get('ci95', 0.0):.3f} as selected (best of {evaluations} evaluations on "
        f"the same episodes: biased upward){note}")
    fresh = rescore(individual, cfg, cfg.fitness.rescore_episodes) if cfg.fitness.rescore_episodes else None
    outputs.finish(state, fresh)
    if fresh is not None:
        log(f"learngene rescored: val accuracy {fresh['accuracy']:.3f}±{fresh['ci95']:.3f} on "
            f"{fresh['episodes']} fresh validation episodes, with a fresh descendant (unbiased)")
    if cfg.transfer.after_run:
        from learngene_ea.transfer import transfer_after_run

        results = transfer_after_run(cfg, run_dir, log=log)
        if board is not None:
            board.transfer(results)
    if board is not None:
        board.close()
    return 0


def report_failure(err: EvaluationFailure | OperatorFailure, debug: bool, then: str = "") -> int:
    """A run stopped by its fitness or an operator: the sentence (+ ``then``) on stderr; exit status 1.

    An operator's traceback is always shown (the bug is in the user's code, here); a failing
    evaluation's, from its worker, under ``--debug``. ``--debug`` re-raises an operator failure.
    """
    if isinstance(err, OperatorFailure):
        if debug:
            raise err
        print("".join(traceback.format_exception(err.error)).rstrip(), file=sys.stderr)
    elif debug:
        print(err.traceback_text.rstrip(), file=sys.stderr)
    print(f"error: {err}{then}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = parse_args(argv)
        return run(args)
    except (UserError, ConfigError) as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (EvaluationFailure, OperatorFailure) as err:
        return report_failure(err, debug)
    except KeyboardInterrupt:
        print("interrupted: the last finished generation is in checkpoints/latest.pkl; "
              "continue with --resume <run dir>.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    status = main()
    if status:  # a plain sys.exit(0) shows up as a "SystemExit: 0" traceback under SCOOP's file launch
        sys.exit(status)
