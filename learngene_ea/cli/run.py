"""Command line of a GTL run: ``python -m scoop -n 8 -m learngene_ea.run --config genomes/<recipe>.yaml``.

A thin wrapper over :func:`learngene_ea.api.run.evolve_run` and :func:`~learngene_ea.api.run.resumed`:
it reads the options, picks the recipe (``--config``: a file or a shipped recipe's name, else the
shipped ``default`` recipe, from any folder) and the starting state (new, ``--resume``,
``--seed-population``, ``--from-pretrained``). Mistakes in the input end with one sentence on
stderr and exit code 2 (:func:`learngene_ea.cli.common.run_main`).
"""
from __future__ import annotations

import argparse

from ..errors import RunInterrupted, UserError
from .common import CONFIG_HELP, PRINT_CONFIG_HELP, default_recipe, print_config, run_main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m learngene_ea.run",
        description="Extract a learngene by Genetic Transfer Learning (run under SCOOP to spread "
                    "fitness evaluations: python -m scoop -n 8 -m learngene_ea.run ...).")
    parser.add_argument("--config", help=CONFIG_HELP + "; default: default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe key (repeatable), e.g. --set ea.generations=10")
    parser.add_argument("--print-config", action="store_true", help=PRINT_CONFIG_HELP)
    parser.add_argument("--run-dir", help="run directory (default: runs/<name>-<timestamp>)")
    parser.add_argument("--resume", metavar="RUN_DIR_OR_PKL",
                        help="continue a run from its newest valid checkpoint (or from a .pkl file)")
    parser.add_argument("--seed-population", metavar="PKL",
                        help="start a new run from the population of another run's checkpoint")
    parser.add_argument("--best-k", type=int, default=0,
                        help="with --seed-population: take only the best k individuals")
    parser.add_argument("--from-pretrained", metavar="FILE",
                        help="with fitness.inheritance pool: start the gene pool from this state dict")
    parser.add_argument("--trust-module", dest="trust", action="append", default=[], metavar="PKG.MOD:NAME",
                        help="with --resume: let the checkpoint's config import this model.module or operator "
                             "(repeatable; code a handed-over file names runs only when your command names it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, log lines only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return parser.parse_args(argv)


def recipe_path(args) -> str:
    """The recipe a new run reads: --config (a file or a shipped recipe's name), else the shipped default."""
    return default_recipe(args.print_config) if args.config is None else args.config


def check_options(args) -> None:
    """Options that do not go together, refused before anything is read."""
    if args.resume and args.seed_population:
        raise UserError("use either --resume or --seed-population, not both.")
    if args.print_config and args.resume:
        raise UserError("--print-config prints a new run's config; a resumed run's is its folder's config.yaml.")
    if args.from_pretrained and (args.resume or args.seed_population):
        raise UserError("--from-pretrained starts a new run's gene pool; not with --resume or --seed-population.")
    if args.best_k < 0 or (args.best_k and not args.seed_population):
        raise UserError(f"--best-k {args.best_k}: " + ("it must be a positive number of individuals (0, the default: "
                        "all of them)." if args.best_k < 0 else "it only goes with --seed-population."))


def run(args) -> int:
    """The run the options ask for (new, resumed or seeded); exit status 0."""
    check_options(args)
    # imported once the arguments are read: --help answers without torch (bench/cli_startup.py)
    from ..api.run import evolve_run, given_pool, new_run_dir, resumed
    from ..config.loading import load_config, recipe_name
    from ..ea.state import seeded_state

    log, quiet = print, args.quiet  # print looked up now: tests capture it
    if args.resume:
        start = resumed(args.resume, args.overrides, args.config, args.run_dir, log, args.trust)
        evolve_run(start.config, start.run_dir, state=start.state, recipe=start.recipe, log=log, quiet=quiet)
        return 0
    path = recipe_path(args)
    cfg = load_config(path, args.overrides)
    if args.print_config:
        return print_config(cfg)
    recipe = recipe_name(cfg.name, path)
    if not args.seed_population and not args.from_pretrained:
        evolve_run(cfg, args.run_dir, recipe=recipe, log=log, quiet=quiet)
        return 0
    from ..config.checks import check_run_fits
    from ..data import load_dataset
    from ..ea.evolve import new_state

    check_run_fits(cfg, load_dataset(cfg.data))  # before anything is trained or made
    if args.seed_population:
        state = seeded_state(cfg, args.seed_population, args.best_k, log)
    else:
        state = new_state(cfg)
        state.pool = given_pool(args.from_pretrained, cfg)
        if cfg.pool.warm_start_fraction:
            log(f"note: --from-pretrained starts the gene pool; pool.warm_start_fraction "
                f"({cfg.pool.warm_start_fraction:g}) trains no warm start.")
    evolve_run(cfg, new_run_dir(cfg, args.run_dir, recipe), state=state, recipe=recipe, log=log, quiet=quiet)
    return 0


def main(argv=None) -> int:
    """Run the command line; the exit status (0; 1: a failed evolution; 2: bad input; 130: interrupted)."""
    return run_main(lambda argv: run(parse_args(argv)), argv,
                    interrupted=lambda err: str(err) if isinstance(err, RunInterrupted) else "nothing was written.")
