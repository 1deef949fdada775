"""``python -m learngene_ea.study``: several seeds, one pooled table, :mod:`learngene_ea.cli.study`."""
import sys

from learngene_ea.cli.study import main  # absolute: SCOOP may run this file by path

if __name__ == "__main__":
    status = main()
    if status:  # a plain sys.exit(0) shows up as a "SystemExit: 0" traceback under SCOOP's file launch
        sys.exit(status)
