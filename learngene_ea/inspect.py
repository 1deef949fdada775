"""``python -m learngene_ea.inspect FILE``: a learngene file's model card, :mod:`learngene_ea.cli.inspect`."""
import sys

from learngene_ea.cli.inspect import main

if __name__ == "__main__":
    sys.exit(main())
