"""``python -m learngene_ea.inspect FILE [--json] [--save-as OUT]``: a learngene file's model card; ``--save-as``
writes it again in the format ``OUT``'s extension names (``.safetensors`` or ``.pt``)."""
from __future__ import annotations

import argparse
import json
import sys

from .common import run_main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m learngene_ea.inspect",
                                     description="Describe a learngene file (learngene.pt or .safetensors) as a "
                                                 "model card.")
    parser.add_argument("file", help="a learngene file written by a run (or by Learngene.save)")
    parser.add_argument("--json", action="store_true", help="print the file's metadata as JSON instead")
    parser.add_argument("--save-as", metavar="OUT", help="write the learngene again as OUT (.safetensors or .pt)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return parser.parse_args(argv)


def inspect_command(args) -> int:
    import os

    from ..core.learngene import load_learngene
    from ..core.safetensors_file import is_safetensors
    from ..errors import UserError
    from ..reports.learngene_card import learngene_card

    if args.save_as and os.path.lexists(args.save_as):  # a file the user has is never overwritten
        raise UserError(f"--save-as {args.save_as!r} already exists; pass a new file name.")
    learngene = load_learngene(args.file)
    if args.save_as:
        learngene.save(args.save_as)
        print(f"written: {args.save_as}", file=sys.stderr)
    if args.json:
        print(json.dumps({"family": learngene.family, "width": learngene.width, "in_channels": learngene.in_channels,
                          "num_params": learngene.num_params, "fraction": learngene.fraction,
                          "meta": learngene.meta}, indent=1))
        return 0
    print(learngene_card(learngene, args.file, "safetensors" if is_safetensors(args.file) else "pt"))
    return 0


def main(argv=None) -> int:
    """Run the command line; the exit status (0; 2: not a learngene file)."""
    return run_main(lambda argv: inspect_command(parse_args(argv)), argv, interrupted="nothing was written.")
