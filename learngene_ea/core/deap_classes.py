"""The DEAP creator classes of a learngene individual, made at import (numpy and DEAP only, no torch).

``creator.FitnessGTL``: few-shot accuracy (maximised) and learngene fraction (minimised);
``creator.LearngeneIndividual``: a ``list`` of boolean masks with that fitness. Pickled populations
name them as ``deap.creator`` attributes, so every process that unpickles one (SCOOP workers
included) must have made them: importing the package does (``learngene_ea/__init__.py``), without
paying for torch, so that ``--help`` answers at once. :mod:`.individual` builds and reads them.
"""
from deap import base, creator

if not hasattr(creator, "FitnessGTL"):
    creator.create("FitnessGTL", base.Fitness, weights=(1.0, -1.0))
if not hasattr(creator, "LearngeneIndividual"):
    creator.create("LearngeneIndividual", list, fitness=creator.FitnessGTL)

LearngeneIndividual = creator.LearngeneIndividual
FitnessGTL = creator.FitnessGTL
