"""``python -m learngene_ea.study --config RECIPE --seeds 0 1 2 --out DIR [--set section.key=value ...]``.

A thin wrapper over :func:`learngene_ea.api.study.study`: it checks the seeds and ``--out``, reads
the recipe (``--config``: a file or a shipped recipe's name, else the shipped ``default`` recipe)
and hands them over. Mistakes in the input end with one sentence on stderr and exit code 2 before
any folder is made.
"""
from __future__ import annotations

import argparse

from ..errors import UserError
from .common import CONFIG_HELP, PRINT_CONFIG_HELP, print_config, run_main
from .run import recipe_path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m learngene_ea.study",
        description="Evolve one recipe with several seeds, evaluate each learngene on its seed's own test "
                    "episodes and pool the results (run under SCOOP to spread the work: python -m scoop -n 8 "
                    "-m learngene_ea.study ...).")
    parser.add_argument("--config", help=CONFIG_HELP + "; default: default")
    parser.add_argument("--seeds", nargs="*", default=None, metavar="N", help="evolution seeds, e.g. --seeds 0 1 2")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe key for every seed (repeatable), e.g. --set ea.generations=10")
    parser.add_argument("--print-config", action="store_true", help=PRINT_CONFIG_HELP + " (seed: the recipe's)")
    parser.add_argument("--out", help="study folder: DIR/seed-N/ per seed, DIR/study.json/.md/.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, log lines only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return parser.parse_args(argv)


def parse_seeds(values) -> list[int]:
    """The ``--seeds`` values as distinct whole numbers >= 0, in the given order."""
    from ..config.schema import MAX_SEED

    if not values:
        raise UserError("no seeds given; pass the evolution seeds, e.g. --seeds 0 1 2.")
    seeds = []
    for text in values:
        try:
            seed = int(text)
        except ValueError:
            raise UserError(f"--seeds takes whole numbers, not {text!r}; e.g. --seeds 0 1 2.") from None
        if seed < 0:
            raise UserError(f"seed {seed} is negative; seeds are whole numbers >= 0, e.g. --seeds 0 1 2.")
        if seed > MAX_SEED:
            raise UserError(f"seed {seed} in --seeds is too large; seeds are whole numbers from 0 to {MAX_SEED}.")
        if seed in seeds:
            raise UserError(f"seed {seed} is given twice in --seeds; list every seed once.")
        seeds.append(seed)
    return seeds


def study_command(args, log=print) -> dict | None:
    """The study the options ask for; what ``study.json`` holds (``None``: ``--print-config``)."""
    from ..api.study import StudyRecipe, run_study  # once the arguments are read: --help needs no torch
    from ..config.loading import load_config, parse_override

    if args.print_config:
        print_config(load_config(recipe_path(args), args.overrides))
        return None
    seeds = parse_seeds(args.seeds)
    if not args.out:
        raise UserError("no study folder given; pass --out DIR (rerun with the same DIR to continue a study).")
    for text in args.overrides:
        if parse_override(text)[0] == ["seed"]:
            raise UserError(f"--set {text!r} would give every seed the same seed; pass the seeds with --seeds.")
    path = recipe_path(args)
    cfg = load_config(path, args.overrides)
    return run_study(cfg, seeds, args.out, source=StudyRecipe(path, list(args.overrides)), log=log,
                     quiet=args.quiet).study


def main(argv=None) -> int:
    """Run the command line; return the exit status (0; 1 for a failed evolution; 2 for bad input; 130)."""
    def body(argv):
        study_command(parse_args(argv))
        return 0

    return run_main(body, argv, failed_then=" Rerunning the study command resumes that seed.",
                    interrupted="finished generations are in each seed's checkpoints/; rerun the same study "
                                "command to continue.")
