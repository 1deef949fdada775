"""``python -m learngene_ea.data``: what the dataset loader sees, :mod:`learngene_ea.cli.data`.

An entry point, above every layer (nothing imports it).
"""
import sys

from ..cli.data import main

if __name__ == "__main__":
    sys.exit(main())
