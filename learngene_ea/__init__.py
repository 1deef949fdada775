"""learngene-ea: Genetic Transfer Learning on DEAP, PyTorch and SCOOP.

Importing the package creates the DEAP creator classes (``learngene_ea.core.individual``) so that
every process that unpickles a population, SCOOP workers included, has them.
"""
from .core import individual  # noqa: F401  (creates creator.FitnessGTL / creator.LearngeneIndividual)

__version__ = "0.1.0"
