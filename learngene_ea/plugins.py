"""Users' own operators: ``"package.module:function"`` names from a recipe, checked before use."""
from __future__ import annotations

import importlib
import inspect

from .config import ConfigError

# positional arguments the evolution loop passes to each operator
POSITIONAL = {"select": ("individuals", "k"), "mutate": ("individual",), "mate": ("ind1", "ind2"),
              "evaluate": ("individual",)}


def resolve_operator(role: str, name: str, kwargs: dict | None = None):
    """Import ``name`` (``"package.module:function"``) and check it fits the ``role``'s call.

    Returns ``(function, kwargs)``; any problem is a :class:`ConfigError` naming the key.
    """
    key = f"operators.{role}.function"
    kwargs = dict(kwargs or {})
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"'{key}' must look like 'package.module:function', not {name!r}.")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or an error raised while importing the user's module
        raise ConfigError(f"'{key}': module '{module_name}' does not import ({type(err).__name__}: {err}); "
                          "check the name and that it is on PYTHONPATH.") from err
    function = module
    for part in attr.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise ConfigError(f"'{key}': module '{module_name}' has no '{attr}'.")
    if not callable(function):
        raise ConfigError(f"'{key}': '{name}' is not callable.")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return function, kwargs  # builtins without a signature: trust the user
    try:
        signature.bind(*POSITIONAL[role], **kwargs)
    except TypeError as err:
        expected = ", ".join(POSITIONAL[role])
        raise ConfigError(f"'{key}': {name}{signature} cannot be called as {role}({expected}"
                          f"{', ' if kwargs else ''}{', '.join(f'{k}=...' for k in kwargs)}) ({err}).") from err
    return function, kwargs
