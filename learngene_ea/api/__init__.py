"""The Python API the command lines wrap: one run, one transfer evaluation, one study; typed results.

- :func:`load_config` (recipe path or ``None`` for the defaults, ``["section.key=value", ...]``) -> :class:`Config`;
- :func:`evolve_run` (``cfg``, ``run_dir``) -> :class:`RunResult`; :func:`resume_run` (a run folder);
- :func:`evaluate_learngene` (``cfg``, ``learngene.pt``) -> :class:`TransferResult`;
- :func:`run_study` (``cfg``, seeds, folder) -> :class:`StudyResult`;
- any model in, any model out: :func:`extract_learngene` (an ``nn.Module``, masks or a fraction),
  :func:`inherit` (an ``nn.Module``, a learngene), :func:`build_descendant` (one of our families),
  :func:`load_learngene` (a ``learngene.pt``).

Each writes the files its command line writes (``summary.json``, ``transfer.json``, ``study.json``);
the result records hold the same data.
"""
from ..config.loading import load_config
from ..config.schema import Config
from ..core.learngene import load_learngene
from ..transfer.descendants import build_descendant
from .models import extract_learngene, inherit
from .run import RunResult, evolve_run, resume_run
from .study import StudyRecipe, StudyResult, run_study
from .transfer import TransferResult, evaluate_learngene

__all__ = ["load_config", "Config", "evolve_run", "resume_run", "RunResult", "evaluate_learngene",
           "TransferResult", "run_study", "StudyRecipe", "StudyResult", "extract_learngene", "inherit",
           "build_descendant", "load_learngene"]
