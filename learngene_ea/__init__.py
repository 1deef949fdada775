"""learngene-ea: Genetic Transfer Learning on DEAP, PyTorch and SCOOP.

The Python API (README "From Python"; the command lines are thin wrappers over it)::

    import learngene_ea as lg

    cfg = lg.load_config("genomes/default.yaml", ["ea.generations=2"])
    run = lg.evolve_run(cfg, "runs/mine")             # -> RunResult (summary.json's record)
    table = lg.evaluate_learngene(cfg, run.learngene_path)   # -> TransferResult (transfer.json's)

Importing the package creates the DEAP creator classes (``learngene_ea.core.deap_classes``, no
torch) so that every process that unpickles a population, SCOOP workers included, has them; the
API's modules (and torch) are imported when first used.
"""
from .core import deap_classes  # noqa: F401  (creates creator.FitnessGTL / creator.LearngeneIndividual)

__version__ = "0.2.0"

_API = ("load_config", "Config", "evolve_run", "resume_run", "RunResult", "evaluate_learngene", "TransferResult",
        "run_study", "StudyRecipe", "StudyResult", "extract_learngene", "inherit", "build_descendant", "load_learngene")
_REGISTRIES = ("list_families", "list_datasets")  # the names model.family and data.name choose from
__all__ = ["__version__", *_API, *_REGISTRIES]


def __getattr__(name):
    """``learngene_ea.evolve_run`` and the rest of :mod:`learngene_ea.api`, and the registries' ``list_families``
    and ``list_datasets``, imported on first use."""
    if name in _API:
        from . import api

        return getattr(api, name)
    if name == "list_families":
        from .core.models import list_families

        return list_families
    if name == "list_datasets":
        from .data import list_datasets

        return list_datasets
    raise AttributeError(f"module 'learngene_ea' has no attribute {name!r}")
