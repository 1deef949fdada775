"""Files that survive a crash and load safely: atomic writes, checkpoints, restricted unpickling, path problems.

The bottom of the package: it imports nothing from it but :mod:`learngene_ea.errors`."""
