"""The one error handling of every command line's ``main()`` (run, study, transfer, data).

A mistake the user can fix (:class:`~learngene_ea.errors.UserError`, config errors included) is
one sentence on stderr and exit status 2 (``--debug``: the traceback instead); a run stopped by
its fitness or an operator is exit status 1 with a sentence; Ctrl-C is 130 with what is kept.
"""
from __future__ import annotations

import logging
import sys
import traceback

# Only what --help needs at import: the rest (torch with it) is imported once the arguments are read.
from ..errors import EvaluationFailure, OperatorFailure, UserError

CONFIG_HELP = ("recipe: a YAML file, or a shipped recipe's name (default, cifarfs-vgg11, ...; found from any "
               "folder)")
PRINT_CONFIG_HELP = "print the resolved config (recipe, its base, --set, defaults) as YAML and exit"


def default_recipe(printing_config: bool = False) -> str:
    """The shipped default recipe's file, for a command given no ``--config``; said in one log line (on
    stderr under ``--print-config``, whose stdout is the config alone)."""
    from ..config.recipes import DEFAULT_RECIPE, default_recipe_path

    path = default_recipe_path()
    print(f"note: no --config: the shipped recipe '{DEFAULT_RECIPE}' ({path}).",
          file=sys.stderr if printing_config else sys.stdout)
    return path


def print_config(cfg) -> int:
    """``--print-config``: the resolved config (a :class:`~learngene_ea.config.schema.Config`) as YAML on stdout;
    exit status 0."""
    from ..config.loading import config_yaml

    print(config_yaml(cfg), end="")
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


def debug_log() -> None:
    """``--debug``: the package's debug log (e.g. torch.fx's traceback of each image size a network
    rejects while it is traced) on stderr; quiet otherwise."""
    logger = logging.getLogger("learngene_ea")
    logger.setLevel(logging.DEBUG)
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(sys.stderr))


def run_main(body, argv=None, interrupted: str = "", failed_then: str = "") -> int:
    """``body(argv)``'s exit status, with every command's error handling around it.

    ``argv`` defaults to ``sys.argv[1:]``; ``interrupted`` is what Ctrl-C prints after
    ``interrupted:`` (a string, or a function of the ``KeyboardInterrupt``: a
    :class:`~learngene_ea.errors.RunInterrupted` says what its run folder keeps); ``failed_then``
    ends the sentence of a failed evolution.
    """
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    if debug:
        debug_log()
    try:
        return body(argv)
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except (EvaluationFailure, OperatorFailure) as err:
        return report_failure(err, debug, failed_then)
    except KeyboardInterrupt as err:
        print(f"interrupted: {interrupted(err) if callable(interrupted) else interrupted}", file=sys.stderr)
        return 130
