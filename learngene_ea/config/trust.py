"""Which code a command may import: every ``package.module:function`` a handed-over file names passes
:func:`admit_code`.

What the user's own command names is trusted: the recipe passed with ``--config``, ``--set``
overrides, ``--trust-module NAME``, a config built in Python. A checkpoint's saved config, a run
folder's ``config.yaml`` and a learngene's family come from files anyone may hand over: the code
they name (``model.module``, ``operators.*.function``, a ``module:`` family) is imported only when
the user's own input names the same, else one sentence says which and how to allow it, before
anything is imported or computed.
"""
from __future__ import annotations

from ..core.traced import allow_module
from ..errors import UserError
from .loading import apply_overrides

ROLES = ("select", "mutate", "mate", "evaluate")


def code_names(values: dict | None) -> dict[str, str]:
    """The code a config mapping names, by key (``{"model.module": "pkg.mod:factory", ...}``)."""
    names = {}
    model = values.get("model") if isinstance(values, dict) else None
    if isinstance(model, dict):
        if isinstance(model.get("module"), str) and model["module"]:
            names["model.module"] = model["module"]
        family = model.get("family")
        if isinstance(family, str) and family.startswith("module:"):
            names["model.family"] = family[len("module:"):].partition("{")[0]
    operators = values.get("operators") if isinstance(values, dict) else None
    for role in ROLES:
        spec = operators.get(role) if isinstance(operators, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("function"), str):
            names[f"operators.{role}.function"] = spec["function"]
    return names


def user_code(recipe: dict | None, overrides=(), trusted=()) -> set[str]:
    """The code the user's own command names: its recipe's (``--config``), its ``--set`` overrides' and
    ``trusted`` (``--trust-module``)."""
    return {*trusted, *code_names(recipe).values(), *code_names(apply_overrides({}, list(overrides))).values()}


def admit_code(values: dict, trusted, source: str) -> None:
    """Refuse, in one sentence (exit status 2), code that ``values`` (read from ``source``, a file the
    user may have been handed) names and ``trusted`` (:func:`user_code`) does not."""
    for key, name in code_names(values).items():
        if name not in trusted:
            raise UserError(f"{source} names {key} {name!r}, code that runs only when your own command names it: "
                            f"if you trust that file, pass --trust-module {name} (or --config with a recipe "
                            "that names it).")


def trust_code(names) -> None:
    """Let this process import the networks ``names`` (``--trust-module``: the user's own word)."""
    for name in names:
        allow_module(name)
