"""``python -m learngene_ea.run``: the evolution's command line, :mod:`learngene_ea.cli.run`."""
import sys

from .cli.run import main

if __name__ == "__main__":
    status = main()
    if status:  # a plain sys.exit(0) shows up as a "SystemExit: 0" traceback under SCOOP's file launch
        sys.exit(status)
