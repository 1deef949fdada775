"""The command lines, thin wrappers over the Python API: ``run``, ``study``, ``transfer`` (and the shared
error handling of every ``main``)."""
