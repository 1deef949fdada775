"""``python -m learngene_ea.transfer``: see :mod:`learngene_ea.cli.transfer` (an entry point, above every layer).

Kept to these lines: under SCOOP every worker executes this file's top level (without the
``if __name__ == "__main__":`` block), and the jobs it runs live in importable modules.
"""
import sys

from ..cli.transfer import main

if __name__ == "__main__":
    sys.exit(main())
