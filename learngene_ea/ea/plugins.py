"""Users' own operators: ``"package.module:function"`` names from a recipe, checked before use.

An operator that declares a ``config`` parameter receives the run's resolved :class:`Config`;
an ``evaluate`` that declares ``dataset`` receives the run's dataset, loaded in the process that
evaluates (a SCOOP worker loads it once, memoised by :func:`load_dataset`; it is never pickled
into the tasks).
"""
from __future__ import annotations

import functools
import importlib
import inspect

from ..config.loading import split_function_name
from ..config.schema import ConfigError
from ..data import load_dataset

# positional arguments the evolution loop passes to each operator
POSITIONAL = {"select": ("individuals", "k"), "mutate": ("individual",), "mate": ("ind1", "ind2"),
              "evaluate": ("individual",)}


def with_dataset(function, individual, *, data_config, **kwargs):
    """Call a user's ``evaluate`` with the run's dataset, loaded (once per process) where it runs."""
    return function(individual, dataset=load_dataset(data_config), **kwargs)


def resolve_operator(role: str, name: str, kwargs: dict | None = None, config=None):
    """Import ``name`` (``"package.module:function"``) and check it fits the ``role``'s call.

    Returns ``(function, kwargs)``; any problem is a :class:`ConfigError` naming the key. With
    the run's ``config``, a function declaring ``config`` gets it in ``kwargs``, and an
    ``evaluate`` declaring ``dataset`` comes back wrapped to receive the dataset.
    """
    key = f"operators.{role}.function"
    kwargs = dict(kwargs or {})
    module_name, attr = split_function_name(name, key)
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
    declared = signature.parameters
    if config is not None and "config" in declared and "config" not in kwargs:
        kwargs["config"] = config
    wants_dataset = config is not None and role == "evaluate" and "dataset" in declared and "dataset" not in kwargs
    provided = {**kwargs, **({"dataset": None} if wants_dataset else {})}
    try:
        signature.bind(*POSITIONAL[role], **provided)
    except TypeError as err:
        expected = ", ".join(POSITIONAL[role])
        raise ConfigError(f"'{key}': {name}{signature} cannot be called as {role}({expected}"
                          f"{', ' if provided else ''}{', '.join(f'{k}=...' for k in provided)}) ({err}).") from err
    if wants_dataset:
        return functools.partial(with_dataset, function, data_config=config.data), kwargs
    return function, kwargs
