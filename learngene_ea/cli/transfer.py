"""The command line: ``python -m learngene_ea.transfer --learngene runs/<name>/learngene.pt [options]``.

A mistake the user can fix (missing file, bad recipe key, incompatible learngene) is one
sentence on stderr and exit code 2 (``--debug`` shows the traceback instead); an interrupted
evaluation exits 130 without a report.
"""
from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from ..errors import UserError
from ..io.paths import file_problem, folder_problem
from .common import CONFIG_HELP, PRINT_CONFIG_HELP, default_recipe, print_config, run_main

if TYPE_CHECKING:  # the rest (and torch) is imported once the arguments are read: --help answers at once
    from ..config.schema import Config


def parse_args(argv=None) -> argparse.Namespace:
    """The command line's options (``argv``, default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        prog="python -m learngene_ea.transfer",
        description="Evaluate a learngene on test-class few-shot episodes against scratch, pre-trained, "
                    "random-learngene, top-L1 learngene, slimming, layer-wise and no-update baselines (same "
                    "episodes and seeds).")
    parser.add_argument("--learngene", required=True, help="learngene.pt written by a run, or a run's pareto/ "
                                                           "folder (every learngene of its front, one table)")
    parser.add_argument("--config", help=CONFIG_HELP + "; default: config.yaml next to the learngene, else "
                                                       "default")
    parser.add_argument("--print-config", action="store_true", help=PRINT_CONFIG_HELP)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe key (repeatable), e.g. --set transfer.episodes=600")
    parser.add_argument("--out", help="folder for transfer.json/.md/.png and the pre-trained cache (default: the "
                                      "learngene's folder; with transfer.target, its sub-folder transfer-<target>); "
                                      "earlier reports there are kept (the new ones: transfer-2.*, -3, ...); "
                                      "nothing else is written")
    parser.add_argument("--descendants", nargs="+", metavar="FAMILY@WIDTH",
                        help="scalability descendants, e.g. conv4@2.0 conv6 vgg11@0.5 "
                             "(default: transfer.descendants)")
    parser.add_argument("--pretrained", metavar="STATE_DICT",
                        help="a trained network's state dict (of the learngene's family, width and channels) for "
                             "the pretrained, random-learngene, l1-learngene and layerwise rows, instead of "
                             "pre-training one (transfer.pretrain_on)")
    parser.add_argument("--allow-seen-classes", action="store_true",
                        help="evaluate even on test classes the learngene's evolution trained or validated on")
    parser.add_argument("--trust-module", dest="trust", action="append", default=[], metavar="PKG.MOD:NAME",
                        help="let the config.yaml beside the learngene, or its family, import this model.module "
                             "(repeatable; code a handed-over file names runs only when your command names it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, log lines only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return parser.parse_args(argv)


def resolve_config(args) -> Config:
    """The recipe: --config (a file or a shipped recipe's name), else the run's config.yaml, else the
    shipped default recipe.

    The run's config.yaml may have been handed over with the learngene: code it names is imported
    only when --set or --trust-module names it too (:mod:`learngene_ea.config.trust`).
    """
    from ..config import loading as config_module
    from ..config.recipes import read_recipe
    from ..config.trust import admit_code, trust_code, user_code

    path = args.config
    trust_code(args.trust)
    if path is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(args.learngene)), "config.yaml")
        if os.path.isfile(beside):
            path = beside
            values = config_module.apply_overrides(read_recipe(path), args.overrides)
            admit_code(values, user_code(None, args.overrides, args.trust), repr(path))  # before any import
        else:
            path = default_recipe(args.print_config)
    return config_module.load_config(path, args.overrides)


def check_paths(args) -> None:
    """--learngene, --out and --pretrained name a file, a folder and a file, before anything is loaded."""
    if not os.path.isdir(args.learngene):
        problem = file_problem(args.learngene)
        if problem:
            raise UserError(f"Learngene file {args.learngene!r} {problem}; pass the learngene.pt of a finished run "
                            "(runs/<name>/learngene.pt) or a run's pareto/ folder.")
    if args.out and os.path.lexists(args.out) and folder_problem(args.out):
        raise UserError(f"--out {args.out!r} {folder_problem(args.out)}; pass a folder for the reports.")
    if args.pretrained and file_problem(args.pretrained):
        raise UserError(f"--pretrained {args.pretrained!r} {file_problem(args.pretrained)}; pass the state dict "
                        "file of a trained network.")


def transfer_command(args) -> int:
    """The transfer the options ask for: one learngene, or a run's pareto/ folder in one table; exit status 0."""
    from ..config.checks import check_device
    from ..reports.progress import tqdm_bars
    from ..transfer.pipeline import TransferOptions, run_transfer
    from ..transfer.report import markdown_table

    check_paths(args)
    cfg = resolve_config(args)
    if args.print_config:
        return print_config(cfg)
    check_device(cfg.runtime)
    options = TransferOptions(args.descendants, allow_seen_classes=args.allow_seen_classes,
                              pretrained_path=args.pretrained, keep_earlier=True,
                              progress=None if args.quiet else tqdm_bars("episode"))
    if os.path.isdir(args.learngene):  # a run's pareto/ folder: every learngene of its front
        from ..transfer.front import front_markdown, run_front_transfer

        results = run_front_transfer(cfg, args.learngene, args.out, options, log=print)
        print(front_markdown(results))
        return 0
    results = run_transfer(cfg, args.learngene, args.out, options, log=print)
    print(markdown_table(results))
    return 0


def main(argv=None) -> int:
    """Run the command line; return the exit status (0; 2 for a user error; 130 when interrupted)."""
    return run_main(lambda argv: transfer_command(parse_args(argv)), argv,
                    interrupted="no transfer report was written.")
