"""``python -m learngene_ea.run``: the evolution's command line, :mod:`learngene_ea.cli.run`."""
import sys

from learngene_ea.cli.run import main  # absolute: SCOOP also runs this file by path (python -m scoop learngene_ea/run.py)

if __name__ == "__main__":
    status = main()
    if status:  # a plain sys.exit(0) shows up as a "SystemExit: 0" traceback under SCOOP's file launch
        sys.exit(status)
